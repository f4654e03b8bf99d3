// The route model — a hostname, its pool of backends, how it balances and
// checks them, its PROXY setting — and the rules every route obeys, whatever
// its source: the config file (route_config.ts), the admin API and etcd
// values all build a candidate and ask routeProblems.

import { durationError, intError, isInt, maxConnectionsError, showValue as show } from "../config/ranges";
import { parseAddressOrCidr } from "../firewall/address";
import type { CheckSettings, PoolDefaults, SendProxy } from "../config/types";
import { parseHostPort } from "../net/host_port";
import { normaliseHostName } from "../sni/host_name";
import { type BackendState, STATES, type SlotRef } from "./backend_table";

export type { CheckSettings, PoolDefaults, SendProxy };

export type Balance = "round_robin" | "least_connections" | "source_hash";
export type HealthCheckKind = "off" | "tcp" | "tls";

export interface BackendSpec {
  readonly addr: string;
  readonly weight: number;
  readonly backup: boolean;
  /** The operator's state, as stored (SetBackendState); enabled when absent. */
  readonly state?: BackendState;
}

/** A route as configured and stored: per-route settings are null where the [proxy] default applies. */
export interface Route {
  /** "" for a listener's default route. */
  readonly hostname: string;
  /**
   * The ALPN protocols this route serves for its hostname (RFC 7301 §3.1
   * protocol names); empty for the hostname's plain route. See RouteTable.
   */
  readonly alpn: readonly string[];
  /** Client sources allowed ("address/prefix", canonical); empty: every source the firewall let through. */
  readonly allow: readonly string[];
  /** Client sources refused ("address/prefix", canonical); checked after allow. */
  readonly deny: readonly string[];
  /** Connections open at once through this route, over every event loop; 0: no limit. */
  readonly maxConnections: number;
  readonly backends: readonly BackendSpec[];
  readonly balance: Balance;
  /** null: "tcp" for two backends or more, "off" for one. */
  readonly healthCheck: HealthCheckKind | null;
  readonly check: Partial<CheckSettings>;
  readonly retries: number | null;
  /** null: [proxy] connect_timeout. */
  readonly connectTimeoutMs: number | null;
  readonly sendProxyProtocol: SendProxy;
}

/** A route whose backends have their slots in the shared BackendTable (assigned by the thread that owns the table). */
export interface BoundRoute extends Route {
  readonly refs: readonly SlotRef[];
  /** The route's own slot: its open connections over every loop. */
  readonly countRef: SlotRef;
}

/**
 * What names a route on its listener: the hostname, and for an ALPN route
 * "+" and its protocols ("app.example.com+acme-tls/1"). Host names never
 * hold "+" and protocols never ",", so the name is unambiguous. It is the
 * route's label in the access log and metrics and its key in the stores.
 */
export function routeName(r: RouteKey): string {
  return r.alpn.length === 0 ? r.hostname : `${r.hostname}+${alpnKey(r.alpn)}`;
}

/** What identifies a route on its listener. */
export interface RouteKey {
  readonly hostname: string;
  readonly alpn: readonly string[];
}

/** A route's protocols as one key: sorted, joined by "," (their order in the route does not matter). */
export function alpnKey(alpn: readonly string[]): string {
  return alpn.length === 0 ? "" : alpn.length === 1 ? alpn[0]! : [...alpn].sort().join(",");
}

/** Whether `r` is the route `k` names (the same protocols, in any order). */
export function isRoute(r: RouteKey, k: RouteKey): boolean {
  return r.hostname === k.hostname && alpnKey(r.alpn) === alpnKey(k.alpn);
}

/** The per-route features off: no ALPN, no source policy, no limit. */
export const PLAIN = { alpn: [], allow: [], deny: [], maxConnections: 0 } as const;

export function healthCheckOf(r: Route): HealthCheckKind {
  return r.healthCheck ?? (r.backends.length >= 2 ? "tcp" : "off");
}

export function checkSettingsOf(r: Route, d: PoolDefaults): CheckSettings {
  return {
    intervalMs: r.check.intervalMs ?? d.check.intervalMs,
    timeoutMs: r.check.timeoutMs ?? d.check.timeoutMs,
    rise: r.check.rise ?? d.check.rise,
    fall: r.check.fall ?? d.check.fall,
  };
}

/** Backends per route at most (a connection's tried set is a 32-bit mask). */
export const MAX_BACKENDS = 31;

/** The one backend of a plain `backend = "host:port"` route. */
export function singleBackend(addr: string): BackendSpec[] {
  return [{ addr, weight: 1, backup: false }];
}

/** A listener's `default_backend` as a route (hostname ""): a pool of one. */
export function defaultRouteOf(l: { defaultBackend: string | null; defaultBackendSendProxyProtocol: SendProxy }): Route | null {
  if (l.defaultBackend === null) return null;
  return {
    hostname: "",
    ...PLAIN,
    backends: singleBackend(l.defaultBackend),
    balance: "round_robin",
    healthCheck: null,
    check: {},
    retries: null,
    connectTimeoutMs: null,
    sendProxyProtocol: l.defaultBackendSendProxyProtocol,
  };
}

export const BALANCES: readonly Balance[] = ["round_robin", "least_connections", "source_hash"];
export const HEALTH_CHECKS: readonly HealthCheckKind[] = ["off", "tcp", "tls"];
export const SEND_PROXY: readonly SendProxy[] = ["off", "v1", "v2"];
export const MAX_WEIGHT = 256;
export const MAX_RETRIES = 30;
/** health_check_rise / _fall. */
export const RISE_FALL = { min: 1, max: 100 } as const;
/** ALPN protocols per route at most, and bytes per protocol (RFC 7301 §3.1: 1-255). */
export const MAX_ALPN = 16;
export const MAX_ALPN_BYTES = 255;
/** allow / deny entries per route at most. */
export const MAX_SOURCES = 65_536;

/**
 * A route's ALPN list: 1-16 protocol names (or none: the plain route), each
 * 1-255 bytes of printable ASCII without "," (registered names — h2,
 * http/1.1, acme-tls/1, postgresql, xmpp-client — all are), none twice.
 */
export function alpnError(alpn: unknown, field: string): string | null {
  if (!Array.isArray(alpn)) return `${field}: ${show(alpn)} must be a list of protocol names`;
  if (alpn.length > MAX_ALPN) return `${field}: ${alpn.length} protocols; at most ${MAX_ALPN} per route`;
  for (const [i, p] of alpn.entries()) {
    if (typeof p !== "string" || p.length === 0 || p.length > MAX_ALPN_BYTES || !/^[\x21-\x2b\x2d-\x7e]+$/.test(p))
      return `${field}[${i}]: ${show(p)} must be 1-${MAX_ALPN_BYTES} printable ASCII characters without spaces or ","`;
    if (alpn.indexOf(p) !== i) return `${field}[${i}]: ${JSON.stringify(p)} appears twice`;
  }
  return null;
}

/**
 * An allow or deny list: addresses or CIDR blocks (the firewall's parser),
 * returned in canonical "address/prefix" form, or a problem naming the entry.
 */
export function sourceList(list: unknown, field: string): string[] | { error: string } {
  if (!Array.isArray(list)) return { error: `${field}: ${show(list)} must be a list of addresses or CIDR blocks` };
  if (list.length > MAX_SOURCES) return { error: `${field}: ${list.length} entries; at most ${MAX_SOURCES} per route` };
  const out: string[] = [];
  for (const [i, e] of list.entries()) {
    if (typeof e !== "string") return { error: `${field}[${i}]: ${show(e)} must be an address or a CIDR block` };
    const c = parseAddressOrCidr(e);
    if (typeof c !== "string") return { error: `${field}[${i}]: ${c.error}` };
    out.push(c);
  }
  return out;
}

/**
 * The rules between the routes of one listener: one plain route per
 * hostname, and a (hostname, protocol) pair in one route at most — else
 * which route serves a client would depend on the order they were added.
 */
export function routeSetProblems(routes: readonly Route[], field: string): string[] {
  const out: string[] = [];
  const taken = new Map<string, string>();
  for (const r of routes) {
    for (const p of r.alpn.length === 0 ? [""] : r.alpn) {
      const k = `${r.hostname}\u0000${p}`;
      const other = taken.get(k);
      if (other !== undefined)
        out.push(
          p === ""
            ? `${field}: ${JSON.stringify(r.hostname)} has two routes without alpn`
            : `${field}: ${JSON.stringify(r.hostname)} with ALPN ${JSON.stringify(p)} is in two routes (${JSON.stringify(other)} and ${JSON.stringify(routeName(r))})`,
        );
      else taken.set(k, routeName(r));
    }
  }
  return out;
}

/** Sort routes by name (the order of every listing and store). */
export function sortRoutes<R extends RouteKey>(routes: R[]): R[] {
  const named = routes.map((r) => [routeName(r), r] as const).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  for (const [i, [, r]] of named.entries()) routes[i] = r;
  return routes;
}

/**
 * The routes that may stand together, in order: one that would share a
 * (hostname, protocol) pair with an earlier one is left out and reported
 * (routes from separate etcd keys, which no single write checks together).
 */
export function withoutClashes<R extends Route>(routes: readonly R[], onDrop: (r: R, why: string) => void): R[] {
  const out: R[] = [];
  const taken = new Map<string, string>();
  for (const r of routes) {
    const pairs = (r.alpn.length === 0 ? [""] : r.alpn).map((p) => `${r.hostname}\u0000${p}`);
    const hit = pairs.find((k) => taken.has(k));
    if (hit !== undefined) {
      onDrop(
        r,
        `route ${JSON.stringify(routeName(r))} shares ${hit.endsWith("\u0000") ? "the plain route" : `ALPN ${JSON.stringify(hit.slice(hit.indexOf("\u0000") + 1))}`} of ${JSON.stringify(r.hostname)} with ${JSON.stringify(taken.get(hit))}`,
      );
      continue;
    }
    for (const k of pairs) taken.set(k, routeName(r));
    out.push(r);
  }
  return out;
}

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
  for (const [k, name] of [
    ["intervalMs", "health_check_interval"],
    ["timeoutMs", "health_check_timeout"],
  ] as const) {
    if (s[k] !== undefined) {
      const e = durationError(s[k], `${field}.${name}`);
      if (e !== null) return e;
    }
  }
  for (const [k, name] of [
    ["rise", "health_check_rise"],
    ["fall", "health_check_fall"],
  ] as const) {
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
  push(alpnError(r.alpn, `${field}.alpn`));
  if (r.hostname === "" && Array.isArray(r.alpn) && r.alpn.length > 0) out.push(`${field}.alpn: a listener's default route takes no alpn`);
  for (const k of ["allow", "deny"] as const) {
    const l = sourceList(r[k], `${field}.${k}`);
    if (!Array.isArray(l)) out.push(l.error);
    else if (l.some((e, i) => e !== (r[k] as string[])[i])) out.push(`${field}.${k}: entries must be in canonical form (${JSON.stringify(l.slice(0, 4))}…)`);
  }
  push(maxConnectionsError(r.maxConnections, `${field}.max_connections`));
  push(poolError(r.backends, `${field}.backends`));
  if (!BALANCES.includes(r.balance as Balance)) out.push(`${field}.balance: ${show(r.balance)} must be one of ${BALANCES.join(", ")}`);
  if (r.healthCheck !== null && !HEALTH_CHECKS.includes(r.healthCheck as HealthCheckKind)) out.push(`${field}.health_check: ${show(r.healthCheck)} must be one of ${HEALTH_CHECKS.join(", ")}`);
  push(checkSettingsError(r.check, field));
  if (r.retries !== null) push(intError(r.retries, `${field}.retries`, 0, MAX_RETRIES));
  if (r.connectTimeoutMs !== null) push(durationError(r.connectTimeoutMs, `${field}.connect_timeout`));
  if (!SEND_PROXY.includes(r.sendProxyProtocol as SendProxy)) out.push(`${field}.send_proxy_protocol: ${show(r.sendProxyProtocol)} must be one of ${SEND_PROXY.join(", ")}`);
  return out;
}
