// One event loop of the data path: binds every listener, wires accept →
// firewall → hello → route → relay, and drains on shutdown(). It owns
// nothing per process: counts, backend state, the rate-limit table and the
// GeoIP bytes are shared memory the control plane (control_plane.ts) made,
// and changes arrive as messages (loop_protocol.ts), whether this loop runs
// in the main thread (workers = 1) or in a worker thread.

import type { SocketHandler } from "bun";
import type { RoutedConfig as Config } from "../routing/route_config";
import { normaliseIp } from "../net/ip";
import { AddressTable } from "../firewall/address_table";
import { Firewall, type FirewallRules } from "../firewall/firewall";
import type { Logger } from "../log/logger";
import { HeavyHitters, emptyReport } from "../metrics/heavy_hitters";
import { RefusalRing } from "./refusal_ring";
import { DeadlineWheel } from "../relay/deadline_wheel";
import { BackendTable, type SlotRef } from "../routing/backend_table";
import { type BoundRoute, routeName } from "../routing/route";
import { RouteTable } from "../routing/route_table";
import { acceptVerdict } from "./admission";
import { type Dialer, newDialer } from "./backend_dial";
import { type BackendConnector, bunConnector } from "./backend_socket";
import { Connection, type ServerContext } from "./connection";
import { ConnectionSweep, type Sweepable } from "./connection_sweep";
import { type ListenerKind, QuicKind, TcpKind } from "./listener_kind";
import { ListenerRuntime, identityOf } from "./listener_runtime";
import type { Expiring } from "./quic_flow";
import type { LoopCommand, LoopInit, LoopQuery, LoopReply, QueryType } from "./loop_protocol";
import { SharedCounters } from "./shared_counters";
import { type Snapshot, loopSnapshot } from "./snapshot";
import { ListenerStats } from "./stats";

/** Resolution of deadlines: hello, connect and idle timeouts fire within one tick. */
const WHEEL_TICK_MS = 100;

/** In a takeover, how long a QUIC listener waits for the old process to let go of its UDP address. */
const TAKEOVER_UDP_WAIT_MS = 60_000;

/** After the drain's deadline, how long clients get to close the connections it ended with a FIN. */
const LINGER_MS = 1000;

export class EventLoop {
  readonly firewall: Firewall;
  /**
   * Every listener by index, TCP then QUIC, in every loop (the first alone
   * binds the QUIC ones: start()), so that each loop's snapshot has the same
   * listeners: their slots in the shared counters, their stats and labels.
   * A QUIC listener without routes of its own is over the route table of
   * the TCP listener whose routes it uses.
   */
  readonly listeners: ListenerRuntime[];
  readonly startedAt = Date.now();
  readonly counters: SharedCounters;
  readonly backends: BackendTable;
  readonly workerId: number;
  private readonly config: Config;
  /** What this loop binds and drains: every TCP listener, and in the first loop every QUIC one. */
  private readonly kinds: ListenerKind[];
  /** The QUIC listeners this loop binds (the first loop only): their flows are reached like connections. */
  private readonly quic: QuicKind[];
  /** One resolver cache and one set of destination guards per loop, for its TCP connections and QUIC flows. */
  private readonly dialer: Dialer;
  private readonly bound: ListenerKind[] = [];
  private readonly ctx: ServerContext;
  /** drain_timeout and max_connection_lifetime (connection_sweep.ts). */
  private readonly sweep: ConnectionSweep;
  /** Process-wide connection cap from the fd limit (0 = none); checked with each listener's own. */
  readonly connectionCap: number;
  private draining = false;
  private readonly takeover: boolean;
  /** Past the drain's deadline: closed connections' clients get LINGER_MS to close theirs. */
  private lingering = false;
  private isStopped = false;
  private forceTimer: ReturnType<typeof setTimeout> | null = null;
  private resolveDone!: (code: number) => void;
  /** Resolves (with exit code 0) when this loop has stopped (drained or force-closed). */
  readonly done = new Promise<number>((r) => (this.resolveDone = r));

  /** Throws if the GeoIP bytes do not parse: the control plane checked them already. */
  constructor(
    init: LoopInit,
    private readonly logger: Logger,
    /** How its connections reach their backends: Bun's sockets, or a unit test's fake. */
    connect?: BackendConnector,
  ) {
    const config = init.config;
    const dialer = (this.dialer = newDialer(config));
    this.config = config;
    this.workerId = init.id;
    this.connectionCap = init.connectionCap;
    this.takeover = init.takeover;
    this.firewall = new Firewall({
      rules: {
        blockedIps: config.firewall.blockedIps,
        blockedCidrs: config.firewall.blockedCidrs,
        blockedCountries: config.firewall.blockedCountries,
        blockedJa4: config.firewall.blockedJa4,
      },
      geoipDb: config.firewall.geoipDb,
      geoipData: init.geoipData ?? undefined,
      rateLimit: config.firewall.rateLimit,
      rateWindowMs: config.firewall.rateWindowMs,
      rateLimitIpv6Prefix: config.firewall.rateLimitIpv6Prefix,
      rateBuffer: init.rateBuffer ?? undefined,
      workerId: init.id,
    });
    const configured = [...config.listeners, ...config.quicListeners];
    this.counters = new SharedCounters(configured.length, init.workers, init.counters);
    this.backends = new BackendTable(init.backendSlots, init.workers, init.backends);
    this.listeners = [];
    for (const l of configured) {
      const id = identityOf(l);
      const from = l.protocol === "quic" ? l.routesFrom : null;
      const t = init.tables[l.index]!;
      const table =
        from !== null
          ? this.listeners[from]!.table
          : new RouteTable(t.routes, t.defaultRoute, config.proxy.pool, this.backends);
      const trusted = l.protocol === "tcp" && l.proxyProtocol ? new AddressTable(l.trustedProxies) : null;
      this.listeners.push(
        new ListenerRuntime({ ...id, table }, this.counters, trusted, new ListenerStats(id.label), this.connectionCap),
      );
    }
    // Route label children exist from the start (a scrape shows every configured route at 0).
    for (const rt of this.listeners) for (const r of rt.table.routes()) rt.stats.route(routeName(r));
    // Connections' deadlines and QUIC flows' alike (quic_listener.ts).
    const wheel = new DeadlineWheel<Expiring>(WHEEL_TICK_MS, (c) => c.expire());
    this.ctx = {
      proxy: config.proxy,
      firewall: this.firewall,
      wheel,
      logger,
      histograms: init.histograms,
      counters: this.counters,
      workerId: this.workerId,
      generation: init.generation,
      connections: new Set(),
      connect: connect ?? bunConnector(logger, dialer),
      backends: this.backends,
      // Computed only when something reads it: the access log's records, the top table (ja4 rules ask on their own).
      ja4: logger.enabled("info") || config.fingerprints.top > 0,
      fingerprints:
        config.fingerprints.top > 0 ? new HeavyHitters(config.fingerprints.top, config.fingerprints.windowMs) : null,
      refusals: new RefusalRing(),
      onConnectionClosed: () => {
        if (this.draining && !this.lingering && this.ctx.connections.size === 0) this.stopped();
      },
    };
    this.sweep = new ConnectionSweep(
      () => this.sweepables(),
      this.backends,
      {
        drainTimeoutMs: config.proxy.drainTimeoutMs,
        listenerLifetimeMs: configured.map((l) => (l.protocol === "tcp" ? l.maxConnectionLifetimeMs : 0)),
      },
      logger,
    );
    // QUIC listeners live in the first event loop only: Bun's UDP sockets have no SO_REUSEPORT, and one
    // loop keeps every flow's datagrams together (a client that changes address still reaches its flow).
    const quic = this.workerId === 0 ? config.quicListeners : [];
    this.quic = quic.map((q) => new QuicKind(q, this.listeners[q.index]!, this.ctx, dialer));
    this.kinds = [
      ...config.listeners.map(
        (l) => new TcpKind(l, this.listeners[l.index]!, this.clientHandlers(this.listeners[l.index]!)),
      ),
      ...this.quic,
    ];
  }

  /** Apply a command of the control plane (loop_protocol.ts), the one place each is handled: the connections closed. */
  apply(c: LoopCommand): number {
    switch (c.type) {
      case "routes":
        this.setRoutes(c.listener, c.routes);
        return 0;
      case "reset-backend":
        return this.resetBackend({ slot: c.slot, gen: c.gen });
      case "rules":
        this.firewall.replaceRules(c.rules);
        return c.passed === null ? 0 : this.closeBlocked(c.passed);
      case "geoip":
        this.firewall.useGeoIp(c.data);
        return 0;
    }
  }

  /** Answer a query of the control plane (loop_protocol.ts), the one place each is handled. */
  answer<K extends QueryType>(q: LoopQuery<K>): LoopReply<K> {
    return this.answers[q.type]();
  }

  private readonly answers: { [K in QueryType]: () => LoopReply<K> } = {
    snapshot: () => this.localSnapshot(),
    fingerprints: () => this.ctx.fingerprints?.report(Date.now()) ?? emptyReport(),
    refusals: () => this.ctx.refusals.list(),
  };

  /**
   * Swap a listener's route table (routes already bound to backend slots); connections already routed stay, those on
   * a backend that left their route until drain_timeout.
   */
  setRoutes(index: number, routes: readonly BoundRoute[]): void {
    const rt = this.listeners[index]!;
    rt.table = new RouteTable(routes, rt.table.defaultRoute?.route ?? null, this.config.proxy.pool, this.backends);
    for (const r of routes) rt.stats.route(routeName(r));
    // The QUIC listeners that use this one's routes.
    for (const q of this.config.quicListeners) {
      if (q.routesFrom !== index) continue;
      const qrt = this.listeners[q.index]!;
      qrt.table = rt.table;
      for (const r of routes) qrt.stats.route(routeName(r));
    }
    // Connections on a backend that left its route end after drain_timeout (docs/POOLS.md "Drains end").
    this.sweep.routesChanged(this.deadlinesConfigured());
  }

  /** Whether a route of this loop sets drain_timeout or max_connection_lifetime (the sweep is armed only then). */
  private deadlinesConfigured(): boolean {
    return this.listeners.some((l) =>
      l.table.routes().some((r) => (r.drainTimeoutMs ?? 0) > 0 || (r.maxConnectionLifetimeMs ?? 0) > 0),
    );
  }

  /** DISABLED with reset: reset this loop's connections on a backend. */
  resetBackend(ref: SlotRef): number {
    let n = 0;
    for (const c of [...this.ctx.connections]) {
      const b = c.backendSlot;
      if (b === null || b.slot !== ref.slot || b.gen !== ref.gen) continue;
      c.forceClose("backend_disabled");
      n++;
    }
    for (const q of this.quic) n += q.resetBackend(ref);
    return n;
  }

  /**
   * A rule added at runtime reaches established sessions: RST to each this
   * loop holds that the rules now in force block and `passed` did not (docs/SECURITY.md).
   */
  closeBlocked(passed: FirewallRules): number {
    const blocked = this.firewall.newlyBlocked(passed);
    let n = 0;
    for (const c of [...this.ctx.connections]) {
      const v = blocked(c.judgedIp, c.ja4);
      if (v === null) continue;
      c.block(v);
      n++;
    }
    for (const q of this.quic) n += q.block(blocked);
    return n;
  }

  /** What the drain / lifetime sweep walks: the connections, then the QUIC listeners' routed flows. */
  private *sweepables(): Iterable<Sweepable> {
    yield* this.ctx.connections;
    for (const q of this.quic) yield* q.routedFlows();
  }

  /** This loop's counters, with the bytes live connections have moved so far. */
  localSnapshot(): Snapshot {
    const fw = this.firewall;
    return loopSnapshot(this.listeners, this.ctx.connections, {
      startedAt: this.startedAt,
      connectionCap: this.connectionCap,
      draining: this.draining,
      rules: fw.ruleCounts(),
      rateTracked: fw.rateTracked,
      geoipBuildEpoch: fw.geoipBuildEpoch,
      dns: this.dialer.dns.counts(),
      worker: { id: this.workerId, active: this.counters.workerActive(this.workerId) },
    });
  }

  /**
   * Bind every listener; on any failure, unbind the rest and throw. In a
   * takeover a listener whose address the old process holds until the
   * handover (QUIC) is bound after it, in the background.
   */
  async start(): Promise<void> {
    try {
      for (const k of this.kinds) {
        if (this.takeover && k.waitsForHandover) continue;
        await k.bind(0);
        this.bound.push(k);
      }
    } catch (e) {
      for (const k of this.bound) k.close();
      throw e;
    }
    this.ctx.wheel.start();
    this.sweep.routesChanged(this.deadlinesConfigured());
    for (const k of this.bound) this.logListening(k);
    if (!this.takeover) return;
    for (const k of this.kinds) {
      if (!k.waitsForHandover) continue;
      void k
        .bind(TAKEOVER_UDP_WAIT_MS)
        .then(() => {
          this.bound.push(k);
          if (this.draining) k.drain();
          else this.logListening(k);
        })
        .catch((e: Error) =>
          this.logger.error("quic listener could not bind after the takeover", { error: e.message }),
        );
    }
  }

  private logListening(k: ListenerKind): void {
    const rt = k.runtime;
    if (!this.bound.includes(k) || rt.protocol !== "quic") return;
    const from = this.config.quicListeners.find((q) => q.index === rt.index)?.routesFrom ?? null;
    this.logger.info("listening", {
      listener: rt.label,
      addr: rt.addr,
      protocol: "quic",
      routes_of: from === null ? rt.name : this.listeners[from]!.name,
    });
  }

  /** The socket handlers of listener `rt`'s accepted connections (Bun.listen's, or a unit test's fake sockets'). */
  clientHandlers(rt: ListenerRuntime): SocketHandler<Connection> {
    const ctx = this.ctx;
    const w = this.workerId;
    return {
      open: (socket) => {
        const raw = socket.remoteAddress as string | undefined;
        if (raw === undefined || raw === "") {
          // The client reset between accept and now: its address is gone with it.
          const gone = new Connection(socket, rt, ctx, "");
          socket.data = gone;
          return gone.refuse("client_closed", "client");
        }
        const ip = normaliseIp(raw);
        const conn = new Connection(socket, rt, ctx, ip);
        socket.data = conn;
        // docs/SPEC.md §3: capacity first, then the firewall, before any byte is read.
        // The listener's max_connections and the process cap (host_limits.ts)
        // are counted across every event loop (shared_counters.ts); routed QUIC
        // flows take places of the same cap (quic_listener.ts).
        if (this.draining || !rt.takePlace(w)) return conn.refuse("over_capacity");
        conn.holdsSlot = true;
        // The firewall, or behind a balancer (PROXY protocol) trusted_proxies (admission.ts).
        const verdict = acceptVerdict(ctx, rt, ip);
        if (verdict !== null) return conn.refuse(verdict);
        conn.admit();
      },
      // Plain Uint8Array chunks: no Buffer prototype per chunk.
      binaryType: "uint8array",
      data: (socket, chunk) => socket.data.onClientData(chunk),
      drain: (socket) => socket.data.relay.clientDrain(),
      end: (socket) => socket.data.onClientEnd(),
      close: (socket, err) => socket.data?.onClientClose(err),
      // Bun calls this when one of the handlers above threw: a bug. Say so, and
      // close the connection so it cannot leak.
      error: (socket, err) => {
        this.logger.error("client socket handler failed", { error: err.message, stack: err.stack });
        socket.data?.forceClose("internal_error");
      },
    };
  }

  /** SIGINT/SIGTERM: stop accepting, let connections finish, force-close at shutdown_timeout. */
  shutdown(): void {
    if (this.draining) return;
    this.draining = true;
    for (const k of this.bound) k.drain();
    const n = this.ctx.connections.size;
    this.logger.info("shutting down", {
      active: n,
      shutdown_timeout_ms: this.config.proxy.shutdownTimeoutMs,
      worker: this.workerId,
    });
    if (n === 0) return this.stopped();
    this.forceTimer = setTimeout(() => {
      this.logger.warn("shutdown timeout reached; closing remaining connections", {
        active: this.ctx.connections.size,
        worker: this.workerId,
      });
      // Idle ones get a FIN (Relay.closeBoth): give their clients LINGER_MS to close first, so a byte already on its
      // way is not answered with RST.
      this.lingering = true;
      for (const c of [...this.ctx.connections]) c.forceClose();
      this.forceTimer = setTimeout(() => this.stopped(), LINGER_MS);
    }, this.config.proxy.shutdownTimeoutMs);
  }

  /** Runs once: force-closing the last connections also reaches here through onConnectionClosed. */
  private stopped(): void {
    if (this.isStopped) return;
    this.isStopped = true;
    if (this.forceTimer !== null) clearTimeout(this.forceTimer);
    this.forceTimer = null;
    this.ctx.wheel.stop();
    this.sweep.stop();
    this.logger.flush();
    this.resolveDone(0);
  }
}
