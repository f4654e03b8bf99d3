// The one control plane, whatever the number of event loops (as HAProxy and
// Envoy have one control path for 1 or N threads). It owns what is per
// process — the connection counts, the backend table and its health checks,
// route binding, the rate-limit table, the GeoIP bytes, the rules in force —
// and drives N loops (loops.ts): workers = 1 is one loop in this thread,
// more are worker threads bound with SO_REUSEPORT.
//
//   changes   → applied here, then sent to every loop that exists (a worker
//               still starting included), resolved once each has answered
//   snapshots → asked of every loop, summed (with what dead ones counted)
//   a death   → its connections, backend counts and rate-limit locks taken
//               back, logged at error level, replaced within RESPAWN_MS; 5
//               deaths within 60 s end the process with exit code 1
//   drain     → every loop stops accepting at once and drains; done when all are

import type { RoutedConfig as Config } from "../routing/route_config";
import { CountryDatabase } from "../firewall/country_database";
import type { FirewallRules } from "../firewall/firewall";
import { RateLimiter } from "../firewall/rate_limiter";
import type { Logger } from "../log/logger";
import { BackendTable, DEFAULT_BACKEND_SLOTS, type SlotRef } from "../routing/backend_table";
import { HealthChecker } from "../routing/health_checker";
import { type Route, bindRoutes, defaultRouteOf } from "../routing/pool";
import { RouteTable } from "../routing/route_table";
import { mergeHitters } from "../metrics/heavy_hitters";
import type { DataPlane, FingerprintsView, ListenerView } from "./data_plane";
import type { LoopChange, LoopInit, LoopReply } from "./loop_protocol";
import { Listener, quicLabel } from "./listener_runtime";
import { QUIC_DEFAULT_MAX_FLOWS } from "./quic_listener";
import { InThreadLoop, type Loop, WorkerLoop } from "./loops";
import { SharedCounters } from "./shared_counters";
import { type ListenerSnapshot, type Snapshot, type SlotCounts, type WorkerStatus, retire, sumListeners } from "./snapshot";

const RESPAWN_MS = 200;
const CRASH_LOOP = { deaths: 5, withinMs: 60_000 };
/** Snapshots are also taken on this period, so a worker's death loses at most this much of its counts. */
const SNAPSHOT_EVERY_MS = 5000;

interface Slot extends SlotCounts {
  id: number;
  loop: Loop | null;
  restarts: number;
  stopped: boolean;
}

export interface ControlOptions {
  /** Event loops; 1 runs in this thread. */
  loops: number;
  histograms: boolean;
  connectionCap: number;
  /** (listener, route, backend) entries at most; DEFAULT_BACKEND_SLOTS unless a test wants a small table. */
  backendSlots?: number;
  /** This process's place in a chain of takeovers (1 for a plain start): the access log's `gen`. */
  generation?: number;
  /** Started by a takeover: UDP addresses are still the old process's until it hands over. */
  takeover?: boolean;
}

export class ControlPlane implements DataPlane {
  readonly listeners: Listener[];
  readonly startedAt = Date.now();
  readonly counters: SharedCounters;
  readonly backends: BackendTable;
  private readonly checker: HealthChecker;
  private readonly slots: Slot[];
  private readonly rate: RateLimiter | null;
  private geoipData: Uint8Array | null;
  private geoipBuildEpoch: number | null = null;
  private rules: FirewallRules;
  private readonly deaths: number[] = [];
  private draining = false;
  private finished = false;
  private resolveDone!: (code: number) => void;
  readonly done = new Promise<number>((r) => (this.resolveDone = r));
  private readonly ticker: ReturnType<typeof setInterval> | null;

  private constructor(
    private readonly config: Config,
    private readonly logger: Logger,
    private readonly options: ControlOptions,
  ) {
    const n = options.loops;
    // TCP listeners' slots, then QUIC listeners' (event_loop.ts): a QUIC listener's limit is its max_flows.
    this.counters = new SharedCounters(config.listeners.length + config.quicListeners.length, n);
    for (const [i, l] of config.listeners.entries()) this.counters.setMax(i, l.maxConnections);
    for (const [j, q] of config.quicListeners.entries()) this.counters.setMax(config.listeners.length + j, q.maxFlows > 0 ? q.maxFlows : QUIC_DEFAULT_MAX_FLOWS);
    this.backends = new BackendTable(options.backendSlots ?? DEFAULT_BACKEND_SLOTS, n);
    this.checker = new HealthChecker(this.backends, config.proxy.pool, logger);
    this.listeners = config.listeners.map((l, i) => {
      const bound = bindRoutes(this.backends, i, l.routes, defaultRouteOf(l));
      return new Listener(i, l.addr, l.name, new RouteTable(bound.routes, bound.defaultRoute, config.proxy.pool, this.backends), l.proxyProtocol, l.trustedProxies, this.counters);
    });
    this.rules = { blockedIps: config.firewall.blockedIps, blockedCidrs: config.firewall.blockedCidrs, blockedCountries: config.firewall.blockedCountries, blockedJa4: config.firewall.blockedJa4 };
    this.rate = config.firewall.rateLimit > 0 ? new RateLimiter(config.firewall.rateLimit, config.firewall.rateWindowMs) : null;
    // Read once, shared by every loop; throws (refusing to start) when unreadable.
    this.geoipData = config.firewall.geoipDb === null ? null : CountryDatabase.read(config.firewall.geoipDb);
    if (this.geoipData !== null) this.geoipBuildEpoch = CountryDatabase.fromBytes(this.geoipData, config.firewall.geoipDb!).buildEpoch;
    this.slots = Array.from({ length: n }, (_, id) => ({ id, loop: null, restarts: 0, stopped: false, last: null, retired: null }));
    // One loop in this thread cannot die: its counters are read when asked.
    this.ticker = n > 1 ? setInterval(() => void this.snapshot(), SNAPSHOT_EVERY_MS) : null;
  }

  /** Start every loop and wait until each listens; throws (after stopping the others) when any cannot start. */
  static async start(config: Config, logger: Logger, options: ControlOptions): Promise<ControlPlane> {
    const cp = new ControlPlane(config, logger, options);
    const started = await Promise.all(cp.slots.map((s) => cp.spawn(s)));
    const failed = started.find((r) => r !== null);
    if (failed !== undefined) {
      cp.finish(0);
      throw new Error(failed!);
    }
    for (const l of cp.listeners) cp.checker.sync(l.addr, l.table.pools());
    return cp;
  }

  get isDraining(): boolean {
    return this.draining;
  }

  get geoipConfigured(): boolean {
    return this.config.firewall.geoipDb !== null;
  }

  listener(nameOrAddr: string): Listener | undefined {
    return this.listeners.find((l) => l.name === nameOrAddr) ?? this.listeners.find((l) => l.addr === nameOrAddr);
  }

  /** What a (re)started loop is built from: the routes, rules and limits in force now. */
  private loopInit(id: number): LoopInit {
    const config: Config = {
      ...this.config,
      listeners: this.config.listeners.map((l, i) => ({ ...l, routes: this.listeners[i]!.table.routes(), maxConnections: this.counters.max(i) })),
      firewall: {
        ...this.config.firewall,
        blockedIps: [...this.rules.blockedIps],
        blockedCidrs: [...this.rules.blockedCidrs],
        blockedCountries: [...this.rules.blockedCountries],
        blockedJa4: [...this.rules.blockedJa4],
      },
    };
    return {
      id,
      workers: this.options.loops,
      config,
      counters: this.counters.buffer,
      backends: this.backends.buffer,
      tables: this.listeners.map((l) => ({ routes: l.table.routes(), defaultRoute: l.table.defaultRoute?.route ?? null })),
      rateBuffer: this.rate?.buffer ?? null,
      geoipData: this.geoipData,
      histograms: this.options.histograms,
      connectionCap: this.options.connectionCap,
      generation: this.options.generation ?? 1,
      takeover: this.options.takeover === true,
      backendSlots: this.backends.slots,
    };
  }

  /** Start (or restart) a slot's loop; resolves with an error message, or null once it listens. */
  private spawn(slot: Slot): Promise<string | null> {
    slot.stopped = false;
    slot.last = null;
    const events = {
      stopped: (snapshot: Snapshot) => {
        slot.stopped = true;
        slot.last = snapshot;
        this.checkAllStopped();
      },
      died: () => {
        if (slot.loop !== loop) return;
        slot.loop = null;
        if (!this.finished) this.died(slot, loop.thread);
      },
    };
    const init = this.loopInit(slot.id);
    const loop: Loop = this.options.loops === 1 ? new InThreadLoop(init, this.logger, events) : new WorkerLoop(init, this.logger, events);
    slot.loop = loop;
    return loop.start();
  }

  /** A worker died (an uncaught error, or killed): account for it, replace it, or stop on a crash loop. */
  private died(slot: Slot, thread: number): void {
    const lost = this.counters.forgetWorker(slot.id);
    // Its sockets died with it: the backends' connection counts and any
    // rate-limiter lock it held go too.
    const backendConns = this.backends.forgetWorker(slot.id);
    const locks = this.rate?.releaseLocksOf(slot.id) ?? 0;
    retire(slot);
    const now = Date.now();
    this.deaths.push(now);
    while (this.deaths.length > 0 && this.deaths[0]! < now - CRASH_LOOP.withinMs) this.deaths.shift();
    this.logger.error("worker died; its connections are lost", {
      worker: slot.id,
      thread,
      connections: lost,
      backend_connections: backendConns,
      rate_locks_freed: locks,
      deaths_last_minute: this.deaths.length,
    });
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
        if (err === null) this.logger.info("worker replaced", { worker: slot.id, thread: slot.loop?.thread ?? 0, restarts: slot.restarts });
        else this.logger.error("worker could not be replaced", { worker: slot.id, error: err });
      });
    }, RESPAWN_MS);
  }

  /** Send to every loop that exists; a slot waiting to respawn starts from loopInit(), which already holds the change. */
  private broadcast(change: LoopChange): Promise<(LoopReply | null)[]> {
    return Promise.all(this.slots.map((s) => (s.loop === null ? Promise.resolve(null) : s.loop.send(change))));
  }

  async applyRoutes(l: ListenerView, routes: readonly Route[]): Promise<void> {
    const cl = l as Listener;
    const bound = bindRoutes(this.backends, cl.index, routes, cl.table.defaultRoute?.route ?? null);
    cl.table = new RouteTable(bound.routes, cl.table.defaultRoute?.route ?? null, this.config.proxy.pool, this.backends);
    this.checker.sync(cl.addr, cl.table.pools());
    await this.broadcast({ type: "routes", listener: cl.index, routes: bound.routes });
  }

  async applyBackendReset(ref: SlotRef): Promise<number> {
    const replies = await this.broadcast({ type: "reset-backend", slot: ref.slot, gen: ref.gen });
    return replies.reduce((n, r) => n + (r?.count ?? 0), 0);
  }

  async applyRules(rules: FirewallRules): Promise<void> {
    this.rules = rules;
    await this.broadcast({ type: "rules", rules });
  }

  applyMaxConnections(l: ListenerView, n: number): void {
    this.counters.setMax((l as Listener).index, n);
  }

  /** SIGHUP: read the database once, check it, hand the bytes to every loop; keep the old one on failure. */
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
    await this.broadcast({ type: "geoip", data });
    this.logger.info("GeoIP database reloaded", { path, workers: this.options.loops });
    return "ok";
  }

  async snapshot(): Promise<Snapshot> {
    const replies = await this.broadcast({ type: "snapshot" });
    replies.forEach((r, i) => {
      if (r?.snapshot !== undefined) this.slots[i]!.last = r.snapshot;
    });
    const shared = (l: Listener, index: number, addr: string, protocol: "tcp" | "quic"): ListenerSnapshot => ({
      addr,
      name: l.name,
      protocol,
      accepted: 0,
      closed: [],
      active: this.counters.active(index),
      maxConnections: this.counters.max(index),
      routes: l.table.size,
      hello: { bounds: [], counts: [], sum: 0, count: 0 },
      duration: [],
      routeStats: [],
      proxyProtocol: protocol === "tcp" && l.proxyProtocol,
      trustedProxies: protocol === "tcp" ? l.trustedProxies : [],
    });
    // TCP listeners, then QUIC ones (each over the listener whose routes it uses): the loops' order (event_loop.ts).
    const base = [
      ...this.listeners.map((l) => shared(l, l.index, l.addr, "tcp")),
      ...this.config.quicListeners.map((q, j) => shared(this.listeners[q.routesOf]!, this.listeners.length + j, quicLabel(q.addr), "quic")),
    ];
    const workers: WorkerStatus[] = this.slots.map((s) => ({
      id: s.id,
      thread: s.loop?.thread ?? 0,
      active: this.counters.workerActive(s.id),
      accepted: s.last === null ? 0 : s.last.listeners.reduce((n, l) => n + l.accepted, 0),
      restarts: s.restarts,
    }));
    return {
      startedAt: this.startedAt,
      listeners: sumListeners(base, this.slots),
      connectionCap: this.options.connectionCap,
      draining: this.draining,
      rules: { ip: this.rules.blockedIps.length, cidr: this.rules.blockedCidrs.length, country: this.rules.blockedCountries.length, ja4: this.rules.blockedJa4.length },
      rateTracked: this.rate?.tracked(Date.now()) ?? 0,
      geoipBuildEpoch: this.geoipBuildEpoch,
      workers,
    };
  }

  async fingerprints(limit: number): Promise<FingerprintsView> {
    const { top, windowMs } = this.config.fingerprints;
    if (top === 0) return { capacity: 0, windowMs, loops: 0, entries: [] };
    const reports = (await this.broadcast({ type: "fingerprints" })).flatMap((r) => (r?.fingerprints === undefined ? [] : [r.fingerprints]));
    return { capacity: top, windowMs, loops: reports.length, entries: mergeHitters(reports, limit) };
  }

  /** One health check of every pool backend now, taken as its state (HealthChecker.prime): before a takeover's handover. */
  primeHealth(): Promise<{ checked: number; down: number }> {
    return this.checker.prime();
  }

  /** Test fault injection: make worker `id` throw an uncaught error. */
  crash(id: number): void {
    this.slots[id]?.loop?.crash();
  }

  shutdown(): void {
    if (this.draining) return;
    this.draining = true;
    this.logger.info("shutting down", { workers: this.options.loops, active: this.counters.total(), shutdown_timeout_ms: this.config.proxy.shutdownTimeoutMs });
    this.checker.stop();
    for (const s of this.slots) s.loop?.drain();
    // Each loop force-closes its own connections at shutdown_timeout; this is the backstop.
    setTimeout(() => this.finish(0), this.config.proxy.shutdownTimeoutMs + 5000).unref();
    this.checkAllStopped();
  }

  private checkAllStopped(): void {
    if (this.draining && this.slots.every((s) => s.stopped || s.loop === null)) this.finish(0);
  }

  private finish(code: number): void {
    if (this.finished) return;
    this.finished = true;
    if (this.ticker !== null) clearInterval(this.ticker);
    this.checker.stop();
    for (const s of this.slots) s.loop?.terminate();
    this.resolveDone(code);
  }
}
