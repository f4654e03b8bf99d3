// The TOML reading helpers every section uses: the known sections and their
// keys (also the MCPROXY_* environment overrides), typed reads that record a
// problem naming the key, unknown-key checks.

import { formatDuration, parseDuration } from "./duration";
import { LIMITS, MAX_DURATION_MS } from "./limits";

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
    workers: "workers",
    health_check_interval: "duration",
    health_check_timeout: "duration",
    health_check_rise: "int",
    health_check_fall: "int",
    retries: "int",
  },
  fingerprints: { top: "int", window: "duration" },
  log: { level: "string", format: "string" },
  metrics: { addr: "string", path: "string" },
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
      if (v.trim().startsWith("-")) {
        problems.push(`${key}: ${show(v)} is negative; durations must be positive`);
        return undefined;
      }
      const ms = parseDuration(v);
      if (!ms.ok) {
        problems.push(`${key}: ${show(v)} ${ms.error}`);
        return undefined;
      }
      if (ms.value > MAX_DURATION_MS) {
        problems.push(`${key}: ${show(v)} is too long (durations are at most ${formatDuration(MAX_DURATION_MS)})`);
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
