// The one control plane, whatever the number of event loops (as HAProxy and
// Envoy have one control path for 1 or N threads). It owns what is per
// process — the connection counts, the backend table and its health checks,
// route binding, the rate-limit table, the GeoIP bytes, the rules in force —
// and drives N loops (loops.ts): workers = 1 is one loop in this thread,
// more are worker threads bound with SO_REUSEPORT.
//
//   changes   → applied here, then sent as a command to every loop that
//               exists (a worker still starting included), resolved once
//               each has answered (loop_protocol.ts)
//   queries   → asked of every loop: snapshots summed (with what dead ones
//               counted), top-fingerprints tables and refusals merged
//   a death   → its connections, backend counts and rate-limit locks taken
//               back, logged at error level, replaced within RESPAWN_MS; 5
//               deaths within 60 s end the process with exit code 1
//   drain     → every loop stops accepting at once and drains; done when all are

import type { RoutedConfig as Config } from "../routing/route_config";
import { CountryDatabase } from "../firewall/country_database";
import { type FirewallRules, ruleCounts } from "../firewall/firewall";
import { type Rule, passedRules } from "../firewall/rule_set";
import { RateLimiter } from "../firewall/rate_limiter";
import type { Logger } from "../log/logger";
import { BackendTable, DEFAULT_BACKEND_SLOTS, type SlotRef } from "../routing/backend_table";
import { HealthChecker } from "../routing/health_checker";
import { bindRoutes } from "../routing/pool";
import { type Route, defaultRouteOf } from "../routing/route";
import { RouteTable } from "../routing/route_table";
import { mergeHitters } from "../metrics/hitter_merge";
import type { FingerprintsView, ListenerView, RuntimeChanges, RuntimeStatus } from "./runtime_views";
import type { Ack, LoopCommand, LoopInit, LoopQuery, LoopReply, QueryType } from "./loop_protocol";
import { Listener, identityOf } from "./listener_runtime";
import { InThreadLoop, type Loop, type LoopEvents, WorkerLoop } from "./loops";
import { loopInitOf } from "./loop_init";
import { SharedCounters } from "./shared_counters";
import { type Refusal, mergeRefusals } from "./refusal_ring";
import { type Snapshot, type SlotCounts, type WorkerStatus, retire, sharedListener, sumLoops } from "./snapshot";

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
  /** How a loop is made: by default in this thread (loops = 1) or a worker thread; a unit test passes a fake. */
  newLoop?: (init: LoopInit, logger: Logger, events: LoopEvents) => Loop;
}

export class ControlPlane implements RuntimeChanges, RuntimeStatus {
  /** The listeners with routes of their own (config/listeners.ts routeOwners): what the admin API and the stores see. */
  readonly listeners: Listener[];
  /** Every listener by index (TCP, then QUIC): a QUIC listener without routes of its own over its TCP listener's table. */
  private readonly all: Listener[];
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
    // TCP listeners' slots, then QUIC listeners' (event_loop.ts): each limit is its max_connections.
    const configured = [...config.listeners, ...config.quicListeners];
    this.counters = new SharedCounters(configured.length, n);
    for (const l of configured) this.counters.setMax(l.index, l.maxConnections);
    this.backends = new BackendTable(options.backendSlots ?? DEFAULT_BACKEND_SLOTS, n);
    this.checker = new HealthChecker(this.backends, config.proxy.pool, logger);
    this.all = [];
    for (const l of configured) {
      const id = identityOf(l);
      const shared = l.protocol === "quic" && l.routesFrom !== null ? this.all[l.routesFrom]!.table : null;
      const bound =
        shared === null
          ? bindRoutes(this.backends, l.index, l.routes, l.protocol === "tcp" ? defaultRouteOf(l) : null)
          : null;
      const table = shared ?? new RouteTable(bound!.routes, bound!.defaultRoute, config.proxy.pool, this.backends);
      this.all.push(
        new Listener(
          l.index,
          id.addr,
          id.name,
          table,
          id.proxyProtocol,
          id.trustedProxies,
          this.counters,
          id.protocol,
          id.label,
        ),
      );
    }
    this.listeners = this.all.filter((l) => this.routesFrom(l.index) === null);
    const { blockedIps, blockedCidrs, blockedCountries, blockedJa4 } = config.firewall;
    this.rules = { blockedIps, blockedCidrs, blockedCountries, blockedJa4 };
    this.rate =
      config.firewall.rateLimit > 0 ? new RateLimiter(config.firewall.rateLimit, config.firewall.rateWindowMs) : null;
    // Read once, shared by every loop; throws (refusing to start) when unreadable.
    this.geoipData = config.firewall.geoipDb === null ? null : CountryDatabase.read(config.firewall.geoipDb);
    if (this.geoipData !== null)
      this.geoipBuildEpoch = CountryDatabase.fromBytes(this.geoipData, config.firewall.geoipDb!).buildEpoch;
    this.slots = Array.from({ length: n }, (_, id) => ({
      id,
      loop: null,
      restarts: 0,
      stopped: false,
      last: null,
      retired: null,
    }));
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
    cp.syncHealth();
    return cp;
  }

  /** The index of the listener whose routes listener `index` uses, or null: its own. */
  private routesFrom(index: number): number | null {
    const q = this.config.quicListeners.find((x) => x.index === index);
    return q === undefined ? null : q.routesFrom;
  }

  /** Health checks follow the TCP listeners' pools: a QUIC listener's own backends are UDP, which a TCP check cannot judge. */
  private syncHealth(l?: Listener): void {
    for (const x of l === undefined ? this.listeners : [l])
      if (x.protocol === "tcp") this.checker.sync(x.label, x.table.pools());
  }

  /** [proxy] drain_timeout: when a drained backend's connections end (docs/POOLS.md "Drains end"). */
  get drainTimeoutMs(): number {
    return this.config.proxy.drainTimeoutMs;
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
    // What a (re)started loop is built from: the routes, rules and limits in force now.
    const state = {
      config: this.config,
      all: this.all,
      counters: this.counters,
      backends: this.backends,
      rules: this.rules,
      rate: this.rate,
      geoipData: this.geoipData,
    };
    const init = loopInitOf(slot.id, state, this.options);
    const make = this.options.newLoop ?? (this.options.loops === 1 ? inThread : inWorker);
    const loop: Loop = make(init, this.logger, events);
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
      this.logger.error(
        `crash loop: ${this.deaths.length} worker deaths within ${CRASH_LOOP.withinMs / 1000} s; exiting`,
      );
      this.finish(1);
      return;
    }
    setTimeout(() => {
      if (this.draining || this.finished) return;
      slot.restarts++;
      void this.spawn(slot).then((err) => {
        if (err === null)
          this.logger.info("worker replaced", {
            worker: slot.id,
            thread: slot.loop?.thread ?? 0,
            restarts: slot.restarts,
          });
        else this.logger.error("worker could not be replaced", { worker: slot.id, error: err });
      });
    }, RESPAWN_MS);
  }

  /** Apply on every loop that exists; a slot waiting to respawn starts from loopInitOf(), which holds the change. */
  private command(c: LoopCommand): Promise<Ack[]> {
    return Promise.all(this.slots.flatMap((s) => (s.loop === null ? [] : [s.loop.command(c)])));
  }

  /** Ask every slot's loop: null for a slot with none, or whose loop did not answer. */
  private query<K extends QueryType>(q: LoopQuery<K>): Promise<(LoopReply<K> | null)[]> {
    return Promise.all(this.slots.map((s) => (s.loop === null ? Promise.resolve(null) : s.loop.query(q))));
  }

  async applyRoutes(l: ListenerView, routes: readonly Route[]): Promise<void> {
    const cl = l as Listener;
    const defaultRoute = cl.table.defaultRoute?.route ?? null;
    const bound = bindRoutes(this.backends, cl.index, routes, defaultRoute);
    cl.table = new RouteTable(bound.routes, defaultRoute, this.config.proxy.pool, this.backends);
    for (const f of this.all) if (this.routesFrom(f.index) === cl.index) f.table = cl.table;
    this.syncHealth(cl);
    await this.command({ type: "routes", listener: cl.index, routes: bound.routes });
  }

  async applyBackendReset(ref: SlotRef): Promise<number> {
    return closedOf(await this.command({ type: "reset-backend", slot: ref.slot, gen: ref.gen }));
  }

  async applyRules(rules: FirewallRules, kept: readonly Rule[] = []): Promise<number> {
    const passed = passedRules(this.rules, rules, kept);
    this.rules = rules;
    const closed = closedOf(await this.command({ type: "rules", rules, passed }));
    if (closed > 0) this.logger.info("firewall: connections the new rules block closed", { closed });
    return closed;
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
    await this.command({ type: "geoip", data });
    this.logger.info("GeoIP database reloaded", { path, workers: this.options.loops });
    return "ok";
  }

  async snapshot(): Promise<Snapshot> {
    const answers = await this.query({ type: "snapshot" });
    answers.forEach((a, i) => {
      if (a !== null) this.slots[i]!.last = a;
    });
    // TCP listeners, then QUIC ones: the loops' order (event_loop.ts).
    const base = this.all.map((l) =>
      sharedListener(l, { index: l.index, addr: l.addr, label: l.label, protocol: l.protocol }, this.counters),
    );
    const workers: WorkerStatus[] = this.slots.map((s) => ({
      id: s.id,
      thread: s.loop?.thread ?? 0,
      active: this.counters.workerActive(s.id),
      accepted: s.last === null ? 0 : s.last.listeners.reduce((n, l) => n + l.accepted, 0),
      restarts: s.restarts,
    }));
    return {
      startedAt: this.startedAt,
      ...sumLoops(base, this.slots),
      connectionCap: this.options.connectionCap,
      draining: this.draining,
      rules: ruleCounts(this.rules),
      rateTracked: this.rate?.tracked(Date.now()) ?? 0,
      geoipBuildEpoch: this.geoipBuildEpoch,
      workers,
    };
  }

  async fingerprints(limit: number): Promise<FingerprintsView> {
    const { top, windowMs } = this.config.fingerprints;
    if (top === 0) return { capacity: 0, windowMs, loops: 0, entries: [] };
    const reports = (await this.query({ type: "fingerprints" })).filter((r) => r !== null);
    return { capacity: top, windowMs, loops: reports.length, entries: mergeHitters(reports, limit) };
  }

  /** Every loop's recent refusals, newest first (refusal_ring.ts; the dashboard's). */
  async refusals(): Promise<Refusal[]> {
    return mergeRefusals((await this.query({ type: "refusals" })).filter((r) => r !== null));
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
    this.logger.info("shutting down", {
      workers: this.options.loops,
      active: this.counters.total(),
      shutdown_timeout_ms: this.config.proxy.shutdownTimeoutMs,
    });
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

/** The connections the loops that answered a command closed. */
const closedOf = (acks: Ack[]): number => acks.reduce((n, a) => n + (a.ok ? a.closed : 0), 0);
const inThread = (init: LoopInit, logger: Logger, events: LoopEvents): Loop => new InThreadLoop(init, logger, events);
const inWorker = (init: LoopInit, logger: Logger, events: LoopEvents): Loop => new WorkerLoop(init, logger, events);
