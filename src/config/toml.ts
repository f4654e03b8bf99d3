// The TOML reading helpers every section uses: the text parsed (a syntax
// error placed at its line and column), the known sections and their keys
// (also the MCPROXY_* environment overrides), typed reads that record a
// problem naming the key, unknown-key checks.

import { durationText } from "./duration";
import { LIMITS, MAX_DURATION_MS } from "./limits";
import { type Parsed, fail, ok } from "./parsed";

export type Kind = "string" | "int" | "bool" | "duration" | "strings" | "workers";
export type Table = Record<string, unknown>;

/** The scalar sections and their keys; these are also the env overrides. */
export const SECTIONS: Record<string, Record<string, Kind>> = {
  database: { path: "string" },
  grpc: {
    addr: "string",
    tls_cert: "string",
    tls_key: "string",
    client_ca: "string",
    client_cert: "string",
    client_key: "string",
    server_ca: "string",
    allow_unauthenticated_admin: "bool",
    admin_clients: "strings",
  },
  firewall: {
    geoip_db: "string",
    blocked_ips: "strings",
    blocked_cidrs: "strings",
    blocked_countries: "strings",
    blocked_ja4: "strings",
    rate_limit: "int",
    rate_window: "duration",
    rate_limit_ipv6_prefix: "int",
  },
  proxy: {
    connect_timeout: "duration",
    idle_timeout: "duration",
    quic_idle_timeout: "duration",
    hello_timeout: "duration",
    max_hello_bytes: "int",
    shutdown_timeout: "duration",
    drain_timeout: "duration",
    workers: "workers",
    health_check_interval: "duration",
    health_check_timeout: "duration",
    health_check_rise: "int",
    health_check_fall: "int",
    retries: "int",
  },
  fingerprints: { top: "int", window: "duration" },
  dns: {
    servers: "strings",
    min_ttl: "duration",
    max_ttl: "duration",
    negative_ttl: "duration",
    stale_ttl: "duration",
    cache_size: "int",
    timeout: "duration",
  },
  log: { level: "string", format: "string" },
  metrics: { addr: "string", path: "string" },
  // Its [[dashboard.users]] tables are read by config/dashboard.ts (not overridable from the environment).
  dashboard: { addr: "string", tls_cert: "string", tls_key: "string", session_ttl: "duration" },
  store: { backend: "string" },
  etcd: {
    endpoints: "strings",
    prefix: "string",
    ca: "string",
    cert: "string",
    key: "string",
    username: "string",
    password: "string",
    dial_timeout: "duration",
  },
};

/** Texts longer than this are not searched for a syntax error's place (each step parses a prefix again). */
const MAX_LOCATED_CHARS = 256 * 1024;
/**
 * Nor is a text whose one parse took longer than this: the search parses up
 * to about 2 × log2(lines) prefixes, and Bun's parser is slower than linear
 * in the number of tables (a 207 KB file of 34,000 tables: 3.5 s a parse;
 * docs/BUN-NOTES.md), so the search is bounded to about 40 such parses.
 */
const MAX_LOCATED_PARSE_MS = 25;

/**
 * TOML text as a table, or its syntax error: "LINE:COLUMN: not valid TOML:
 * what the parser said". Nothing else of a file that does not parse can be
 * checked, and the problem says so. `locate: false` skips the search for
 * the place (a caller that only wants to know whether the text parses).
 */
export function parseToml(text: string, locate = true): Parsed<Table> {
  const t0 = performance.now();
  try {
    return ok(Bun.TOML.parse(text) as Table);
  } catch (e) {
    const said = parserMessage(e);
    const ms = performance.now() - t0;
    const at =
      locate && text.length <= MAX_LOCATED_CHARS && ms <= MAX_LOCATED_PARSE_MS ? syntaxErrorAt(text, said) : null;
    const where = at === null ? "" : `${at.line}:${at.column}: `;
    return fail(`${where}not valid TOML: ${said} (nothing else is checked until the file parses)`);
  }
}

function parserMessage(e: unknown): string {
  return String((e as Error)?.message ?? e)
    .replace(/^TOML Parse error: /, "")
    .replace("found (0x0A)", "found the end of the line");
}

/** Whether `text` fails to parse with the parser's message `said`. */
function failsWith(text: string, said: string): boolean {
  try {
    Bun.TOML.parse(text);
    return false;
  } catch (e) {
    return parserMessage(e) === said;
  }
}

/**
 * Where the parser stopped (1-based line and column), or null. Bun's TOML
 * errors carry no position (docs/BUN-NOTES.md): the parser reads from the
 * start, so the error is at the end of the shortest prefix that fails with
 * the same message — the line first, then the column within it (one past
 * the line's end when only its newline completes the error). A prefix that
 * fails keeps failing as it grows, so both are binary searches: about 2 ×
 * log2(lines) parses (measured: a 250 KB, 10,000-line file with its error
 * on the last line in about 55 ms; a line-by-line search took 17 s).
 */
export function syntaxErrorAt(text: string, said: string): { line: number; column: number } | null {
  const lines = text.split("\n");
  const starts: number[] = [];
  let at = 0;
  for (const line of lines) {
    starts.push(at);
    at += line.length + 1;
  }
  const endOf = (i: number) => Math.min(starts[i]! + lines[i]!.length + 1, text.length);
  // The first line whose end makes the prefix fail with the message.
  const line = firstTrue(0, lines.length - 1, (i) => failsWith(text.slice(0, endOf(i)), said));
  if (line === null) return null;
  const start = starts[line]!;
  const column = firstTrue(1, lines[line]!.length, (c) => failsWith(text.slice(0, start + c), said));
  return { line: line + 1, column: column ?? lines[line]!.length + 1 };
}

/** The least n in [lo, hi] for which `p` holds (p false then true as n grows), or null when it holds for none. */
function firstTrue(lo: number, hi: number, p: (n: number) => boolean): number | null {
  if (lo > hi || !p(hi)) return null;
  while (lo < hi) {
    const mid = lo + Math.floor((hi - lo) / 2);
    if (p(mid)) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

export function applyEnvOverrides(root: Table, env: Record<string, string | undefined>, problems: string[]): void {
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith("MCPROXY_") || value === undefined) continue;
    const rest = name.slice("MCPROXY_".length).toLowerCase();
    const us = rest.indexOf("_");
    const section = us < 0 ? rest : rest.slice(0, us);
    const key = us < 0 ? "" : rest.slice(us + 1);
    const kind = SECTIONS[section]?.[key];
    if (kind === undefined) {
      problems.push(`environment variable ${name}: no such setting (overridable: ${envNames().join(", ")})`);
      continue;
    }
    const existing = root[section];
    const table: Table = isTable(existing) ? existing : {};
    root[section] = table;
    table[key] = coerceEnv(kind, value);
  }
}

function envNames(): string[] {
  return Object.entries(SECTIONS).flatMap(([s, keys]) =>
    Object.keys(keys).map((k) => `MCPROXY_${s}_${k}`.toUpperCase()),
  );
}

function coerceEnv(kind: Kind, value: string): unknown {
  switch (kind) {
    case "int":
      return /^-?\d+$/.test(value.trim()) ? Number(value.trim()) : value;
    case "bool":
      return value === "true" ? true : value === "false" ? false : value;
    case "strings":
      return value.trim() === "" ? [] : value.split(",").map((s) => s.trim());
    default:
      return value;
  }
}

export function isTable(v: unknown): v is Table {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export function show(v: unknown): string {
  return typeof v === "string" ? JSON.stringify(v) : Array.isArray(v) ? JSON.stringify(v) : String(v);
}

/** Read one typed value; records a problem and returns undefined when it is the wrong type. */
export function typed(kind: Kind, v: unknown, key: string, problems: string[]): unknown {
  switch (kind) {
    case "string":
      if (typeof v === "string") return v;
      problems.push(`${key}: expected a string, got ${show(v)}`);
      return undefined;
    case "bool":
      if (typeof v === "boolean") return v;
      problems.push(`${key}: expected true or false, got ${show(v)}`);
      return undefined;
    case "int":
      if (typeof v === "number" && Number.isSafeInteger(v)) return v;
      problems.push(`${key}: expected a whole number, got ${show(v)}`);
      return undefined;
    case "duration": {
      if (typeof v !== "string") {
        problems.push(`${key}: expected a duration string such as "500ms", "10s" or "5m", got ${show(v)}`);
        return undefined;
      }
      const ms = durationText(v, MAX_DURATION_MS);
      if (!ms.ok) {
        problems.push(`${key}: ${show(v)} ${ms.error}`);
        return undefined;
      }
      return ms.value;
    }
    case "strings":
      if (Array.isArray(v) && v.every((s) => typeof s === "string")) return v;
      problems.push(`${key}: expected a list of strings, got ${show(v)}`);
      return undefined;
    case "workers": {
      const { min, max } = LIMITS["proxy.workers"];
      if (v === "auto") return v;
      const n = typeof v === "string" && /^[1-9]\d{0,9}$/.test(v) ? Number(v) : v;
      if (typeof n === "number" && Number.isSafeInteger(n) && n >= min && n <= max) return n;
      problems.push(
        `${key}: ${show(v)} must be "auto" (one per CPU this process may use) or a whole number from ${min} to ${max}`,
      );
      return undefined;
    }
  }
}

export function checkKeys(t: Table, allowed: Record<string, unknown>, where: string, problems: string[]): void {
  for (const k of Object.keys(t)) {
    if (!(k in allowed)) {
      problems.push(`${where}${k}: unknown key (allowed here: ${Object.keys(allowed).join(", ")})`);
    }
  }
}

export function readSection(root: Table, name: string, problems: string[]): Table | null {
  const v = root[name];
  if (v === undefined) return null;
  if (!isTable(v)) {
    problems.push(`${name}: expected a table [${name}], got ${show(v)}`);
    return null;
  }
  checkKeys(v, SECTIONS[name]!, `${name}.`, problems);
  const out: Table = {};
  for (const [k, kind] of Object.entries(SECTIONS[name]!)) {
    if (v[k] !== undefined) out[k] = typed(kind, v[k], `${name}.${k}`, problems);
  }
  return out;
}
