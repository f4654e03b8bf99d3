// Firewall rules on the JA4 fingerprint (sni/ja4.ts): an exact fingerprint,
// or a pattern whose parts (a_b_c) each end in "*" to match any rest of that
// part — "t13d*_8daaf6152771_*" is every TLS 1.3 client to a name whose
// cipher list hashes to 8daaf6152771. A pattern that matches every
// fingerprint ("*_*_*") is refused: it would block every client.

import { type Parsed, fail, ok } from "../config/parsed";

/** The shape of each part (JA4.md "JA4 Algorithm"). */
const PART_A = /^[tqd](s2|s3|10|11|12|13|d1|d2|d3|00)[di]\d{4}[0-9A-Za-z]{2}$/;
const PART_A_PREFIX = /^[0-9A-Za-z]{0,9}$/;
const HASH = /^[0-9a-f]{12}$/;
const HASH_PREFIX = /^[0-9a-f]{0,11}$/;

/** A rule value checked for shape; returns it (canonical as given) or why not. */
export function parseJa4Rule(text: string): Parsed<string> {
  const parts = text.split("_");
  if (parts.length !== 3)
    return fail(
      `"${text.slice(0, 64)}" is not a JA4 fingerprint or pattern (three parts a_b_c, e.g. t13d1516h2_8daaf6152771_e5627efa2ab1 or t13d*_8daaf6152771_*)`,
    );
  const names = ["a", "b", "c"];
  for (const [i, p] of parts.entries()) {
    const wild = p.endsWith("*");
    const lit = wild ? p.slice(0, -1) : p;
    if (lit.includes("*")) return fail(`"${text}": part ${names[i]} may hold "*" only at its end`);
    const shaped =
      i === 0 ? (wild ? PART_A_PREFIX.test(lit) : PART_A.test(lit)) : wild ? HASH_PREFIX.test(lit) : HASH.test(lit);
    if (!shaped) {
      const want =
        i === 0
          ? "10 characters like t13d1516h2 (or a prefix of one and *)"
          : "12 lower-case hex digits (or a prefix of them and *)";
      return fail(`"${text}": part ${names[i]} ${JSON.stringify(p)} is not ${want}`);
    }
  }
  if (parts.every((p) => p === "*")) return fail(`"${text}" matches every client; block something narrower`);
  return ok(text);
}

/** A set of rules compiled once: exact fingerprints in a Set, patterns as part prefixes. */
export class Ja4Rules {
  private readonly exact = new Set<string>();
  /** [part prefix or exact part, is a prefix] × 3. */
  private readonly patterns: { p: string[]; prefix: boolean[] }[] = [];

  constructor(rules: readonly string[]) {
    for (const r of rules) {
      if (!r.includes("*")) {
        this.exact.add(r);
        continue;
      }
      const parts = r.split("_");
      this.patterns.push({
        p: parts.map((x) => (x.endsWith("*") ? x.slice(0, -1) : x)),
        prefix: parts.map((x) => x.endsWith("*")),
      });
    }
  }

  get size(): number {
    return this.exact.size + this.patterns.length;
  }

  /** Whether a fingerprint ("" for none) is blocked. */
  matches(fp: string): boolean {
    if (fp === "") return false;
    if (this.exact.has(fp)) return true;
    if (this.patterns.length === 0) return false;
    const parts = fp.split("_");
    for (const r of this.patterns) {
      let all = true;
      for (let i = 0; i < 3 && all; i++) all = r.prefix[i] ? parts[i]!.startsWith(r.p[i]!) : parts[i] === r.p[i];
      if (all) return true;
    }
    return false;
  }
}
