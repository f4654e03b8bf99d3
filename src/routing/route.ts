// The route model — a hostname and its ALPN list (the route's key), its pool
// of backends, and its options (route_fields.ts) — and the rules every route
// obeys, whatever its source: the config file (route_config.ts), the admin
// API and stored values (route_codec.ts) all build a candidate and ask
// routeProblems.

import { LIMITS } from "../config/limits";
import { type Parsed, fail, ok } from "../config/parsed";
import { isInt, showValue as show } from "../config/ranges";
import type { CheckSettings, PoolDefaults, SendProxy } from "../config/types";
import { parseHostPort } from "../net/host_port";
import { normaliseHostName } from "../sni/host_name";
import { type BackendState, STATES, type SlotRef } from "./backend_table";
import { isTemplate, templateError } from "./backend_template";
import { SNI_PLACEHOLDER, compileHostPattern, isPattern } from "./host_pattern";
import { type HealthCheckKind, OPTION_ROWS, type RouteOptions, emptyDraft } from "./route_fields";

export type { CheckSettings, PoolDefaults, SendProxy };

export interface BackendSpec {
  readonly addr: string;
  readonly weight: number;
  readonly backup: boolean;
  /** The operator's state, as stored (SetBackendState); enabled when absent. */
  readonly state?: BackendState;
}

/** A route as configured and stored: its key, its pool and its options. */
export interface Route extends RouteOptions {
  /**
   * "" for a listener's default route; for a pattern route
   * (hostname_pattern) the pattern's text, which starts with "^" as no host
   * name does (docs/ROUTING.md "Templated routes").
   */
  readonly hostname: string;
  /**
   * The ALPN protocols this route serves for its hostname (RFC 7301 §3.1
   * protocol names); empty for the hostname's plain route. See RouteTable.
   */
  readonly alpn: readonly string[];
  readonly backends: readonly BackendSpec[];
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

/** Active checks: off for a templated pool (no fixed address to check; connect failures still count per template). */
export function healthCheckOf(r: Route): HealthCheckKind {
  if (r.backends.some((b) => isTemplate(b.addr))) return "off";
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

/** The one backend of a plain `backend = "host:port"` route. */
export function singleBackend(addr: string): BackendSpec[] {
  return [{ addr, weight: LIMITS["routes.weight"].default, backup: false }];
}

/** A listener's `default_backend` as a route (hostname ""): a pool of one. */
export function defaultRouteOf(l: {
  defaultBackend: string | null;
  defaultBackendSendProxyProtocol: SendProxy;
}): Route | null {
  if (l.defaultBackend === null) return null;
  const options = { ...emptyDraft(), sendProxyProtocol: l.defaultBackendSendProxyProtocol } as RouteOptions;
  return { ...options, hostname: "", alpn: [], backends: singleBackend(l.defaultBackend) };
}

/** Bytes per ALPN protocol name (RFC 7301 §3.1: 1-255). */
const MAX_ALPN_BYTES = 255;

/**
 * A route's ALPN list: 1-16 protocol names (or none: the plain route), each
 * 1-255 bytes of printable ASCII without "," (registered names — h2,
 * http/1.1, acme-tls/1, postgresql, xmpp-client — all are), none twice.
 */
export function alpnError(alpn: unknown, field: string): string | null {
  if (!Array.isArray(alpn)) return `${field}: ${show(alpn)} must be a list of protocol names`;
  const max = LIMITS["routes.alpn"].max;
  if (alpn.length > max) return `${field}: ${alpn.length} protocols; at most ${max} per route`;
  for (const [i, p] of alpn.entries()) {
    if (typeof p !== "string" || p.length === 0 || p.length > MAX_ALPN_BYTES || !/^[\x21-\x2b\x2d-\x7e]+$/.test(p))
      return `${field}[${i}]: ${show(p)} must be 1-${MAX_ALPN_BYTES} printable ASCII characters without spaces or ","`;
    if (alpn.indexOf(p) !== i) return `${field}[${i}]: ${JSON.stringify(p)} appears twice`;
  }
  return null;
}

/**
 * The one clash rule between the routes of one listener: one plain route per
 * hostname, and a (hostname, protocol) pair in one route at most — else
 * which route serves a client would depend on the order they were added.
 * Routes claim their pairs in order; the first claim stands.
 */
export class RouteClaims<R extends RouteKey> {
  private readonly taken = new Map<string, R>();

  /** The protocols of `r` ("" for its plain pair) that an earlier route claims, each with that route. */
  clashes(r: R): [string, R][] {
    const out: [string, R][] = [];
    for (const p of r.alpn.length === 0 ? [""] : r.alpn) {
      const other = this.taken.get(`${r.hostname}\u0000${p}`);
      if (other !== undefined) out.push([p, other]);
    }
    return out;
  }

  claim(r: R): void {
    for (const p of r.alpn.length === 0 ? [""] : r.alpn) {
      const k = `${r.hostname}\u0000${p}`;
      if (!this.taken.has(k)) this.taken.set(k, r);
    }
  }
}

/** The clash rule's problems for a set of routes (a write checks the listener's routes after it). */
export function routeSetProblems(routes: readonly Route[], field: string): string[] {
  const out: string[] = [];
  const claims = new RouteClaims<Route>();
  for (const r of routes) {
    for (const [p, other] of claims.clashes(r))
      out.push(
        p === ""
          ? `${field}: ${JSON.stringify(r.hostname)} has two routes without alpn`
          : `${field}: ${JSON.stringify(r.hostname)} with ALPN ${JSON.stringify(p)} is in two routes (${JSON.stringify(routeName(other))} and ${JSON.stringify(routeName(r))})`,
      );
    claims.claim(r);
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
  const claims = new RouteClaims<R>();
  for (const r of routes) {
    const hit = claims.clashes(r)[0];
    if (hit !== undefined) {
      const what = hit[0] === "" ? "the plain route" : `ALPN ${JSON.stringify(hit[0])}`;
      onDrop(
        r,
        `route ${JSON.stringify(routeName(r))} shares ${what} of ${JSON.stringify(r.hostname)} with ${JSON.stringify(routeName(hit[1]))}`,
      );
      continue;
    }
    claims.claim(r);
    out.push(r);
  }
  return out;
}

/** A route hostname in canonical form: exact, or a wildcard only as a leading "*.". */
export function parseRouteHostname(hostname: string): Parsed<string> {
  const wildcard = hostname.startsWith("*.");
  const rest = wildcard ? hostname.slice(2) : hostname;
  if (rest.includes("*")) return fail(`a wildcard is allowed only as a leading "*." label`);
  const norm = normaliseHostName(rest);
  if (norm === null) return fail(`not a valid host name (1-253 bytes of A-Z a-z 0-9 . - _, no empty labels)`);
  return ok(wildcard ? `*.${norm}` : norm);
}

/**
 * Backends are host:port with a host and a port 1-65535, or templates
 * (backend_template.ts) whose placeholders are among `names`.
 */
export function backendError(backend: string, names: readonly string[] = []): string | null {
  if (isTemplate(backend)) return templateError(backend, names);
  const hp = parseHostPort(backend, { allowEmptyHost: false });
  return hp.ok ? null : hp.error;
}

/** The placeholders a route's backends may use: none on the default route, {sni} and a pattern's captures. */
export function placeholdersOf(hostname: string): string[] {
  if (hostname === "") return [];
  if (!isPattern(hostname)) return [SNI_PLACEHOLDER];
  const p = compileHostPattern(hostname);
  return p.ok ? [SNI_PLACEHOLDER, ...p.value.names] : [SNI_PLACEHOLDER];
}

/**
 * Check a pool of backends: 1–31 entries, each a valid host:port used once,
 * weight 1–256, backup a boolean, state one of enabled, drain, disabled.
 * Returns a problem naming the entry, or null.
 */
export function poolError(backends: unknown, field: string, names: readonly string[] = []): string | null {
  if (!Array.isArray(backends)) return `${field}: ${show(backends)} must be a list of backends`;
  if (backends.length === 0) return `${field}: at least one backend is required`;
  const { max } = LIMITS["routes.backends"];
  if (backends.length > max) return `${field}: ${backends.length} backends; at most ${max} per route`;
  const seen = new Set<string>();
  for (let i = 0; i < backends.length; i++) {
    const b = backends[i] as Partial<BackendSpec> | null;
    if (typeof b !== "object" || b === null) return `${field}[${i}]: ${show(b)} must be { addr, weight, backup }`;
    if (typeof b.addr !== "string") return `${field}[${i}].addr: ${show(b.addr)} must be "host:port"`;
    const err = backendError(b.addr, names);
    if (err !== null) return `${field}[${i}]: ${JSON.stringify(b.addr.slice(0, 64))}: ${err}`;
    if (seen.has(b.addr)) return `${field}[${i}]: ${JSON.stringify(b.addr)} appears twice`;
    seen.add(b.addr);
    const w = LIMITS["routes.weight"];
    if (!isInt(b.weight) || b.weight < w.min || b.weight > w.max)
      return `${field}[${i}].weight: ${show(b.weight)} must be ${w.min}-${w.max}`;
    if (typeof b.backup !== "boolean") return `${field}[${i}].backup: ${show(b.backup)} must be true or false`;
    if (b.state !== undefined && !STATES.includes(b.state))
      return `${field}[${i}].state: ${show(b.state)} must be one of ${STATES.join(", ")}`;
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
  else if (isPattern(r.hostname)) {
    const p = compileHostPattern(r.hostname);
    if (!p.ok) out.push(`${field}.hostname_pattern: ${show(r.hostname)}: ${p.error}`);
    if (Array.isArray(r.alpn) && r.alpn.length > 0)
      out.push(
        `${field}.alpn: a hostname_pattern route takes no alpn (route a name's protocols with an exact or wildcard route)`,
      );
  } else if (r.hostname !== "") {
    const h = parseRouteHostname(r.hostname);
    if (!h.ok) out.push(`${field}.hostname: ${show(r.hostname)}: ${h.error}`);
    else if (h.value !== r.hostname)
      out.push(`${field}.hostname: ${show(r.hostname)} is not in canonical form (${JSON.stringify(h.value)})`);
  }
  push(alpnError(r.alpn, `${field}.alpn`));
  if (r.hostname === "" && Array.isArray(r.alpn) && r.alpn.length > 0)
    out.push(`${field}.alpn: a listener's default route takes no alpn`);
  push(poolError(r.backends, `${field}.backends`, placeholdersOf(typeof r.hostname === "string" ? r.hostname : "")));
  if (
    Array.isArray(r.backends) &&
    r.backends.some((b) => typeof b?.addr === "string" && isTemplate(b.addr)) &&
    r.healthCheck != null &&
    r.healthCheck !== "off"
  )
    out.push(
      `${field}.health_check: ${show(r.healthCheck)}: a templated pool has no fixed address to check; leave it unset or off`,
    );
  const check = r.check;
  if (typeof check !== "object" || check === null || Array.isArray(check))
    out.push(`${field}: ${show(check)} must be an object`);
  else for (const row of OPTION_ROWS) push(row.rule(row.get(r as Route), `${field}.${row.toml}`));
  return out;
}
