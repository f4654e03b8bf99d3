// The [[listeners.routes]] tables of the config file: read with the config's
// TOML helpers, checked with the same rules as the admin API and etcd values
// (route.ts), beside the route model they build.

import { type Config, type ListenerConfig, loadConfig, parseConfig } from "../config/config";
import { defaultOf } from "../config/limits";
import { sendProxy } from "../config/listeners";
import { type Table, checkKeys, isTable, show, typed } from "../config/toml";
import {
  type BackendSpec,
  type Route,
  RouteClaims,
  backendError,
  parseRouteHostname,
  routeProblems,
  singleBackend,
} from "./route";
import { isTemplate } from "./backend_template";
import { isPattern } from "./host_pattern";
import { OPTION_ROWS, type RouteDraft, emptyDraft } from "./route_fields";

/** A backend's weight when the config gives none. */
const WEIGHT = defaultOf("routes.weight");

/** The route's key and pool, then one key per option row (route_fields.ts). */
const ROUTE_KEYS: Record<string, unknown> = Object.fromEntries(
  ["hostname", "hostname_pattern", "alpn", "backend", "backends", ...OPTION_ROWS.map((r) => r.toml)].map((k) => [k, 1]),
);

export function readRoutes(v: unknown, where: string, problems: string[]): Route[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) {
    problems.push(`${where}.routes: expected [[listeners.routes]] tables, got ${show(v)}`);
    return [];
  }
  const out: Route[] = [];
  const claims = new RouteClaims<Route>();
  const index = new Map<Route, number>();
  v.forEach((item, j) => {
    const rw = `${where}.routes[${j}]`;
    if (!isTable(item)) {
      problems.push(`${rw}: expected a table, got ${show(item)}`);
      return;
    }
    checkKeys(item, ROUTE_KEYS, `${rw}.`, problems);
    const hostname = typed("string", item.hostname ?? "", `${rw}.hostname`, problems) as string | undefined;
    const pattern = typed("string", item.hostname_pattern ?? "", `${rw}.hostname_pattern`, problems) as
      | string
      | undefined;
    const options = readOptions(item, rw, problems);
    const backends = routeBackends(item, rw, problems);
    if (hostname === undefined || pattern === undefined || backends === null) return;
    const key = routeKeyOf(hostname, pattern, rw, problems);
    if (key === null) return;
    const route = { ...options, hostname: key, alpn: item.alpn ?? [], backends } as unknown as Route;
    // The same rules as the admin API and stored values (routing/route.ts).
    const bad = routeProblems(route, rw);
    if (bad.length > 0) {
      problems.push(...bad);
      return;
    }
    // (hostname, protocol) pairs: one route each (routeSetProblems words the admin API's case).
    for (const [p, other] of claims.clashes(route))
      problems.push(
        `${rw}.hostname: ${show(hostname)}${p === "" ? "" : ` with ALPN ${show(p)}`} duplicates ${where}.routes[${index.get(other)}] (host names compare case-insensitively)`,
      );
    claims.claim(route);
    index.set(route, j);
    out.push(route);
  });
  return out;
}

/**
 * The route's key: its hostname in canonical form, or its hostname_pattern
 * as written (starting with "^"; routeProblems compiles it) — one of them.
 */
function routeKeyOf(hostname: string, pattern: string, rw: string, problems: string[]): string | null {
  if (pattern !== "") {
    if (hostname !== "") problems.push(`${rw}: both hostname and hostname_pattern are set; use one`);
    else if (!isPattern(pattern)) problems.push(`${rw}.hostname_pattern: ${show(pattern)}: must start with "^"`);
    else return pattern;
    return null;
  }
  const host = parseRouteHostname(hostname);
  if (!host.ok || hostname === "") {
    problems.push(
      `${rw}.hostname: ${show(hostname)}: ${hostname === "" || host.ok ? "required (or hostname_pattern)" : host.error}`,
    );
    return null;
  }
  return host.value;
}

/** Every option row's key: its TOML type read here, its canonical form taken; ranges are routeProblems'. */
function readOptions(item: Table, rw: string, problems: string[]): RouteDraft {
  const d = emptyDraft();
  for (const row of OPTION_ROWS) {
    const raw = item[row.toml];
    if (raw === undefined) continue;
    const key = `${rw}.${row.toml}`;
    let v =
      row.kind === "send_proxy"
        ? sendProxy(raw, key, problems)
        : row.kind === "given"
          ? raw
          : typed(row.kind, raw, key, problems);
    if (v === undefined) continue;
    if (row.canonical !== undefined) {
      const c = row.canonical(v, key);
      if (!c.ok) {
        problems.push(c.error);
        continue;
      }
      v = c.value;
    }
    row.put(d, v);
  }
  return d;
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
    // A template's placeholders depend on the route's pattern: routeProblems checks it.
    const err = isTemplate(backend) ? null : backendError(backend);
    if (err !== null) {
      problems.push(`${rw}.backend: ${show(backend)}: ${err}`);
      return null;
    }
    return singleBackend(backend);
  }
  if (!Array.isArray(item.backends)) {
    problems.push(
      `${rw}.backends: expected a list of "host:port" or { addr = "host:port", weight = 1, backup = false }, got ${show(item.backends)}`,
    );
    return null;
  }
  const out: BackendSpec[] = [];
  for (const [k, b] of item.backends.entries()) {
    const at = `${rw}.backends[${k}]`;
    if (typeof b === "string") out.push({ addr: b, weight: WEIGHT, backup: false });
    else if (isTable(b)) {
      checkKeys(b, { addr: 1, weight: 1, backup: 1 }, `${at}.`, problems);
      const addr = typed("string", b.addr ?? "", `${at}.addr`, problems) as string | undefined;
      const weight =
        b.weight === undefined ? WEIGHT : (typed("int", b.weight, `${at}.weight`, problems) as number | undefined);
      const backup =
        b.backup === undefined ? false : (typed("bool", b.backup, `${at}.backup`, problems) as boolean | undefined);
      if (addr === undefined || weight === undefined || backup === undefined) return null;
      out.push({ addr, weight, backup });
    } else {
      problems.push(
        `${at}: expected "host:port" or { addr = "host:port", weight = 1, backup = false }, got ${show(b)}`,
      );
      return null;
    }
  }
  return out;
}

/** The config with its routes read by this module: what the server, the CLI and the tests use. */
export type RoutedConfig = Config<Route>;
export type RoutedListener = ListenerConfig<Route>;

/** Read, parse and validate a config file (config/config.ts), its routes by readRoutes. */
export function loadRoutedConfig(file: string, env: Record<string, string | undefined> = process.env): RoutedConfig {
  return loadConfig(file, readRoutes, env);
}

export function parseRoutedConfig(
  text: string,
  file: string,
  env: Record<string, string | undefined> = {},
): RoutedConfig {
  return parseConfig(text, file, readRoutes, env);
}
