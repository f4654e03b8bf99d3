// The data plane on every core ([proxy] workers > 1, issue 11): N worker
// threads, each a whole event loop (worker_main.ts) bound to every listener
// with SO_REUSEPORT, supervised from the main thread, which also runs the
// one admin plane and the one store.
//
// Threads rather than processes: a SharedArrayBuffer gives every loop the
// same connection counters and rate-limit table with Atomics, so limits are
// exact without a round trip per accept; the threads share one fd table (the
// connection cap is the process's) and one copy of the GeoIP database. A
// worker costs about 4 MiB at idle (measured: two workers, 33 MiB RSS for
// the whole process).
//
//   changes   → broadcast, resolved once every live worker has acknowledged
//   snapshots → asked of every worker, summed (with what dead ones counted)
//   a death   → its connections taken out of the shared counts, logged at
//               error level, replaced within RESPAWN_MS; 5 deaths within 60 s
//               end the process with exit code 1 (a crash loop)
//   drain     → every worker stops accepting at once and drains; done when all are

import type { Config } from "../config/config";
import { CountryDatabase } from "../firewall/country_database";
import type { FirewallRules } from "../firewall/firewall";
import { RateLimiter } from "../firewall/rate_limiter";
import type { Logger } from "../log/logger";
import { BackendTable, DEFAULT_BACKEND_SLOTS, type SlotRef } from "../routing/backend_table";
import { HealthChecker } from "../routing/health_checker";
import { type BoundRoute, type Route, bindRoutes, defaultRouteOf } from "../routing/pool";
import { RouteTable } from "../routing/route_table";
import { type DataPlane, type ListenerSnapshot, type ListenerView, type Snapshot, type WorkerStatus, addListenerSnapshot } from "./data_plane";
import { SharedCounters } from "./shared_counters";
import type { FromWorker, ToWorker } from "./worker_protocol";

const RESPAWN_MS = 200;
const CRASH_LOOP = { deaths: 5, withinMs: 60_000 };
/** How long a change or a snapshot waits for a worker before giving up on it. */
const REPLY_TIMEOUT_MS = 3000;
/** Snapshots are also taken on this period, so a worker's death loses at most this much of its counts. */
const SNAPSHOT_EVERY_MS = 5000;

/**
 * The worker's entry point. From source it sits beside this file. In the
 * compiled binary the bundle is one module at the root of Bun's embedded file
 * system, and the extra entry point (scripts/build.ts) keeps its path below
 * the entry points' common folder, src/ — measured: "./server/worker_main.ts"
 * resolves there, while the URL relative to this module does not.
 */
const WORKER_ENTRY = import.meta.url.startsWith("file:///$bunfs/") ? "./server/worker_main.ts" : new URL("./worker_main.ts", import.meta.url).href;

class PoolListener implements ListenerView {
  constructor(
    readonly index: number,
    readonly addr: string,
    readonly name: string,
    public table: RouteTable,
    readonly proxyProtocol: boolean,
    readonly trustedProxies: readonly string[],
    private readonly counters: SharedCounters,
  ) {}
  get maxConnections(): number {
    return this.counters.max(this.index);
  }
}

interface Slot {
  id: number;
  worker: Worker | null;
  thread: number;
  restarts: number;
  ready: boolean;
  stopped: boolean;
  /** The last snapshot of the current incarnation. */
  last: Snapshot | null;
  /** What earlier incarnations of this slot counted before they died. */
  retired: ListenerSnapshot[] | null;
}

type Waiter = { resolve: (m: FromWorker | null) => void; timer: ReturnType<typeof setTimeout> };

export class WorkerPool implements DataPlane {
  readonly listeners: PoolListener[];
  readonly startedAt = Date.now();
  readonly counters: SharedCounters;
  readonly backends: BackendTable;
  private readonly checker: HealthChecker;
  private readonly slots: Slot[];
  private readonly rate: RateLimiter | null;
  private geoipData: Uint8Array | null;
  private geoipBuildEpoch: number | null = null;
  private rules: FirewallRules;
  private seq = 0;
  private readonly waiters = new Map<string, Waiter>();
  private readonly deaths: number[] = [];
  private draining = false;
  private finished = false;
  private resolveDone!: (code: number) => void;
  readonly done = new Promise<number>((r) => (this.resolveDone = r));
  private readonly ticker: ReturnType<typeof setInterval>;

  private constructor(
    private readonly config: Config,
    private readonly logger: Logger,
    private readonly count: number,
    private readonly options: { histograms: boolean; connectionCap: number },
  ) {
    this.counters = new SharedCounters(config.listeners.length, count);
    this.backends = new BackendTable(DEFAULT_BACKEND_SLOTS, count);
    config.listeners.forEach((l, i) => this.counters.setMax(i, l.maxConnections));
    this.checker = new HealthChecker(this.backends, config.proxy.pool, logger);
    this.listeners = config.listeners.map((l, i) => {
      const bound = bindRoutes(this.backends, i, l.routes, defaultRouteOf(l));
      return new PoolListener(
          i,
          l.addr,
          l.name,
          new RouteTable(bound.routes, bound.defaultRoute, config.proxy.pool, this.backends),
          l.proxyProtocol,
          l.trustedProxies,
          this.counters,
        );
    });
    for (const l of this.listeners) this.checker.sync(l.addr, l.table.pools());
    this.rules = { blockedIps: config.firewall.blockedIps, blockedCidrs: config.firewall.blockedCidrs, blockedCountries: config.firewall.blockedCountries };
    this.rate = config.firewall.rateLimit > 0 ? new RateLimiter(config.firewall.rateLimit, config.firewall.rateWindowMs) : null;
    // Read once, shared by every worker; throws (refusing to start) when unreadable.
    this.geoipData = config.firewall.geoipDb === null ? null : CountryDatabase.read(config.firewall.geoipDb);
    if (this.geoipData !== null) this.geoipBuildEpoch = CountryDatabase.fromBytes(this.geoipData, config.firewall.geoipDb!).buildEpoch;
    this.slots = Array.from({ length: count }, (_, id) => ({ id, worker: null, thread: 0, restarts: 0, ready: false, stopped: false, last: null, retired: null }));
    this.ticker = setInterval(() => void this.snapshot(), SNAPSHOT_EVERY_MS);
  }

  /**
   * Start `count` workers and wait until each has bound every listener.
   * Throws (after stopping the others) when any cannot start.
   */
  static async start(config: Config, logger: Logger, count: number, options: { histograms: boolean; connectionCap: number }): Promise<WorkerPool> {
    const pool = new WorkerPool(config, logger, count, options);
    const started = await Promise.all(pool.slots.map((s) => pool.spawn(s)));
    const failed = started.find((r) => r !== null);
    if (failed !== undefined) {
      pool.finished = true;
      clearInterval(pool.ticker);
      for (const s of pool.slots) s.worker?.terminate();
      throw new Error(failed!);
    }
    return pool;
  }

  get isDraining(): boolean {
    return this.draining;
  }

  get geoipConfigured(): boolean {
    return this.config.firewall.geoipDb !== null;
  }

  listener(nameOrAddr: string): PoolListener | undefined {
    return this.listeners.find((l) => l.name === nameOrAddr) ?? this.listeners.find((l) => l.addr === nameOrAddr);
  }

  /** The config a (re)started worker runs with: the routes and rules in force now. */
  private currentConfig(): Config {
    return {
      ...this.config,
      listeners: this.config.listeners.map((l, i) => ({ ...l, routes: this.listeners[i]!.table.routes(), maxConnections: this.counters.max(i) })),
      firewall: { ...this.config.firewall, blockedIps: [...this.rules.blockedIps], blockedCidrs: [...this.rules.blockedCidrs], blockedCountries: [...this.rules.blockedCountries] },
    };
  }

  /** Start (or restart) the worker of a slot; resolves with an error message, or null once it is ready. */
  private spawn(slot: Slot): Promise<string | null> {
    const w = new Worker(WORKER_ENTRY);
    slot.worker = w;
    slot.ready = false;
    slot.stopped = false;
    slot.last = null;
    return new Promise((resolve) => {
      let settled = false;
      const settle = (r: string | null) => {
        if (!settled) {
          settled = true;
          resolve(r);
        }
      };
      w.onmessage = (e: MessageEvent<FromWorker>) => {
        const m = e.data;
        if (m.type === "log") return this.logger.forward(m.text);
        if (m.type === "ready") {
          slot.thread = m.thread;
          slot.ready = true;
          return settle(null);
        }
        if (m.type === "failed") {
          w.terminate();
          return settle(`worker ${slot.id}: ${m.error}`);
        }
        if (m.type === "stopped") {
          slot.stopped = true;
          slot.last = m.snapshot;
          w.terminate();
          return this.checkAllStopped();
        }
        if (m.type === "ack" || m.type === "snapshot") {
          const key = `${slot.id}:${m.seq}`;
          const waiter = this.waiters.get(key);
          if (waiter !== undefined) {
            this.waiters.delete(key);
            clearTimeout(waiter.timer);
            waiter.resolve(m);
          }
        }
      };
      w.addEventListener("error", (e) => {
        this.logger.error("worker error", { worker: slot.id, error: (e as ErrorEvent).message });
      });
      w.addEventListener("close", () => {
        if (slot.worker !== w) return;
        slot.worker = null;
        for (const [key, waiter] of this.waiters) {
          if (key.startsWith(`${slot.id}:`)) {
            this.waiters.delete(key);
            clearTimeout(waiter.timer);
            waiter.resolve(null);
          }
        }
        settle(`worker ${slot.id} exited while starting`);
        if (slot.stopped || this.finished) return this.checkAllStopped();
        this.died(slot);
      });
      const init: ToWorker = {
        type: "init",
        id: slot.id,
        workers: this.count,
        config: this.currentConfig(),
        counters: this.counters.buffer,
        backends: this.backends.buffer,
        tables: this.listeners.map((l) => ({ routes: l.table.routes(), defaultRoute: l.table.defaultRoute?.route ?? null })),
        rateBuffer: this.rate?.buffer ?? null,
        geoipData: this.geoipData,
        histograms: this.options.histograms,
        connectionCap: this.options.connectionCap,
      };
      w.postMessage(init);
    });
  }

  /** A worker died (an uncaught error, or killed): account for it, replace it, or stop on a crash loop. */
  private died(slot: Slot): void {
    const lost = this.counters.forgetWorker(slot.id);
    // Its sockets died with it: the backends' connection counts and any
    // rate-limiter lock it held go too.
    const backendConns = this.backends.forgetWorker(slot.id);
    const locks = this.rate?.releaseLocksOf(slot.id) ?? 0;
    if (slot.last !== null) {
      if (slot.retired === null) slot.retired = structuredClone(slot.last.listeners);
      else slot.retired.forEach((l, i) => addListenerSnapshot(l, slot.last!.listeners[i]!));
    }
    const now = Date.now();
    this.deaths.push(now);
    while (this.deaths.length > 0 && this.deaths[0]! < now - CRASH_LOOP.withinMs) this.deaths.shift();
    this.logger.error("worker died; its connections are lost", { worker: slot.id, thread: slot.thread, connections: lost, backend_connections: backendConns, rate_locks_freed: locks, deaths_last_minute: this.deaths.length });
    if (this.draining) return this.checkAllStopped();
    if (this.deaths.length >= CRASH_LOOP.deaths) {
      this.logger.error(`crash loop: ${this.deaths.length} worker deaths within ${CRASH_LOOP.withinMs / 1000} s; exiting`);
      this.finish(1);
      return;
    }
    setTimeout(() => {
      if (this.draining || this.finished) return;
      slot.restarts++;
      void this.spawn(slot).then((err) => {
        if (err === null) this.logger.info("worker replaced", { worker: slot.id, thread: slot.thread, restarts: slot.restarts });
        else this.logger.error("worker could not be replaced", { worker: slot.id, error: err });
      });
    }, RESPAWN_MS);
  }

  /**
   * Send to every worker that exists, ready or still starting (a starting
   * worker handles its init first, then this: the order of one port's
   * messages is kept), so a change reaches every worker that will serve
   * before the caller is answered; a slot waiting to respawn is started
   * from currentConfig(), which already holds the change. Resolves with each
   * reply (null where a worker died or did not answer).
   */
  private broadcast(make: (seq: number) => ToWorker): Promise<(FromWorker | null)[]> {
    const seq = ++this.seq;
    return Promise.all(
      this.slots.map((slot) => {
        const w = slot.worker;
        if (w === null) return Promise.resolve(null);
        return new Promise<FromWorker | null>((resolve) => {
          const key = `${slot.id}:${seq}`;
          const timer = setTimeout(() => {
            this.waiters.delete(key);
            this.logger.warn("worker did not answer", { worker: slot.id, timeout_ms: REPLY_TIMEOUT_MS });
            resolve(null);
          }, REPLY_TIMEOUT_MS);
          this.waiters.set(key, { resolve, timer });
          w.postMessage(make(seq));
        });
      }),
    );
  }

  async applyRoutes(l: ListenerView, routes: readonly Route[]): Promise<void> {
    const pl = l as PoolListener;
    const bound = bindRoutes(this.backends, pl.index, routes, pl.table.defaultRoute?.route ?? null);
    pl.table = new RouteTable(bound.routes, pl.table.defaultRoute?.route ?? null, this.config.proxy.pool, this.backends);
    this.checker.sync(pl.addr, pl.table.pools());
    const copy: BoundRoute[] = structuredClone(bound.routes);
    await this.broadcast((seq) => ({ type: "routes", seq, listener: pl.index, routes: copy }));
  }

  async applyBackendReset(ref: SlotRef): Promise<number> {
    const replies = await this.broadcast((seq) => ({ type: "reset-backend", seq, slot: ref.slot, gen: ref.gen }));
    return replies.reduce((n, r) => n + (r !== null && r.type === "ack" ? (r.count ?? 0) : 0), 0);
  }

  async applyRules(rules: FirewallRules): Promise<void> {
    this.rules = rules;
    await this.broadcast((seq) => ({ type: "rules", seq, rules }));
  }

  applyMaxConnections(l: ListenerView, n: number): void {
    this.counters.setMax((l as PoolListener).index, n);
  }

  async reloadGeoIp(): Promise<"ok" | "error" | null> {
    const path = this.config.firewall.geoipDb;
    if (path === null) {
      this.logger.info("SIGHUP: no GeoIP database configured; nothing to reload");
      return null;
    }
    let data: Uint8Array;
    try {
      data = CountryDatabase.read(path);
      this.geoipBuildEpoch = CountryDatabase.fromBytes(data, path).buildEpoch;
    } catch (e) {
      this.logger.error("GeoIP reload failed; keeping the previous database", { error: (e as Error).message });
      return "error";
    }
    this.geoipData = data;
    await this.broadcast((seq) => ({ type: "geoip", seq, data }));
    this.logger.info("GeoIP database reloaded", { path, workers: this.count });
    return "ok";
  }

  async snapshot(): Promise<Snapshot> {
    const replies = await this.broadcast((seq) => ({ type: "snapshot", seq }));
    replies.forEach((r, i) => {
      if (r !== null && r.type === "snapshot") this.slots[i]!.last = r.snapshot;
    });
    const listeners: ListenerSnapshot[] = this.listeners.map((l) => ({
      addr: l.addr,
      accepted: 0,
      closed: [],
      active: this.counters.active(l.index),
      maxConnections: l.maxConnections,
      routes: l.table.size,
      hello: { bounds: [], counts: [], sum: 0, count: 0 },
      duration: [],
      routeStats: [],
      proxyProtocol: l.proxyProtocol,
      trustedProxies: l.trustedProxies,
    }));
    let seeded = false;
    const add = (ls: ListenerSnapshot[]) => {
      ls.forEach((x, i) => {
        const into = listeners[i]!;
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
    const workers: WorkerStatus[] = [];
    for (const s of this.slots) {
      if (s.retired !== null) add(s.retired);
      // The current incarnation's counters (a dead one's were moved to retired).
      if (s.last !== null) add(s.last.listeners);
      const accepted = s.last === null ? 0 : s.last.listeners.reduce((n, l) => n + l.accepted, 0);
      workers.push({ id: s.id, thread: s.thread, active: this.counters.workerActive(s.id), accepted, restarts: s.restarts });
    }
    return {
      startedAt: this.startedAt,
      listeners,
      connectionCap: this.options.connectionCap,
      draining: this.draining,
      rules: { ip: this.rules.blockedIps.length, cidr: this.rules.blockedCidrs.length, country: this.rules.blockedCountries.length },
      rateTracked: this.rate?.tracked(Date.now()) ?? 0,
      geoipBuildEpoch: this.geoipBuildEpoch,
      workers,
    };
  }

  /** Test fault injection: make worker `id` throw an uncaught error. */
  crash(id: number): void {
    this.slots[id]?.worker?.postMessage({ type: "crash" } satisfies ToWorker);
  }

  shutdown(): void {
    if (this.draining) return;
    this.draining = true;
    this.logger.info("shutting down", { workers: this.count, active: this.counters.total(), shutdown_timeout_ms: this.config.proxy.shutdownTimeoutMs });
    for (const s of this.slots) s.worker?.postMessage({ type: "drain" } satisfies ToWorker);
    // Each worker force-closes its own connections at shutdown_timeout; this is the backstop.
    setTimeout(() => this.finish(0), this.config.proxy.shutdownTimeoutMs + 5000).unref();
    this.checkAllStopped();
  }

  private checkAllStopped(): void {
    if (this.draining && this.slots.every((s) => s.stopped || s.worker === null)) this.finish(0);
  }

  private finish(code: number): void {
    if (this.finished) return;
    this.finished = true;
    clearInterval(this.ticker);
    this.checker.stop();
    for (const s of this.slots) s.worker?.terminate();
    this.resolveDone(code);
  }
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
