// One event loop of the proxy: binds every listener, wires accept → firewall
// → hello → route → relay, and drains on shutdown(). With workers = 1 it runs
// in the main thread and is the whole data plane; with more, each worker
// thread runs one (worker_main.ts) and WorkerPool supervises them, the
// limits shared through SharedCounters and the rate limiter's shared table.

import type { Socket, SocketHandler, TCPSocketListener } from "bun";
import type { Config } from "../config/config";
import { normaliseIp } from "../firewall/address";
import { AddressTable } from "../firewall/address_table";
import { Firewall, type FirewallRules } from "../firewall/firewall";
import type { Logger } from "../log/logger";
import { DeadlineWheel } from "../relay/deadline_wheel";
import type { PeerSocket } from "../relay/relay";
import { BackendTable, type SlotRef } from "../routing/backend_table";
import { HealthChecker } from "../routing/health_checker";
import { type BoundRoute, type Route, bindRoutes, defaultRouteOf } from "../routing/pool";
import { RouteTable } from "../routing/route_table";
import { type BackendAttempt, Connection } from "./connection";
import { ListenerRuntime, type ServerContext } from "./context";
import { type DataPlane, type ListenerView, type Snapshot, listenerSnapshot } from "./data_plane";
import { SharedCounters } from "./shared_counters";
import { ListenerStats, type RouteStats } from "./stats";

/** Resolution of deadlines: hello, connect and idle timeouts fire within one tick. */
const WHEEL_TICK_MS = 100;

export interface ServerOptions {
  /** Observe the latency histograms (metrics on). */
  histograms?: boolean;
  /** This loop's worker id; 0 for the single loop. */
  workerId?: number;
  /** Open-connection counts shared with the other loops; made here (for one loop) when absent. */
  counters?: SharedCounters;
  /** The process's connection cap from its open-file limit (0 = none). */
  connectionCap?: number;
  /** The rate limiter's shared table (workers attach to the supervisor's). */
  rateBuffer?: SharedArrayBuffer;
  /** The GeoIP database already read into shared memory. */
  geoipData?: Uint8Array;
  /** Bind with SO_REUSEPORT (one socket per worker on each address). */
  reusePort?: boolean;
  /**
   * Backend state shared with the other loops, and each listener's routes
   * already bound to its slots (a worker gets both from the pool). Absent:
   * this loop owns the table, binds its routes and runs the health checks.
   */
  shared?: { backends: BackendTable; tables: { routes: BoundRoute[]; defaultRoute: BoundRoute | null }[] };
}

export class Server implements DataPlane {
  readonly firewall: Firewall;
  readonly listeners: ListenerRuntime[];
  readonly startedAt = Date.now();
  readonly counters: SharedCounters;
  readonly backends: BackendTable;
  private readonly checker: HealthChecker | null = null;
  readonly workerId: number;
  private readonly bound: TCPSocketListener<unknown>[] = [];
  private readonly ctx: ServerContext;
  /** Process-wide connection cap from the fd limit (0 = none); checked with each listener's own. */
  readonly connectionCap: number;
  private draining = false;
  private isStopped = false;
  private forceTimer: ReturnType<typeof setTimeout> | null = null;
  private resolveDone!: (code: number) => void;
  /** Resolves (with exit code 0) when this loop has stopped (drained or force-closed). */
  readonly done = new Promise<number>((r) => (this.resolveDone = r));

  constructor(
    private readonly config: Config,
    private readonly logger: Logger,
    private readonly options: ServerOptions = {},
  ) {
    // Throws if the GeoIP database is configured but unreadable: refuse to start
    // rather than run without the country rules.
    this.firewall = new Firewall({
      rules: {
        blockedIps: config.firewall.blockedIps,
        blockedCidrs: config.firewall.blockedCidrs,
        blockedCountries: config.firewall.blockedCountries,
      },
      geoipDb: config.firewall.geoipDb,
      geoipData: options.geoipData,
      rateLimit: config.firewall.rateLimit,
      rateWindowMs: config.firewall.rateWindowMs,
      rateLimitIpv6Prefix: config.firewall.rateLimitIpv6Prefix,
      rateBuffer: options.rateBuffer,
      workerId: options.workerId ?? 0,
    });
    this.workerId = options.workerId ?? 0;
    this.connectionCap = options.connectionCap ?? 0;
    this.counters = options.counters ?? new SharedCounters(config.listeners.length, 1);
    if (options.counters === undefined) config.listeners.forEach((l, i) => this.counters.setMax(i, l.maxConnections));
    this.backends = options.shared?.backends ?? new BackendTable();
    const tables = options.shared?.tables ?? config.listeners.map((l, i) => bindRoutes(this.backends, i, l.routes, defaultRouteOf(l)));
    if (options.shared === undefined) this.checker = new HealthChecker(this.backends, config.proxy.pool, logger);
    this.listeners = config.listeners.map(
      (l, i) =>
        new ListenerRuntime(
          i,
          l.addr,
          l.name,
          new RouteTable(tables[i]!.routes, tables[i]!.defaultRoute, config.proxy.pool, this.backends),
          l.proxyProtocol,
          l.proxyProtocol ? new AddressTable(l.trustedProxies) : null,
          l.trustedProxies,
          new ListenerStats(l.addr),
          this.counters,
        ),
    );
    // Route label children exist from the start (a scrape shows every configured route at 0).
    for (const rt of this.listeners) for (const r of rt.table.routes()) rt.stats.route(r.hostname);
    const wheel = new DeadlineWheel<Connection>(WHEEL_TICK_MS, (c) => c.expire());
    this.ctx = {
      proxy: config.proxy,
      firewall: this.firewall,
      wheel,
      logger,
      histograms: options.histograms ?? false,
      counters: this.counters,
      workerId: this.workerId,
      connections: new Set(),
      backendHandlers: backendHandlers(logger),
      backends: this.backends,
      onConnectionClosed: () => {
        if (this.draining && this.ctx.connections.size === 0) this.stopped();
      },
    };
  }

  /** This loop's open connections. */
  get activeConnections(): number {
    return this.ctx.connections.size;
  }

  /** True from the first SIGINT/SIGTERM on (/readyz answers 503). */
  get isDraining(): boolean {
    return this.draining;
  }

  get geoipConfigured(): boolean {
    return this.firewall.geoipPath !== null;
  }

  listener(nameOrAddr: string): ListenerRuntime | undefined {
    return this.listeners.find((l) => l.name === nameOrAddr) ?? this.listeners.find((l) => l.addr === nameOrAddr);
  }

  /** Swap a listener's route table (routes already bound to backend slots); connections already routed are not touched. */
  setRoutes(index: number, routes: readonly BoundRoute[]): void {
    const rt = this.listeners[index]!;
    rt.table = new RouteTable(routes, rt.table.defaultRoute?.route ?? null, this.config.proxy.pool, this.backends);
    for (const r of routes) rt.stats.route(r.hostname);
    this.checker?.sync(rt.addr, rt.table.pools());
  }

  async applyRoutes(l: ListenerView, routes: readonly Route[]): Promise<void> {
    const rt = l as ListenerRuntime;
    const bound = bindRoutes(this.backends, rt.index, routes, rt.table.defaultRoute?.route ?? null);
    this.setRoutes(rt.index, bound.routes);
  }

  /** DISABLED with reset: reset this loop's connections on a backend (issue 12). */
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

  async applyBackendReset(ref: SlotRef): Promise<number> {
    return this.resetBackend(ref);
  }

  async applyRules(rules: FirewallRules): Promise<void> {
    this.firewall.replaceRules(rules);
  }

  applyMaxConnections(l: ListenerView, n: number): void {
    this.counters.setMax((l as ListenerRuntime).index, n);
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
    const listeners = this.listeners.map((l) => {
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
      workers: [{ id: this.workerId, thread: 0, active: this.ctx.connections.size, accepted: this.listeners.reduce((n, l) => n + l.stats.accepted, 0), restarts: 0 }],
    };
  }

  async snapshot(): Promise<Snapshot> {
    return this.localSnapshot();
  }

  /** Bind every listener; on any failure, unbind the rest and throw. */
  start(): void {
    try {
      this.config.listeners.forEach((lc, i) => {
        const rt = this.listeners[i]!;
        const host = lc.bind.host === "" ? "::" : lc.bind.host;
        try {
          // reusePort works on Bun.listen (measured); bun-types 1.4.4 declares it on connect options only.
          const opts = { hostname: host, port: lc.bind.port, allowHalfOpen: true, reusePort: this.options.reusePort ?? false, socket: this.clientHandlers(rt) };
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
    if (this.checker !== null) for (const rt of this.listeners) this.checker.sync(rt.addr, rt.table.pools());
  }

  private clientHandlers(rt: ListenerRuntime): SocketHandler<Connection> {
    const ctx = this.ctx;
    const firewall = this.firewall;
    const counters = this.counters;
    const cap = this.connectionCap;
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
        // SPEC §3: capacity first, then the firewall, before any byte is read.
        // The listener's max_connections and the process cap (fd_limit.ts)
        // are counted across every event loop (shared_counters.ts).
        if (this.draining || !counters.tryAcquire(rt.index, w, cap)) return conn.refuse("over_capacity");
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
    const n = this.ctx.connections.size;
    this.logger.info("shutting down", { active: n, shutdown_timeout_ms: this.config.proxy.shutdownTimeoutMs, worker: this.workerId });
    if (n === 0) return this.stopped();
    this.forceTimer = setTimeout(() => {
      this.logger.warn("shutdown timeout reached; closing remaining connections", { active: this.ctx.connections.size, worker: this.workerId });
      for (const c of [...this.ctx.connections]) c.forceClose();
      this.stopped();
    }, this.config.proxy.shutdownTimeoutMs);
  }

  /** Runs once: force-closing the last connections also reaches here through onConnectionClosed. */
  private stopped(): void {
    if (this.isStopped) return;
    this.isStopped = true;
    this.checker?.stop();
    if (this.forceTimer !== null) clearTimeout(this.forceTimer);
    this.forceTimer = null;
    this.ctx.wheel.stop();
    this.logger.flush();
    this.resolveDone(0);
  }

  /** SIGHUP: re-open the GeoIP database; keep the old one if that fails. Null when none is configured. */
  async reloadGeoIp(): Promise<"ok" | "error" | null> {
    const r = this.firewall.reloadGeoIp();
    if (r === null) {
      this.logger.info("SIGHUP: no GeoIP database configured; nothing to reload");
      return null;
    }
    if (r.ok) this.logger.info("GeoIP database reloaded", { path: r.path });
    else this.logger.error("GeoIP reload failed; keeping the previous database", { error: r.error });
    return r.ok ? "ok" : "error";
  }

  /** Closed connections over all listeners of this loop. */
  get closedTotal(): number {
    return this.listeners.reduce((n, l) => n + l.stats.closedTotal, 0);
  }
}

function backendHandlers(logger: Logger): SocketHandler<BackendAttempt> {
  return {
    binaryType: "uint8array",
    open: (socket) => socket.data.c.onBackendOpen(socket as unknown as PeerSocket, socket.data.n),
    data: (socket, chunk) => {
      const c = socket.data.c;
      if (!c.finished) c.backendData(chunk);
    },
    drain: (socket) => {
      const c = socket.data.c;
      if (!c.finished) c.backendDrain();
    },
    end: (socket) => {
      const c = socket.data.c;
      if (!c.finished && c.backend === (socket as unknown)) c.backendEnd();
    },
    close: (socket, err) => {
      const c = socket.data.c;
      if (c.backend === (socket as unknown as PeerSocket)) c.socketClosed("backend", err);
    },
    connectError: (socket: Socket<BackendAttempt>) => socket.data.c.onBackendConnectError(socket.data.n),
    error: (socket, err) => {
      logger.error("backend socket handler failed", { error: err.message, stack: err.stack });
      socket.data?.c.forceClose("internal_error");
    },
  };
}
