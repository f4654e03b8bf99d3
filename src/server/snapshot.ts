// Counters of the data plane as plain, cloneable objects: what one event
// loop reports (a worker posts it to the main thread), and how the control
// plane sums the loops' reports into one — dead incarnations included, so a
// worker's death loses at most what it counted since its last report.

import type { DnsCounts } from "../dns/dns_cache";
import { type Histogram, type ListenerStats, OUTCOMES, type RouteStats } from "./stats";

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
  /** The configured addr; a QUIC listener's is "ADDR/quic". */
  addr: string;
  /** Its one name in logs, metrics and status (listener_runtime.ts listenerLabel). */
  label: string;
  /** Its identity in the admin API; a QUIC listener shares its TCP sibling's (whose routes it uses). */
  name: string;
  /** QUIC listeners follow the TCP ones, in config order; their "connections" are flows. */
  protocol: "tcp" | "quic";
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
  rules: { ip: number; cidr: number; country: number; ja4: number };
  rateTracked: number;
  geoipBuildEpoch: number | null;
  workers: WorkerStatus[];
  /** The loops' resolver caches (dns_cache.ts): a loop's own, or every loop's summed (sumDns). */
  dns: DnsCounts;
}

export function histogramSnapshot(h: Histogram): HistogramSnapshot {
  return { bounds: h.bounds, counts: Array.from(h.counts), sum: h.sum, count: h.count };
}

/** One listener's counters as a plain, cloneable object (live bytes added by the caller). */
export function listenerSnapshot(
  s: ListenerStats,
  view: {
    readonly addr: string;
    readonly name: string;
    readonly protocol: "tcp" | "quic";
    readonly maxConnections: number;
    readonly table: { readonly size: number };
    readonly proxyProtocol: boolean;
    readonly trustedProxies: readonly string[];
  },
  active: number,
): ListenerSnapshot {
  return {
    addr: view.addr,
    label: s.label,
    name: view.name,
    protocol: view.protocol,
    accepted: s.accepted,
    closed: Array.from(s.closed),
    active,
    maxConnections: view.maxConnections,
    routes: view.table.size,
    hello: histogramSnapshot(s.hello),
    duration: s.duration.map(histogramSnapshot),
    routeStats: [...s.routes.values()].map((r) => ({
      label: r.label,
      bytesFromClient: r.bytesFromClient,
      bytesToClient: r.bytesToClient,
      connect: histogramSnapshot(r.connect),
    })),
    proxyProtocol: view.proxyProtocol,
    trustedProxies: view.trustedProxies,
  };
}

/** What a loop's snapshot reads of one listener: its identity and limit, its counters, its open count. */
type ListenerState = Parameters<typeof listenerSnapshot>[1] & {
  readonly stats: ListenerStats;
  readonly active: number;
};

/** What a loop's snapshot reads of one open connection or flow: the bytes it has moved so far, and its route's stats. */
export interface LiveBytes {
  readonly liveRouteStats: RouteStats | null;
  readonly bytesFromClient: number;
  readonly bytesFromBackend: number;
}

/** The loop-wide fields of a loop's snapshot (event_loop.ts). */
type LoopFields = Omit<Snapshot, "listeners" | "workers"> & { worker: { id: number; active: number } };

/** One event loop's counters, its listeners' with the bytes its open connections have moved so far. */
export function loopSnapshot(all: readonly ListenerState[], open: Iterable<LiveBytes>, loop: LoopFields): Snapshot {
  const live = new Map<RouteStats, [number, number]>();
  for (const c of open) {
    const rs = c.liveRouteStats;
    if (rs === null) continue;
    const v = live.get(rs) ?? [0, 0];
    v[0] += c.bytesFromClient;
    v[1] += c.bytesFromBackend;
    live.set(rs, v);
  }
  const listeners = all.map((l) => {
    const snap = listenerSnapshot(l.stats, l, l.active);
    for (const r of snap.routeStats) {
      const v = live.get(l.stats.routes.get(r.label)!);
      if (v !== undefined) {
        r.bytesFromClient += v[0];
        r.bytesToClient += v[1];
      }
    }
    return snap;
  });
  const { worker, ...fields } = loop;
  const accepted = all.reduce((n, l) => n + l.stats.accepted, 0);
  return {
    ...fields,
    listeners,
    workers: [{ id: worker.id, thread: 0, active: worker.active, accepted, restarts: 0 }],
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
  for (const [i, h] of a.duration.entries()) addHistogram(h, b.duration[i]!);
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

/** What one loop slot has reported: its current incarnation's last snapshot, and what earlier ones counted before they died. */
export interface SlotCounts {
  last: Snapshot | null;
  retired: ListenerSnapshot[] | null;
  /** The resolver counts of its dead incarnations. */
  retiredDns?: DnsCounts;
}

/** Fold a dead incarnation's last report into what its slot keeps. */
export function retire(slot: SlotCounts): void {
  if (slot.last === null) return;
  if (slot.retired === null) slot.retired = structuredClone(slot.last.listeners);
  else for (const [i, l] of slot.retired.entries()) addListenerSnapshot(l, slot.last.listeners[i]!);
  slot.retiredDns = addDns(slot.retiredDns ?? noDns(), slot.last.dns);
  slot.last = null;
}

const noDns = (): DnsCounts => ({ queries: 0, failures: 0, hits: 0, stale: 0 });

function addDns(a: DnsCounts, b: DnsCounts | undefined): DnsCounts {
  if (b === undefined) return a;
  return {
    queries: a.queries + b.queries,
    failures: a.failures + b.failures,
    hits: a.hits + b.hits,
    stale: a.stale + b.stale,
  };
}

/** The resolver counts summed over every slot, retired incarnations included. */
export function sumDns(slots: readonly SlotCounts[]): DnsCounts {
  return slots.reduce((sum, s) => addDns(addDns(sum, s.retiredDns), s.last?.dns), noDns());
}

/** What the control plane's snapshot sums of its loops' reports: the listeners' counters (sumListeners), the resolvers'. */
export function sumLoops(base: ListenerSnapshot[], slots: readonly SlotCounts[]): Pick<Snapshot, "listeners" | "dns"> {
  return { listeners: sumListeners(base, slots), dns: sumDns(slots) };
}

/**
 * A listener's entry in the control plane's snapshot, with the fields that
 * are the process's (shared memory): sumListeners adds the loops' counts.
 */
export function sharedListener(
  l: {
    readonly name: string;
    readonly table: { readonly size: number };
    readonly proxyProtocol: boolean;
    readonly trustedProxies: readonly string[];
  },
  at: { index: number; addr: string; label: string; protocol: "tcp" | "quic" },
  counters: { active(index: number): number; max(index: number): number },
): ListenerSnapshot {
  const tcp = at.protocol === "tcp";
  return {
    addr: at.addr,
    label: at.label,
    name: l.name,
    protocol: at.protocol,
    accepted: 0,
    closed: [],
    active: counters.active(at.index),
    maxConnections: counters.max(at.index),
    routes: l.table.size,
    hello: { bounds: [], counts: [], sum: 0, count: 0 },
    duration: [],
    routeStats: [],
    proxyProtocol: tcp && l.proxyProtocol,
    trustedProxies: tcp ? l.trustedProxies : [],
  };
}

/**
 * The listeners' counters summed over every slot (retired and current), onto
 * `base` (one entry per listener with the shared, process-wide fields — active
 * connections, limits — already set).
 */
export function sumListeners(base: ListenerSnapshot[], slots: readonly SlotCounts[]): ListenerSnapshot[] {
  let seeded = false;
  const add = (ls: ListenerSnapshot[]) => {
    ls.forEach((x, i) => {
      const into = base[i]!;
      if (!seeded) {
        // The first one gives the shapes (histogram bounds, outcome slots).
        into.accepted = x.accepted;
        into.closed = [...x.closed];
        into.hello = structuredClone(x.hello);
        into.duration = structuredClone(x.duration);
        into.routeStats = structuredClone(x.routeStats);
      } else addListenerSnapshot(into, x);
    });
    seeded = true;
  };
  for (const s of slots) {
    if (s.retired !== null) add(s.retired);
    if (s.last !== null) add(s.last.listeners);
  }
  return base;
}
