// What the admin API answers, built from the tables in force and the
// counters (docs/ADMIN_API.md; shapes: messages.ts): synchronous, no store,
// no socket. A route's backends carry their health, operator state and
// connection counts from the shared backend table.
import { formatDuration } from "../config/duration";
import type { BackendTable } from "../routing/backend_table";
import { isPattern } from "../routing/host_pattern";
import { type BoundRoute, type Route, healthCheckOf } from "../routing/route";
import { drainClosesAt, drainTimeoutOf } from "../server/connection_sweep";
import type { FingerprintsView, LiveTables } from "../server/runtime_views";
import type { Snapshot } from "../server/snapshot";
import { OUTCOMES } from "../server/stats";
import { VERSION } from "../version";
import type { BackendMsg, FingerprintsReply, RouteMsg, StatusReply } from "./messages";
import { BACKEND_STATE_ENUM, BALANCE_ENUM, HEALTH_CHECK_ENUM, SEND_PROXY_ENUM } from "./protos";

export interface StatusExtras {
  /** `[grpc] allow_unauthenticated_admin` is on: shown so it cannot go unnoticed. */
  unauthenticatedAdmin: boolean;
  /** This process's takeover generation (1 for a plain start) and pid. */
  generation?: number;
  pid?: number;
}

/**
 * The route's `i`th backend with its health, state and open connections; in drain or disabled, when drain_timeout
 * (the route's, else `drainDefaultMs`: [proxy]'s) ends those still open (docs/POOLS.md "Drains end").
 */
export function backendMsg(table: BackendTable, r: BoundRoute, i: number, drainDefaultMs = 0): BackendMsg {
  const b = r.backends[i]!;
  const h = table.health(r.refs[i]!);
  const closesAt = drainClosesAt(table.drainedAt(r.refs[i]!), drainTimeoutOf(r, drainDefaultMs));
  return {
    addr: b.addr,
    weight: b.weight,
    backup: b.backup,
    state: BACKEND_STATE_ENUM[h.state],
    health: {
      up: h.up,
      last_check: h.lastCheck,
      last_check_unix_seconds: h.lastCheckAt,
      consecutive_failures: h.consecutiveFailures,
    },
    active_connections: h.active,
    draining_connections: h.state === "enabled" ? 0 : h.active,
    closes_at: closesAt === 0 ? "" : new Date(closesAt).toISOString(),
    closes_at_unix_seconds: Math.floor(closesAt / 1000),
  };
}

/** A route in force, its pool included. */
export function routeMsg(table: BackendTable, r: BoundRoute, drainDefaultMs = 0): RouteMsg {
  return {
    hostname: r.hostname,
    hostname_pattern: isPattern(r.hostname) ? r.hostname : "",
    backend: r.backends[0]!.addr,
    send_proxy_protocol: SEND_PROXY_ENUM[r.sendProxyProtocol],
    backends: r.backends.map((_, i) => backendMsg(table, r, i, drainDefaultMs)),
    balance: BALANCE_ENUM[r.balance],
    health_check: HEALTH_CHECK_ENUM[healthCheckOf(r)],
    alpn: [...r.alpn],
    allow: [...r.allow],
    deny: [...r.deny],
    allow_destinations: [...(r.allowDestinations ?? [])],
    deny_destinations: [...(r.denyDestinations ?? [])],
    max_connections: r.maxConnections,
    active_connections: table.active(r.countRef),
    ...checkFields(r),
  };
}

/** A route as written, for when it is not in this instance's table (only when its store lags). */
export function writtenRouteMsg(route: Route): RouteMsg {
  return {
    hostname: route.hostname,
    hostname_pattern: isPattern(route.hostname) ? route.hostname : "",
    backend: route.backends[0]!.addr,
    send_proxy_protocol: SEND_PROXY_ENUM[route.sendProxyProtocol],
    backends: [],
    balance: BALANCE_ENUM[route.balance],
    health_check: HEALTH_CHECK_ENUM[healthCheckOf(route)],
    alpn: [...route.alpn],
    allow: [...route.allow],
    deny: [...route.deny],
    allow_destinations: [...(route.allowDestinations ?? [])],
    deny_destinations: [...(route.denyDestinations ?? [])],
    max_connections: route.maxConnections,
    active_connections: 0,
    ...checkFields(route),
  };
}

/** The route's own check settings as AddRoute takes them ("" / 0: [proxy]'s). */
function checkFields(
  r: Route,
): Pick<
  RouteMsg,
  | "health_check_interval"
  | "health_check_timeout"
  | "health_check_rise"
  | "health_check_fall"
  | "drain_timeout"
  | "max_connection_lifetime"
> {
  const d = (ms: number | undefined) => (ms === undefined ? "" : formatDuration(ms));
  return {
    drain_timeout: d(r.drainTimeoutMs),
    max_connection_lifetime: d(r.maxConnectionLifetimeMs),
    health_check_interval: d(r.check.intervalMs),
    health_check_timeout: d(r.check.timeoutMs),
    health_check_rise: r.check.rise ?? 0,
    health_check_fall: r.check.fall ?? 0,
  };
}

export function fingerprintsReply(v: FingerprintsView): FingerprintsReply {
  return {
    fingerprints: v.entries.map((e) => ({
      ja4: e.key,
      connections: e.count,
      blocked: e.blocked,
      error: e.error,
      client_networks: e.clientPrefixes,
      client_networks_at_least: e.clientPrefixesSaturated,
      first_seen_unix_ms: e.firstSeen,
      last_seen_unix_ms: e.lastSeen,
    })),
    window_seconds: Math.round(v.windowMs / 1000),
    capacity: v.capacity,
    workers: v.loops,
  };
}

/** GetStatus at `now` (ms since the epoch): the counters summed, each listener with its routes. */
export function statusReply(
  s: Snapshot,
  tables: LiveTables,
  store: string,
  extras: StatusExtras,
  now: number,
): StatusReply & { workers: unknown } {
  const closed = s.listeners.reduce((n, l) => n + l.closed.reduce((a, b) => a + b, 0), 0);
  const active = s.listeners.reduce((n, l) => n + l.active, 0);
  return {
    version: VERSION,
    uptime_seconds: Math.floor((now - s.startedAt) / 1000),
    started_at_unix_seconds: Math.floor(s.startedAt / 1000),
    total_connections: closed + active,
    active_connections: active,
    outcomes: OUTCOMES.map((outcome, i) => ({
      outcome,
      count: s.listeners.reduce((n, l) => n + l.closed[i]!, 0),
    })).filter((o) => o.count > 0),
    // QUIC listeners follow the TCP ones: addr "ADDR/quic", the name (and routes) of the listener whose routes they use.
    listeners: s.listeners.map((l) => ({
      addr: l.addr,
      label: l.label,
      name: l.name,
      protocol: l.protocol,
      route_count: l.routes,
      active_connections: l.active,
      max_connections: l.maxConnections,
      proxy_protocol: l.proxyProtocol,
      trusted_proxies: l.trustedProxies,
      routes: (tables.listener(l.name)?.table.routes() ?? []).map((r) =>
        routeMsg(tables.backends, r, tables.drainTimeoutMs),
      ),
    })),
    connection_cap: s.connectionCap,
    unauthenticated_admin: extras.unauthenticatedAdmin,
    workers: s.workers,
    store,
    generation: extras.generation ?? 1,
    pid: extras.pid ?? process.pid,
  };
}
