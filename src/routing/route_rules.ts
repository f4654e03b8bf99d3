// The rules a route, a listener limit and every numeric setting must satisfy,
// in one place: the config file, the admin API and etcd values all build a
// candidate and ask here (README "Limits and ranges"). A value from any
// source that breaks a rule is refused with the key and the range named.

import { type HostPort, parseHostPort } from "../net/host_port";
import { normaliseHostName } from "../sni/host_name";
import { STATES } from "./backend_table";
import { type Balance, type BackendSpec, type CheckSettings, type HealthCheckKind, MAX_BACKENDS, type Route, type SendProxy } from "./pool";

export const BALANCES: readonly Balance[] = ["round_robin", "least_connections", "source_hash"];
export const HEALTH_CHECKS: readonly HealthCheckKind[] = ["off", "tcp", "tls"];
export const SEND_PROXY: readonly SendProxy[] = ["off", "v1", "v2"];
export const MAX_WEIGHT = 256;
export const MAX_RETRIES = 30;
/** health_check_rise / _fall. */
export const RISE_FALL = { min: 1, max: 100 } as const;
/**
 * The longest duration any setting takes: 24 days (576h). Bun's timers hold
 * a signed 32-bit millisecond count; a longer one fires after 1 ms
 * (measured), so 600h would turn a shutdown grace period into an instant.
 */
export const MAX_DURATION_MS = 576 * 3_600_000;
export const MAX_DURATION_TEXT = "576h";
/** Counts kept in 32-bit shared counters (max_connections, rate_limit). */
export const MAX_COUNT = 2_147_483_647;

/** Validate a route hostname: exact, or a wildcard only as a leading "*.". Returns the canonical form. */
export function parseRouteHostname(hostname: string): string | { error: string } {
  const wildcard = hostname.startsWith("*.");
  const rest = wildcard ? hostname.slice(2) : hostname;
  if (rest.includes("*")) return { error: `a wildcard is allowed only as a leading "*." label` };
  const norm = normaliseHostName(rest);
  if (norm === null) return { error: `not a valid host name (1-253 bytes of A-Z a-z 0-9 . - _, no empty labels)` };
  return wildcard ? `*.${norm}` : norm;
}

/** Backends are host:port with a host and a port 1-65535. */
export function backendError(backend: string): string | null {
  const hp = parseHostPort(backend, { allowEmptyHost: false });
  return typeof hp === "string" ? hp : null;
}

function show(v: unknown): string {
  const s = typeof v === "string" ? JSON.stringify(v) : v === undefined ? "nothing" : JSON.stringify(v) ?? String(v);
  return s.length > 80 ? `${s.slice(0, 80)}…` : s;
}

const isInt = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v);

/** A whole number in [min, max], or a problem naming `field` and the range. */
export function intError(v: unknown, field: string, min: number, max: number): string | null {
  if (!isInt(v) || v < min || v > max) return `${field}: ${show(v)} must be a whole number from ${min} to ${max}`;
  return null;
}

/** A duration in milliseconds within (0 or 1) … MAX_DURATION_MS. */
export function durationError(ms: unknown, field: string, allowZero = false): string | null {
  if (!isInt(ms)) return `${field}: ${show(ms)} is not a duration`;
  if (ms === 0 && !allowZero) return `${field}: must be greater than zero`;
  if (ms < 0 || ms > MAX_DURATION_MS) return `${field}: ${ms} ms is out of range ${allowZero ? 0 : 1} ms-${MAX_DURATION_TEXT}`;
  return null;
}

/** listeners.max_connections, SetListenerMaxConnections and etcd's listener values. */
export function maxConnectionsError(n: unknown, field: string): string | null {
  if (!isInt(n) || n < 0 || n > MAX_COUNT) return `${field}: ${show(n)} must be 0 (unlimited) to ${MAX_COUNT}`;
  return null;
}

/**
 * Check a pool of backends: 1–31 entries, each a valid host:port used once,
 * weight 1–256, backup a boolean, state one of enabled, drain, disabled.
 * Returns a problem naming the entry, or null.
 */
export function poolError(backends: unknown, field: string): string | null {
  if (!Array.isArray(backends)) return `${field}: ${show(backends)} must be a list of backends`;
  if (backends.length === 0) return `${field}: at least one backend is required`;
  if (backends.length > MAX_BACKENDS) return `${field}: ${backends.length} backends; at most ${MAX_BACKENDS} per route`;
  const seen = new Set<string>();
  for (let i = 0; i < backends.length; i++) {
    const b = backends[i] as Partial<BackendSpec> | null;
    if (typeof b !== "object" || b === null) return `${field}[${i}]: ${show(b)} must be { addr, weight, backup }`;
    if (typeof b.addr !== "string") return `${field}[${i}].addr: ${show(b.addr)} must be "host:port"`;
    const err = backendError(b.addr);
    if (err !== null) return `${field}[${i}]: ${JSON.stringify(b.addr.slice(0, 64))}: ${err}`;
    if (seen.has(b.addr)) return `${field}[${i}]: ${JSON.stringify(b.addr)} appears twice`;
    seen.add(b.addr);
    if (!isInt(b.weight) || b.weight < 1 || b.weight > MAX_WEIGHT) return `${field}[${i}].weight: ${show(b.weight)} must be 1-${MAX_WEIGHT}`;
    if (typeof b.backup !== "boolean") return `${field}[${i}].backup: ${show(b.backup)} must be true or false`;
    if (b.state !== undefined && !STATES.includes(b.state)) return `${field}[${i}].state: ${show(b.state)} must be one of ${STATES.join(", ")}`;
  }
  return null;
}

/** The per-route health-check overrides (absent = the [proxy] default). */
export function checkSettingsError(c: unknown, field: string): string | null {
  if (typeof c !== "object" || c === null || Array.isArray(c)) return `${field}: ${show(c)} must be an object`;
  const s = c as Partial<Record<keyof CheckSettings, unknown>>;
  for (const [k, name] of [["intervalMs", "health_check_interval"], ["timeoutMs", "health_check_timeout"]] as const) {
    if (s[k] !== undefined) {
      const e = durationError(s[k], `${field}.${name}`);
      if (e !== null) return e;
    }
  }
  for (const [k, name] of [["rise", "health_check_rise"], ["fall", "health_check_fall"]] as const) {
    if (s[k] !== undefined) {
      const e = intError(s[k], `${field}.${name}`, RISE_FALL.min, RISE_FALL.max);
      if (e !== null) return e;
    }
  }
  return null;
}

/**
 * Every rule of a route, whatever its source (TOML, admin API, an etcd
 * value): the problems found, each naming `field` and the sub-key; empty
 * when the route may be used. The hostname must already be canonical.
 */
export function routeProblems(r: Partial<Record<keyof Route, unknown>>, field: string): string[] {
  const out: string[] = [];
  const push = (e: string | null) => e !== null && out.push(e);
  if (typeof r.hostname !== "string") out.push(`${field}.hostname: ${show(r.hostname)} must be a string`);
  else if (r.hostname !== "") {
    const h = parseRouteHostname(r.hostname);
    if (typeof h !== "string") out.push(`${field}.hostname: ${show(r.hostname)}: ${h.error}`);
    else if (h !== r.hostname) out.push(`${field}.hostname: ${show(r.hostname)} is not in canonical form (${JSON.stringify(h)})`);
  }
  push(poolError(r.backends, `${field}.backends`));
  if (!BALANCES.includes(r.balance as Balance)) out.push(`${field}.balance: ${show(r.balance)} must be one of ${BALANCES.join(", ")}`);
  if (r.healthCheck !== null && !HEALTH_CHECKS.includes(r.healthCheck as HealthCheckKind)) out.push(`${field}.health_check: ${show(r.healthCheck)} must be one of ${HEALTH_CHECKS.join(", ")}`);
  push(checkSettingsError(r.check, field));
  if (r.retries !== null) push(intError(r.retries, `${field}.retries`, 0, MAX_RETRIES));
  if (!SEND_PROXY.includes(r.sendProxyProtocol as SendProxy)) out.push(`${field}.send_proxy_protocol: ${show(r.sendProxyProtocol)} must be one of ${SEND_PROXY.join(", ")}`);
  return out;
}

/**
 * Two listener addresses name the same endpoint however written: ":443",
 * "[::]:443" and "0.0.0.0:443" all bind the wildcard (a "::" socket is
 * dual-stack and takes IPv4 too), and IPv6 literals compare in canonical
 * form. With SO_REUSEPORT two such listeners would both bind and the kernel
 * would split connections between their route tables.
 */
export function endpointKey(hp: HostPort): string {
  let host = hp.host.toLowerCase();
  if (host.includes(":")) {
    // Canonical IPv6 text (RFC 5952) via the URL parser: "::0" is "::".
    try {
      host = new URL(`http://[${host}]/`).hostname.slice(1, -1);
    } catch {}
  }
  if (host === "" || host === "::" || host === "0.0.0.0") host = "*";
  return `${host}|${hp.port}`;
}
