// The one table of ranges and defaults (config/limits.ts): every number the
// config file takes has a row, the loader refuses one past its row's range
// and takes its default, and docs/CONFIGURATION.md states each default and
// range as the table does.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { formatDuration, parseDuration } from "../../src/config/duration";
import { LIMITS, type Limit, type LimitKey } from "../../src/config/limits";
import { SECTIONS } from "../../src/config/toml";
import { parseRoutedConfig } from "../../src/routing/route_config";
import { problems } from "../helpers/config_problems";
import { OPTION_ROWS } from "../../src/routing/route_fields";

const ROOT = resolve(import.meta.dir, "../..");
const ROWS = Object.entries(LIMITS) as [LimitKey, Limit][];
const LISTENER = `[[listeners]]\naddr = ":18443"\n`;

describe("config/limits.ts: one row for every number", () => {
  test("every int and duration key of a section, a listener and a route option has a row", () => {
    const want: string[] = [];
    for (const [section, keys] of Object.entries(SECTIONS))
      for (const [k, kind] of Object.entries(keys))
        if (kind === "int" || kind === "duration" || kind === "workers") want.push(`${section}.${k}`);
    want.push("listeners.max_connections");
    for (const row of OPTION_ROWS) if (row.kind === "int" || row.kind === "duration") want.push(`routes.${row.toml}`);
    expect(want.filter((k) => !(k in LIMITS))).toEqual([]);
  });

  test("every default lies in its range", () => {
    for (const [key, l] of ROWS) {
      expect(l.min <= l.max).toBe(true);
      if (typeof l.default === "number")
        expect({ key, inRange: l.default >= l.min && l.default <= l.max }).toEqual({ key, inRange: true });
    }
  });

  // A [section] key's row is what the loader enforces and takes when unset.
  const sectionRows = ROWS.filter(([k, l]) => l.kind === "integer" && k.split(".")[0]! in SECTIONS);
  for (const [key, l] of sectionRows) {
    const [section, k] = key.split(".") as [string, string];
    test(`${key}: ${l.min} and ${l.max} pass, ${l.max + 1} is refused naming the key`, () => {
      const base = ["proxy", "firewall", "fingerprints", "dns"].includes(section) ? LISTENER : "";
      expect(problems(`${base}[${section}]\n${k} = ${l.max}\n`)).toEqual([]);
      expect(problems(`${base}[${section}]\n${k} = ${l.min}\n`)).toEqual([]);
      expect(
        problems(`${base}[${section}]\n${k} = ${l.max + 1}\n`).some(
          (p) => p.startsWith(`${key}: `) && p.includes(String(l.max)),
        ),
      ).toBe(true);
    });
  }

  test("unset, a setting takes its row's default", () => {
    const c = parseRoutedConfig(LISTENER, "t.toml");
    const got: Record<string, unknown> = {
      "proxy.connect_timeout": c.proxy.connectTimeoutMs,
      "proxy.idle_timeout": c.proxy.idleTimeoutMs,
      "proxy.quic_idle_timeout": c.proxy.quicIdleTimeoutMs,
      "proxy.hello_timeout": c.proxy.helloTimeoutMs,
      "proxy.shutdown_timeout": c.proxy.shutdownTimeoutMs,
      "proxy.max_hello_bytes": c.proxy.maxHelloBytes,
      "proxy.workers": c.proxy.workers,
      "proxy.health_check_interval": c.proxy.pool.check.intervalMs,
      "proxy.health_check_timeout": c.proxy.pool.check.timeoutMs,
      "proxy.health_check_rise": c.proxy.pool.check.rise,
      "proxy.health_check_fall": c.proxy.pool.check.fall,
      "proxy.retries": c.proxy.pool.retries,
      "firewall.rate_limit": c.firewall.rateLimit,
      "firewall.rate_window": c.firewall.rateWindowMs,
      "firewall.rate_limit_ipv6_prefix": c.firewall.rateLimitIpv6Prefix,
      "fingerprints.top": c.fingerprints.top,
      "fingerprints.window": c.fingerprints.windowMs,
      "dns.min_ttl": c.dns.minTtlMs,
      "dns.max_ttl": c.dns.maxTtlMs,
      "dns.negative_ttl": c.dns.negativeTtlMs,
      "dns.stale_ttl": c.dns.staleTtlMs,
      "dns.cache_size": c.dns.cacheSize,
      "dns.timeout": c.dns.timeoutMs,
      "listeners.max_connections": c.listeners[0]!.maxConnections,
    };
    for (const [key, v] of Object.entries(got)) expect({ key, v }).toEqual({ key, v: LIMITS[key as LimitKey].default });
  });
});

/** docs/CONFIGURATION.md's reference example (the block that starts at [database]): `key = value # comment` lines by section ("routes" for [[listeners.routes]]). */
function exampleLines(doc: string): Map<string, { value: string; comment: string }> {
  const start = doc.indexOf("```toml\n[database]\n");
  const block = doc.slice(start, doc.indexOf("```\n", start + 1));
  const out = new Map<string, { value: string; comment: string }>();
  let section = "";
  for (const line of block.split("\n")) {
    const head = /^\s*(?:#\s*)?\[\[?([a-z.]+)\]\]?/.exec(line);
    if (head !== null) {
      section = head[1] === "listeners.routes" ? "routes" : head[1]!;
      continue;
    }
    const kv = /^\s*(?:#\s*)?([a-z0-9_]+)\s*=\s*(.*)$/.exec(line);
    if (kv === null) continue;
    const hash = kv[2]!.search(/\s#\s?/);
    const [value, comment] =
      hash < 0 ? [kv[2]!.trim(), ""] : [kv[2]!.slice(0, hash).trim(), kv[2]!.slice(hash).replace(/^\s#\s?/, "")];
    const key = `${section}.${kv[1]}`;
    if (!out.has(key)) out.set(key, { value, comment });
  }
  return out;
}

/** The rows of the "Limits and ranges" table. */
function rangeRows(doc: string): string[] {
  return doc.split("\n").filter((l) => l.startsWith("| ") && !l.startsWith("| ---") && !l.startsWith("| setting"));
}

/** How the docs may write a number of this kind: 10000 or 10,000; a duration as "10s", "1 ms". */
function spellings(l: Limit, n: number): string[] {
  if (l.kind === "duration") return n === 1 ? ["1 ms", "1ms"] : n === 0 ? ["0"] : [formatDuration(n)];
  return [String(n), n.toLocaleString("en-US")];
}

describe("docs/CONFIGURATION.md states each default and range as config/limits.ts does", () => {
  const doc = readFileSync(join(ROOT, "docs/CONFIGURATION.md"), "utf8");
  const lines = exampleLines(doc);
  const table = rangeRows(doc);
  for (const [key, l] of ROWS) {
    const name = key.split(".")[1]!;
    test(key, () => {
      const line = lines.get(key);
      if (l.default !== null && line !== undefined) {
        const v = (Bun.TOML.parse(`v = ${line.value}`) as { v: unknown }).v;
        const got = l.kind === "duration" && typeof v === "string" ? parseDuration(v) : { ok: true, value: v };
        expect({ key, default: got }).toEqual({ key, default: { ok: true, value: l.default } });
      } else if (l.default !== null) {
        // No line of its own in the example: its range row says the default.
        expect({
          key,
          stated: table.some((r) => r.includes(`\`${name}\``) && r.includes(`default ${l.default}`)),
        }).toEqual({ key, stated: true });
      } else {
        expect({ key, named: doc.includes(name) }).toEqual({ key, named: true });
      }
      // The range: in the line's comment, a table row naming the key, or the row every duration shares.
      const rows = table.filter(
        (r) => new RegExp(`\\b${name}\\b`).test(r) || (l.kind === "duration" && r.includes("every duration")),
      );
      const text = [line?.comment ?? "", ...rows].join("\n");
      const says = (n: number) => spellings(l, n).some((s) => text.includes(s));
      expect({ key, max: says(l.max) }).toEqual({ key, max: true });
      expect({ key, min: says(l.min) || (l.min === 0 && text.includes("up to")) }).toEqual({ key, min: true });
    });
  }
});
