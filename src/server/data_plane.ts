// What the admin plane and the metrics see of the data plane, whether it is
// one event loop (Server, workers = 1) or several (WorkerPool): the route
// tables as last applied, ways to apply changes everywhere, and snapshots of
// the counters summed over every loop.

import type { FirewallRules } from "../firewall/firewall";
import type { BackendTable, SlotRef } from "../routing/backend_table";
import type { Route } from "../routing/pool";
import type { RouteTable } from "../routing/route_table";
import { type Histogram, type ListenerStats, OUTCOMES } from "./stats";

export interface ListenerView {
  /** Position in the config: the listener's slot in the shared counters and backend keys. */
  readonly index: number;
  /** The configured addr string: where it binds; its label in logs and metrics. */
  readonly addr: string;
  /** Its identity in the admin API and the store (default: addr). */
  readonly name: string;
  /** The table in force (the one the admin API lists). */
  readonly table: RouteTable;
  readonly maxConnections: number;
  readonly proxyProtocol: boolean;
  readonly trustedProxies: readonly string[];
}

export interface HistogramSnapshot {
  bounds: readonly number[];
  counts: number[];
  sum: number;
  count: number;
}

export interface RouteSnapshot {
  label: string;
  /** Including what live connections have moved so far. */
  bytesFromClient: number;
  bytesToClient: number;
  connect: HistogramSnapshot;
}

export interface ListenerSnapshot {
  addr: string;
  accepted: number;
  /** By OUTCOMES index. */
  closed: number[];
  active: number;
  maxConnections: number;
  routes: number;
  hello: HistogramSnapshot;
  /** By OUTCOMES index. */
  duration: HistogramSnapshot[];
  routeStats: RouteSnapshot[];
  proxyProtocol: boolean;
  trustedProxies: readonly string[];
}

export interface WorkerStatus {
  id: number;
  /** The worker's thread id (Bun Worker threadId); 0 for the main thread. */
  thread: number;
  active: number;
  accepted: number;
  restarts: number;
}

export interface Snapshot {
  startedAt: number;
  listeners: ListenerSnapshot[];
  connectionCap: number;
  draining: boolean;
  rules: { ip: number; cidr: number; country: number };
  rateTracked: number;
  geoipBuildEpoch: number | null;
  workers: WorkerStatus[];
}

export interface DataPlane {
  readonly listeners: readonly ListenerView[];
  /** By name, or by addr. */
  listener(nameOrAddr: string): ListenerView | undefined;
  /** A GeoIP database is configured (country rules can match). */
  readonly geoipConfigured: boolean;
  /** Swap a listener's routes on every event loop; resolves once all have. */
  applyRoutes(l: ListenerView, routes: readonly Route[]): Promise<void>;
  applyRules(rules: FirewallRules): Promise<void>;
  /** Applies to the next accept everywhere (the limit lives in shared memory). */
  applyMaxConnections(l: ListenerView, n: number): void;
  /** Backend health, operator state and connection counts (shared by every loop). */
  readonly backends: BackendTable;
  /** Reset every connection on a backend, on every loop; resolves with how many. */
  applyBackendReset(ref: SlotRef): Promise<number>;
  snapshot(): Promise<Snapshot>;
  /** SIGHUP: null when no GeoIP database is configured. */
  reloadGeoIp(): Promise<"ok" | "error" | null>;
  shutdown(): void;
  readonly isDraining: boolean;
  /** Resolves with the exit code once everything has stopped. */
  readonly done: Promise<number>;
}

export function histogramSnapshot(h: Histogram): HistogramSnapshot {
  return { bounds: h.bounds, counts: Array.from(h.counts), sum: h.sum, count: h.count };
}

/** One listener's counters as a plain, cloneable object (live bytes added by the caller). */
export function listenerSnapshot(s: ListenerStats, view: ListenerView, active: number): ListenerSnapshot {
  return {
    addr: s.addr,
    accepted: s.accepted,
    closed: Array.from(s.closed),
    active,
    maxConnections: view.maxConnections,
    routes: view.table.size,
    hello: histogramSnapshot(s.hello),
    duration: s.duration.map(histogramSnapshot),
    routeStats: [...s.routes.values()].map((r) => ({ label: r.label, bytesFromClient: r.bytesFromClient, bytesToClient: r.bytesToClient, connect: histogramSnapshot(r.connect) })),
    proxyProtocol: view.proxyProtocol,
    trustedProxies: view.trustedProxies,
  };
}

function addHistogram(into: HistogramSnapshot, h: HistogramSnapshot): void {
  for (let i = 0; i < into.counts.length; i++) into.counts[i]! += h.counts[i] ?? 0;
  into.sum += h.sum;
  into.count += h.count;
}

/** Add `b`'s counters into `a` (same listeners, in the same order); routes are matched by label. */
export function addListenerSnapshot(a: ListenerSnapshot, b: ListenerSnapshot): void {
  a.accepted += b.accepted;
  for (let i = 0; i < OUTCOMES.length; i++) a.closed[i]! += b.closed[i] ?? 0;
  addHistogram(a.hello, b.hello);
  a.duration.forEach((h, i) => addHistogram(h, b.duration[i]!));
  for (const r of b.routeStats) {
    const mine = a.routeStats.find((x) => x.label === r.label);
    if (mine === undefined) a.routeStats.push(structuredClone(r));
    else {
      mine.bytesFromClient += r.bytesFromClient;
      mine.bytesToClient += r.bytesToClient;
      addHistogram(mine.connect, r.connect);
    }
  }
}
