// What the host allows this process: the CPUs it may run on (workers =
// "auto"), and its file-descriptor budget with the connection cap derived
// from it. At EMFILE Bun's accept loop retries at once and spins a core
// while clients wait in the backlog; a proxy that never lets its descriptors
// run out accepts and resets instead, as HAProxy does by deriving maxconn
// from `ulimit -n`.
//
// Bun raises the soft RLIMIT_NOFILE to the hard limit itself at start
// (measured on 1.4.4; tests/platform/bun_sockets.test.ts keeps it), so there
// is nothing to raise here: the limits are read and reported.

import { readFileSync } from "node:fs";
import type { RoutedConfig as Config } from "../routing/route_config";
import { defaultRouteOf, healthCheckOf } from "../routing/route";

export interface FdLimits {
  soft: number;
  hard: number;
}

/**
 * Each proxied connection holds two descriptors: the client and the backend.
 * A routed QUIC flow holds one (its connected UDP socket to the backend: the
 * client side is the listener's socket) and takes a whole place of the cap
 * all the same: one budget for both, the spare descriptor is margin.
 */
export const FDS_PER_CONNECTION = 2;

/** What a configuration needs descriptors for besides its connections. */
export interface FdNeeds {
  /** Event loops (workers). */
  loops: number;
  listeners: number;
  /** QUIC listeners: one UDP socket each, in the first event loop only (event_loop.ts). */
  quicListeners: number;
  /** (route, backend) pairs with active health checks: one check socket each at a time. */
  healthTargets: number;
  admin: boolean;
  metrics: boolean;
  geoip: boolean;
  etcd: boolean;
  /** Some route may retry another backend. */
  retries: boolean;
}

/**
 * Descriptors kept back from the connection budget (docs/SECURITY.md
 * "Connection cap from the open-file limit"), from the configuration:
 *
 *   16                          stdio, the database and its -wal/-shm, log pipes, the runtime's own
 * + 1                           the GeoIP file
 * + 10                          the admin listener and up to 9 admin clients
 * + 6                           the metrics listener and up to 5 scrapers
 * + 8                           etcd client connections (one per endpoint and the watch)
 * + loops × (listeners + 6)     per event loop: a listening socket per listener (SO_REUSEPORT),
 *                               and its epoll, eventfd, timerfd and wake-up descriptors
 * + QUIC listeners              one UDP socket each (the first event loop binds them all)
 * + health-check targets        one check socket per (route, backend) at a time
 * + retry headroom              a connection trying its next backend holds a third descriptor
 *                               for one connect: room for 1 in 16 connections at once
 */
export function reservedFds(n: FdNeeds, soft: number): number {
  const fixed =
    16 +
    (n.geoip ? 1 : 0) +
    (n.admin ? 10 : 0) +
    (n.metrics ? 6 : 0) +
    (n.etcd ? 8 : 0) +
    n.loops * (n.listeners + 6) +
    n.quicListeners +
    n.healthTargets;
  const retry =
    n.retries && Number.isFinite(soft) ? Math.ceil(Math.max(0, soft - fixed) / (FDS_PER_CONNECTION * 16 + 1)) : 0;
  return fixed + retry;
}

/** What `cfg` needs, run on `loops` event loops. */
export function needsOf(cfg: Config, loops: number): FdNeeds {
  let healthTargets = 0;
  let retries = false;
  for (const l of cfg.listeners) {
    const d = defaultRouteOf(l);
    for (const r of d === null ? l.routes : [...l.routes, d]) {
      if (healthCheckOf(r) !== "off") healthTargets += r.backends.length;
      if (r.backends.length > 1 && (r.retries ?? cfg.proxy.pool.retries) > 0) retries = true;
    }
  }
  return {
    loops,
    listeners: cfg.listeners.length,
    quicListeners: cfg.quicListeners.length,
    healthTargets,
    admin: cfg.grpc !== null,
    metrics: cfg.metrics !== null,
    geoip: cfg.firewall.geoipDb !== null,
    etcd: cfg.store === "etcd",
    retries,
  };
}

/** The reserve of a minimal configuration (one loop, one listener, nothing else): for callers that know no more. */
export const MIN_NEEDS: FdNeeds = {
  loops: 1,
  listeners: 1,
  quicListeners: 0,
  healthTargets: 0,
  admin: false,
  metrics: false,
  geoip: false,
  etcd: false,
  retries: false,
};

/** Parse the "Max open files" line of /proc/self/limits ("unlimited" → Infinity). */
export function parseProcLimits(text: string): FdLimits | null {
  const m = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)\s+files/m.exec(text);
  if (m === null) return null;
  const n = (s: string) => (s === "unlimited" ? Number.POSITIVE_INFINITY : Number(s));
  return { soft: n(m[1]!), hard: n(m[2]!) };
}

/** This process's descriptor limits, or null where /proc cannot tell. */
export function readFdLimits(): FdLimits | null {
  try {
    return parseProcLimits(readFileSync("/proc/self/limits", "utf8"));
  } catch {
    return null;
  }
}

/**
 * Connections and routed QUIC flows the process may hold open at once,
 * together: ⌊(soft − reservedFds) / 2⌋, at least 1; 0 = no cap. Each takes
 * one place (shared_counters.ts) when it is accepted, or, for a flow, when
 * its backend socket is opened; over the cap it is refused (over_capacity).
 */
export function connectionCap(limits: FdLimits | null, needs: FdNeeds = MIN_NEEDS): number {
  if (limits === null || !Number.isFinite(limits.soft)) return 0;
  return Math.max(1, Math.floor((limits.soft - reservedFds(needs, limits.soft)) / FDS_PER_CONNECTION));
}

/**
 * A warning when the listeners' max_connections together need more
 * descriptors than the limit allows (nginx warns about worker_connections
 * the same way); null when they fit. Unlimited listeners (0) add nothing:
 * the cap alone bounds them.
 */
export function capacityWarning(
  maxConnections: readonly number[],
  limits: FdLimits | null,
  needs: FdNeeds = MIN_NEEDS,
): string | null {
  if (limits === null || !Number.isFinite(limits.soft)) return null;
  const cap = connectionCap(limits, needs);
  const sum = maxConnections.reduce((a, b) => a + b, 0);
  if (sum <= cap) return null;
  return (
    `the listeners' max_connections add up to ${sum}, which needs ${sum * FDS_PER_CONNECTION + reservedFds(needs, limits.soft)} file descriptors, ` +
    `but the open-file limit is ${limits.soft}: at most ${cap} connections will be served at once ` +
    `(raise LimitNOFILE / ulimit -n, or lower max_connections)`
  );
}

/**
 * CPUs this process may run on (its affinity mask, from /proc/self/status
 * Cpus_allowed_list: "0-3,8"); the machine's count when /proc cannot tell.
 */
export function availableCpus(status: string = readStatus()): number {
  const m = /^Cpus_allowed_list:\s*(\S+)/m.exec(status);
  if (m === null) return navigator.hardwareConcurrency || 1;
  let n = 0;
  for (const part of m[1]!.split(",")) {
    const [a, b] = part.split("-").map(Number);
    n += b === undefined ? 1 : b! - a! + 1;
  }
  return Math.max(1, n);
}

function readStatus(): string {
  try {
    return require("node:fs").readFileSync("/proc/self/status", "utf8") as string;
  } catch {
    return "";
  }
}

/**
 * Linux ≥ 5.14 moves the connections queued on a closing SO_REUSEPORT
 * listener to the other listeners of its group when
 * net.ipv4.tcp_migrate_req is 1 (Documentation/networking/ip-sysctl.rst);
 * at 0 they are reset when the old process of a takeover closes its
 * listeners. A warning when it is 0 or missing; null when it is 1.
 */
export function migrateWarning(read: () => string | null = readMigrate): string | null {
  const v = read();
  if (v === "1") return null;
  const why =
    v === null
      ? "this kernel has no net.ipv4.tcp_migrate_req (Linux 5.14 or later has it)"
      : `net.ipv4.tcp_migrate_req is ${v}`;
  return `${why}: at a takeover (mc-proxy reload) connections still queued on the old process's listeners are reset. Set it: echo net.ipv4.tcp_migrate_req=1 > /etc/sysctl.d/60-mc-proxy.conf && sysctl --system (RUNBOOK "Upgrade and rollback")`;
}

function readMigrate(): string | null {
  try {
    return readFileSync("/proc/sys/net/ipv4/tcp_migrate_req", "utf8").trim();
  } catch {
    return null;
  }
}
