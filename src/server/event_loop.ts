// One event loop of the data path: binds every listener, wires accept →
// firewall → hello → route → relay, and drains on shutdown(). It owns
// nothing per process: counts, backend state, the rate-limit table and the
// GeoIP bytes are shared memory the control plane (control_plane.ts) made,
// and changes arrive as messages (loop_protocol.ts), whether this loop runs
// in the main thread (workers = 1) or in a worker thread.

import type { SocketHandler, TCPSocketListener } from "bun";
import type { RoutedConfig as Config } from "../routing/route_config";
import { normaliseIp } from "../net/ip";
import { AddressTable } from "../firewall/address_table";
import { Firewall } from "../firewall/firewall";
import type { Logger } from "../log/logger";
import { HeavyHitters, emptyReport } from "../metrics/heavy_hitters";
import { DeadlineWheel } from "../relay/deadline_wheel";
import { BackendTable, type SlotRef } from "../routing/backend_table";
import { type BoundRoute, routeName } from "../routing/pool";
import { RouteTable } from "../routing/route_table";
import { backendHandlers } from "./backend_socket";
import { Connection, type ServerContext } from "./connection";
import { ListenerRuntime, quicLabel } from "./listener_runtime";
import { QuicListener } from "./quic_listener";
import type { LoopChange, LoopInit, LoopReply } from "./loop_protocol";
import { SharedCounters } from "./shared_counters";
import { type Snapshot, listenerSnapshot } from "./snapshot";
import { ListenerStats, type RouteStats } from "./stats";
import { bindHost } from "../net/host_port";

/** Resolution of deadlines: hello, connect and idle timeouts fire within one tick. */
const WHEEL_TICK_MS = 100;

/** In a takeover, how long a QUIC listener waits for the old process to let go of its UDP address. */
const TAKEOVER_UDP_WAIT_MS = 60_000;

/** After the drain's deadline, how long clients get to close the connections it ended with a FIN. */
const LINGER_MS = 1000;

export class EventLoop {
  readonly firewall: Firewall;
  readonly listeners: ListenerRuntime[];
  /**
   * One per QUIC listener, in every loop (the first binds them: start()), so
   * that each loop's snapshot has the same listeners: their own slots in the
   * shared counters (after the TCP listeners'), their own stats and label,
   * over the route table of the TCP listener whose routes they use.
   */
  readonly quicListeners: ListenerRuntime[];
  readonly startedAt = Date.now();
  readonly counters: SharedCounters;
  readonly backends: BackendTable;
  readonly workerId: number;
  private readonly config: Config;
  private readonly bound: TCPSocketListener<unknown>[] = [];
  private readonly ctx: ServerContext;
  /** Process-wide connection cap from the fd limit (0 = none); checked with each listener's own. */
  readonly connectionCap: number;
  private draining = false;
  private readonly takeover: boolean;
  private readonly quic: QuicListener[] = [];
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
  ) {
    const config = init.config;
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
    this.counters = new SharedCounters(config.listeners.length + config.quicListeners.length, init.workers, init.counters);
    this.backends = new BackendTable(init.backendSlots, init.workers, init.backends);
    this.listeners = config.listeners.map(
      (l, i) =>
        new ListenerRuntime(
          { ...l, index: i, table: new RouteTable(init.tables[i]!.routes, init.tables[i]!.defaultRoute, config.proxy.pool, this.backends) },
          this.counters,
          l.proxyProtocol ? new AddressTable(l.trustedProxies) : null,
          new ListenerStats(l.addr),
          this.connectionCap,
        ),
    );
    this.quicListeners = config.quicListeners.map((q, j) => {
      const label = quicLabel(q.addr);
      const base = { index: config.listeners.length + j, addr: label, name: q.name, table: this.listeners[q.routesOf]!.table, proxyProtocol: false, trustedProxies: [], protocol: "quic" as const };
      return new ListenerRuntime(base, this.counters, null, new ListenerStats(label), this.connectionCap);
    });
    // Route label children exist from the start (a scrape shows every configured route at 0).
    for (const rt of this.allListeners()) for (const r of rt.table.routes()) rt.stats.route(routeName(r));
    const wheel = new DeadlineWheel<Connection>(WHEEL_TICK_MS, (c) => c.expire());
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
      backendHandlers: backendHandlers(logger),
      backends: this.backends,
      // Computed only when something reads it: the access log's records, the top table (ja4 rules ask on their own).
      ja4: logger.enabled("info") || config.fingerprints.top > 0,
      fingerprints: config.fingerprints.top > 0 ? new HeavyHitters(config.fingerprints.top, config.fingerprints.windowMs) : null,
      onConnectionClosed: () => {
        if (this.draining && !this.lingering && this.ctx.connections.size === 0) this.stopped();
      },
    };
  }

  /** Apply one change from the control plane (loop_protocol.ts): the one place each message is handled. */
  apply(m: LoopChange): LoopReply {
    switch (m.type) {
      case "routes":
        this.setRoutes(m.listener, m.routes);
        return {};
      case "reset-backend":
        return { count: this.resetBackend({ slot: m.slot, gen: m.gen }) };
      case "rules":
        this.firewall.replaceRules(m.rules);
        return {};
      case "geoip":
        this.firewall.useGeoIp(m.data);
        return {};
      case "snapshot":
        return { snapshot: this.localSnapshot() };
      case "fingerprints":
        return { fingerprints: this.ctx.fingerprints?.report(Date.now()) ?? emptyReport() };
    }
  }

  /** Swap a listener's route table (routes already bound to backend slots); connections already routed are not touched. */
  setRoutes(index: number, routes: readonly BoundRoute[]): void {
    const rt = this.listeners[index]!;
    rt.table = new RouteTable(routes, rt.table.defaultRoute?.route ?? null, this.config.proxy.pool, this.backends);
    for (const r of routes) rt.stats.route(routeName(r));
    for (const [j, q] of this.config.quicListeners.entries()) {
      if (q.routesOf !== index) continue;
      const qrt = this.quicListeners[j]!;
      qrt.table = rt.table;
      for (const r of routes) qrt.stats.route(routeName(r));
    }
  }

  /** TCP listeners, then QUIC ones: the order of every snapshot's listeners and of the shared counters' slots. */
  private allListeners(): ListenerRuntime[] {
    return [...this.listeners, ...this.quicListeners];
  }

  /** DISABLED with reset: reset this loop's connections on a backend. */
  resetBackend(ref: SlotRef): number {
    let n = 0;
    for (const c of [...this.ctx.connections]) {
      const b = c.backendSlot;
      if (b !== null && b.slot === ref.slot && b.gen === ref.gen) {
        c.forceClose("backend_disabled");
        n++;
      }
    }
    return n;
  }

  /** This loop's counters, with the bytes live connections have moved so far. */
  localSnapshot(): Snapshot {
    const live = new Map<RouteStats, [number, number]>();
    for (const c of this.ctx.connections) {
      const rs = c.liveRouteStats;
      if (rs === null) continue;
      const v = live.get(rs) ?? [0, 0];
      v[0] += c.bytesFromClient;
      v[1] += c.bytesFromBackend;
      live.set(rs, v);
    }
    const all = this.allListeners();
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
    return {
      startedAt: this.startedAt,
      listeners,
      connectionCap: this.connectionCap,
      draining: this.draining,
      rules: this.firewall.ruleCounts(),
      rateTracked: this.firewall.rateTracked,
      geoipBuildEpoch: this.firewall.geoipBuildEpoch,
      workers: [{ id: this.workerId, thread: 0, active: this.counters.workerActive(this.workerId), accepted: all.reduce((n, l) => n + l.stats.accepted, 0), restarts: 0 }],
    };
  }

  /**
   * Bind every listener; on any failure, unbind the rest and throw. QUIC
   * listeners live in the first event loop only: Bun's UDP sockets have no
   * SO_REUSEPORT, and one loop keeps every flow's datagrams together (a
   * client that changes address still reaches its flow).
   */
  async start(): Promise<void> {
    this.bindTcp();
    if (this.workerId !== 0 || this.config.quicListeners.length === 0) return;
    // A takeover binds UDP after the handover (the old process holds it until then), in the background.
    if (this.takeover) return void this.bindQuic(TAKEOVER_UDP_WAIT_MS).catch((e: Error) => this.logger.error("quic listener could not bind after the takeover", { error: e.message }));
    try {
      await this.bindQuic(0);
    } catch (e) {
      for (const l of this.bound) l.stop(true);
      for (const q of this.quic) q.close();
      this.ctx.wheel.stop();
      throw e;
    }
  }

  private async bindQuic(retryMs: number): Promise<void> {
    for (const [j, q] of this.config.quicListeners.entries()) {
      const l = await QuicListener.start(q, this.quicListeners[j]!, this.ctx, bindHost(q.bind.host), retryMs);
      if (this.draining) {
        l.close();
        return;
      }
      this.quic.push(l);
      this.logger.info("listening", { listener: q.addr, protocol: "quic", routes_of: this.listeners[q.routesOf]!.name });
    }
  }

  private bindTcp(): void {
    try {
      this.config.listeners.forEach((lc, i) => {
        const rt = this.listeners[i]!;
        const host = bindHost(lc.bind.host);
        try {
          // SO_REUSEPORT always: one socket per loop on each address, and a takeover binds beside this process
          // (server_command.ts). It works on Bun.listen (measured); bun-types 1.4.4 declares it on connect options only.
          const opts = { hostname: host, port: lc.bind.port, allowHalfOpen: true, reusePort: true, socket: this.clientHandlers(rt) };
          this.bound.push(Bun.listen<Connection>(opts as import("bun").TCPSocketListenOptions<Connection>) as TCPSocketListener<unknown>);
        } catch (e) {
          throw new Error(`listeners[${i}].addr "${lc.addr}": cannot listen: ${(e as Error).message}`);
        }
      });
    } catch (e) {
      for (const l of this.bound) l.stop(true);
      throw e;
    }
    this.ctx.wheel.start();
  }

  private clientHandlers(rt: ListenerRuntime): SocketHandler<Connection> {
    const ctx = this.ctx;
    const firewall = this.firewall;
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
        // Behind a balancer (PROXY protocol), the socket's peer is the balancer:
        // it must be trusted, and the firewall judges the client its header
        // names, once the header is read (connection.ts).
        if (rt.trusted !== null) {
          if (!rt.trusted.has(ip)) return conn.refuse("untrusted_proxy");
          return conn.admit();
        }
        const verdict = firewall.check(ip, ctx.wheel.now);
        if (verdict !== null) return conn.refuse(verdict);
        conn.admit();
      },
      // Plain Uint8Array chunks: no Buffer prototype per chunk.
      binaryType: "uint8array",
      data: (socket, chunk) => socket.data.onClientData(chunk),
      drain: (socket) => socket.data.clientDrain(),
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
    for (const l of this.bound) l.stop(false);
    for (const q of this.quic) q.close();
    const n = this.ctx.connections.size;
    this.logger.info("shutting down", { active: n, shutdown_timeout_ms: this.config.proxy.shutdownTimeoutMs, worker: this.workerId });
    if (n === 0) return this.stopped();
    this.forceTimer = setTimeout(() => {
      this.logger.warn("shutdown timeout reached; closing remaining connections", { active: this.ctx.connections.size, worker: this.workerId });
      // Idle ones get a FIN (Relay.closeBoth): give their clients LINGER_MS to close first, so a byte already on its way is not answered with RST.
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
    this.logger.flush();
    this.resolveDone(0);
  }
}
