// A route's hostname_pattern (docs/ROUTING.md "Templated routes"): an
// anchored RE2 expression with named captures, matched against the whole
// server name. RE2 (re2js, a pure-JS port) runs in time linear in the input
// — an automaton, no backtracking — where a JavaScript RegExp backtracks and
// a hostile name can cost exponential time. The pattern itself is bounded
// (length and RE2 program size), so compiling and every match are bounded
// too; the names it sees are already validated host names (sni/host_name.ts:
// [a-z0-9._-], at most 253 bytes).

import { RE2JS } from "re2js";
import { type Parsed, fail, ok } from "../config/parsed";

/** Characters of a pattern at most (the admin API's hostname bound). */
export const MAX_PATTERN_LENGTH = 255;
/** RE2's program size at most: RE2's own measure of a pattern's cost (the example pattern is 141). */
export const MAX_PROGRAM_SIZE = 1000;
/** The placeholder every template may use: the whole server name. */
export const SNI_PLACEHOLDER = "sni";

/** Whether a route's key is a pattern: host names never start with "^". */
export function isPattern(key: string): boolean {
  return key.startsWith("^");
}

export class HostPattern {
  /** The named captures, in the pattern's order. */
  readonly names: readonly string[];

  constructor(
    readonly text: string,
    private readonly re: RE2JS,
  ) {
    this.names = Object.entries(re.namedGroups())
      .sort((a, b) => a[1] - b[1])
      .map(([n]) => n);
  }

  /** Whether the pattern matches the whole name (RE2's DFA, no captures). */
  test(name: string): boolean {
    return this.re.testExact(name);
  }

  /** The named captures for a name the pattern matches whole, or null ("" for a capture that took no part). */
  captures(name: string): Record<string, string> | null {
    if (!this.re.testExact(name)) return null;
    const m = this.re.matcher(name);
    if (!m.matches()) return null;
    const out: Record<string, string> = {};
    for (const n of this.names) out[n] = m.group(n) ?? "";
    return out;
  }
}

/**
 * A pattern from an operator, compiled, or why not: 2-255 printable ASCII
 * characters, starting with "^" and ending with "$", RE2 syntax, a program
 * of at most MAX_PROGRAM_SIZE instructions, no capture named "sni".
 */
export function compileHostPattern(text: unknown): Parsed<HostPattern> {
  if (typeof text !== "string") return fail("must be a string");
  if (text.length > MAX_PATTERN_LENGTH) return fail(`${text.length} characters; at most ${MAX_PATTERN_LENGTH}`);
  if (!/^[\x20-\x7e]*$/.test(text)) return fail("must be printable ASCII");
  if (!text.startsWith("^") || !text.endsWith("$") || text.endsWith("\\$"))
    return fail(`must be anchored: start with "^" and end with "$"`);
  let re: RE2JS;
  try {
    re = RE2JS.compile(text);
  } catch (e) {
    return fail(`not RE2 syntax (docs/ROUTING.md "Templated routes"): ${(e as Error).message}`);
  }
  const size = re.programSize();
  if (size > MAX_PROGRAM_SIZE) return fail(`too costly: RE2 program size ${size}, at most ${MAX_PROGRAM_SIZE}`);
  const p = new HostPattern(text, re);
  if (p.names.includes(SNI_PLACEHOLDER))
    return fail(`a capture may not be named "${SNI_PLACEHOLDER}" ({sni} is the whole name)`);
  return ok(p);
}
