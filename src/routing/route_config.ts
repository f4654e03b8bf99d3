// The [[listeners.routes]] tables of the config file: read with the config's
// TOML helpers, checked with the same rules as the admin API and etcd values
// (route.ts), beside the route model they build.

import { type Config, type ListenerConfig, loadConfig, parseConfig } from "../config/config";
import { sendProxy } from "../config/listeners";
import { type Table, checkKeys, isTable, show, typed } from "../config/toml";
import { type BackendSpec, type Balance, type CheckSettings, type HealthCheckKind, type Route, backendError, parseRouteHostname, routeProblems, singleBackend, sourceList } from "./route";

const ROUTE_KEYS: Record<string, unknown> = {
  hostname: 1,
  alpn: 1,
  allow: 1,
  deny: 1,
  max_connections: 1,
  backend: 1,
  backends: 1,
  balance: 1,
  health_check: 1,
  health_check_interval: 1,
  health_check_timeout: 1,
  health_check_rise: 1,
  health_check_fall: 1,
  retries: 1,
  connect_timeout: 1,
  send_proxy_protocol: 1,
};

export function readRoutes(v: unknown, where: string, problems: string[]): Route[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) {
    problems.push(`${where}.routes: expected [[listeners.routes]] tables, got ${show(v)}`);
    return [];
  }
  const out: Route[] = [];
  const seen = new Map<string, number>();
  v.forEach((item, j) => {
    const rw = `${where}.routes[${j}]`;
    if (!isTable(item)) {
      problems.push(`${rw}: expected a table, got ${show(item)}`);
      return;
    }
    checkKeys(item, ROUTE_KEYS, `${rw}.`, problems);
    const hostname = typed("string", item.hostname ?? "", `${rw}.hostname`, problems) as string | undefined;
    const sendProxyProtocol = sendProxy(item.send_proxy_protocol, `${rw}.send_proxy_protocol`, problems);
    const backends = routeBackends(item, rw, problems);
    const balance = item.balance === undefined ? "round_robin" : (item.balance as Balance);
    const healthCheck = item.health_check === undefined ? null : (item.health_check as HealthCheckKind);
    const check = checkOverrides(item, rw, problems);
    const retries = item.retries === undefined ? null : ((typed("int", item.retries, `${rw}.retries`, problems) as number | undefined) ?? null);
    const connectTimeoutMs = item.connect_timeout === undefined ? null : ((typed("duration", item.connect_timeout, `${rw}.connect_timeout`, problems) as number | undefined) ?? null);
    if (hostname === undefined || backends === null) return;
    const host = parseRouteHostname(hostname);
    if (typeof host !== "string" || hostname === "") {
      problems.push(`${rw}.hostname: ${show(hostname)}: ${hostname === "" ? "required" : (host as { error: string }).error}`);
      return;
    }
    const alpn = item.alpn ?? [];
    const policy = { allow: sources(item.allow, `${rw}.allow`, problems), deny: sources(item.deny, `${rw}.deny`, problems) };
    const maxConnections = item.max_connections === undefined ? 0 : (typed("int", item.max_connections, `${rw}.max_connections`, problems) as number | undefined);
    if (policy.allow === null || policy.deny === null || maxConnections === undefined) return;
    // (hostname, protocol) pairs: one route each (routeSetProblems words the ALPN case).
    for (const p of Array.isArray(alpn) && alpn.length > 0 ? alpn : [""]) {
      const prev = seen.get(`${host}\u0000${p}`);
      if (prev !== undefined) problems.push(`${rw}.hostname: ${show(hostname)}${p === "" ? "" : ` with ALPN ${show(p)}`} duplicates ${where}.routes[${prev}] (host names compare case-insensitively)`);
      seen.set(`${host}\u0000${p}`, j);
    }
    const route: Route = {
      hostname: host,
      alpn: alpn as string[],
      allow: policy.allow,
      deny: policy.deny,
      maxConnections,
      backends,
      balance,
      healthCheck,
      check,
      retries,
      connectTimeoutMs,
      sendProxyProtocol,
    };
    // The same rules as the admin API and etcd values (routing/route.ts).
    const bad = routeProblems(route, rw);
    if (bad.length > 0) {
      problems.push(...bad);
      return;
    }
    out.push(route);
  });
  return out;
}

/** `allow` / `deny`: addresses or CIDR blocks, kept in canonical form; null on a problem. */
function sources(v: unknown, field: string, problems: string[]): string[] | null {
  if (v === undefined) return [];
  const l = sourceList(v, field);
  if (Array.isArray(l)) return l;
  problems.push(l.error);
  return null;
}

/**
 * `backend = "host:port"` (a pool of one, as before) or `backends = [...]`,
 * whose entries are "host:port" or { addr, weight, backup } (Bun's TOML
 * parser takes the mixed array, measured).
 */
function routeBackends(item: Table, rw: string, problems: string[]): BackendSpec[] | null {
  if (item.backend !== undefined && item.backends !== undefined) {
    problems.push(`${rw}: both backend and backends are set; use one (backends for a pool)`);
    return null;
  }
  if (item.backends === undefined) {
    const backend = typed("string", item.backend ?? "", `${rw}.backend`, problems) as string | undefined;
    if (backend === undefined) return null;
    if (backend === "") {
      problems.push(`${rw}.backend: required (host:port), or backends = [...] for a pool`);
      return null;
    }
    const err = backendError(backend);
    if (err !== null) {
      problems.push(`${rw}.backend: ${show(backend)}: ${err}`);
      return null;
    }
    return singleBackend(backend);
  }
  if (!Array.isArray(item.backends)) {
    problems.push(`${rw}.backends: expected a list of "host:port" or { addr = "host:port", weight = 1, backup = false }, got ${show(item.backends)}`);
    return null;
  }
  const out: BackendSpec[] = [];
  for (const [k, b] of item.backends.entries()) {
    const at = `${rw}.backends[${k}]`;
    if (typeof b === "string") out.push({ addr: b, weight: 1, backup: false });
    else if (isTable(b)) {
      checkKeys(b, { addr: 1, weight: 1, backup: 1 }, `${at}.`, problems);
      const addr = typed("string", b.addr ?? "", `${at}.addr`, problems) as string | undefined;
      const weight = b.weight === undefined ? 1 : (typed("int", b.weight, `${at}.weight`, problems) as number | undefined);
      const backup = b.backup === undefined ? false : (typed("bool", b.backup, `${at}.backup`, problems) as boolean | undefined);
      if (addr === undefined || weight === undefined || backup === undefined) return null;
      out.push({ addr, weight, backup });
    } else {
      problems.push(`${at}: expected "host:port" or { addr = "host:port", weight = 1, backup = false }, got ${show(b)}`);
      return null;
    }
  }
  return out;
}

function checkOverrides(item: Table, rw: string, problems: string[]): Partial<CheckSettings> {
  const c: Partial<CheckSettings> = {};
  // Types here; ranges in routeProblems.
  const dur = (k: string) => (item[k] === undefined ? undefined : (typed("duration", item[k], `${rw}.${k}`, problems) as number | undefined));
  const int = (k: string) => (item[k] === undefined ? undefined : (typed("int", item[k], `${rw}.${k}`, problems) as number | undefined));
  const interval = dur("health_check_interval");
  const timeout = dur("health_check_timeout");
  const rise = int("health_check_rise");
  const fall = int("health_check_fall");
  if (interval !== undefined) c.intervalMs = interval;
  if (timeout !== undefined) c.timeoutMs = timeout;
  if (rise !== undefined) c.rise = rise;
  if (fall !== undefined) c.fall = fall;
  return c;
}

/** The config with its routes read by this module: what the server, the CLI and the tests use. */
export type RoutedConfig = Config<Route>;
export type RoutedListener = ListenerConfig<Route>;

/** Read, parse and validate a config file (config/config.ts), its routes by readRoutes. */
export function loadRoutedConfig(file: string, env: Record<string, string | undefined> = process.env): RoutedConfig {
  return loadConfig(file, readRoutes, env);
}

export function parseRoutedConfig(text: string, file: string, env: Record<string, string | undefined> = {}): RoutedConfig {
  return parseConfig(text, file, readRoutes, env);
}
