// The running proxy: binds every listener, wires accept → firewall → hello →
// route → relay, and owns the lifecycle (drain on SIGINT/SIGTERM, GeoIP
// reload on SIGHUP).

import type { Socket, SocketHandler, TCPSocketListener } from "bun";
import type { Config } from "../config/config";
import { normaliseIp } from "../firewall/address";
import { AddressTable } from "../firewall/address_table";
import { Firewall } from "../firewall/firewall";
import type { Logger } from "../log/logger";
import { DeadlineWheel } from "../relay/deadline_wheel";
import type { PeerSocket } from "../relay/relay";
import { type Route, RouteTable } from "../routing/route_table";
import { Connection } from "./connection";
import type { ListenerRuntime, ServerContext } from "./context";
import { capacityWarning, connectionCap, readFdLimits } from "./fd_limit";
import { ListenerStats, OUTCOMES } from "./stats";

export interface ServerStatus {
  startedAt: number;
  /** Connections closed since start (one access record each). */
  closed: number;
  active: number;
  outcomes: Record<string, number>;
  listeners: { addr: string; routes: number; active: number; maxConnections: number; proxyProtocol: boolean; trustedProxies: readonly string[] }[];
  connectionCap: number;
}

/** Resolution of deadlines: hello, connect and idle timeouts fire within one tick. */
const WHEEL_TICK_MS = 100;

export class Server {
  readonly firewall: Firewall;
  readonly listeners: ListenerRuntime[];
  readonly startedAt = Date.now();
  private readonly bound: TCPSocketListener<unknown>[] = [];
  private readonly ctx: ServerContext;
  /** Process-wide connection cap from the fd limit (0 = none); checked with each listener's own. */
  readonly connectionCap: number;
  private draining = false;
  private isStopped = false;
  private forceTimer: ReturnType<typeof setTimeout> | null = null;
  private resolveDone!: () => void;
  /** Resolves when the server has stopped (drained or force-closed). */
  readonly done = new Promise<void>((r) => (this.resolveDone = r));

  constructor(
    private readonly config: Config,
    private readonly logger: Logger,
    options: { histograms?: boolean } = {},
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
      rateLimit: config.firewall.rateLimit,
      rateWindowMs: config.firewall.rateWindowMs,
      rateLimitIpv6Prefix: config.firewall.rateLimitIpv6Prefix,
    });
    this.listeners = config.listeners.map((l) => ({
      addr: l.addr,
      table: new RouteTable(l.routes, l.defaultBackend === null ? null : { hostname: "", backend: l.defaultBackend, sendProxyProtocol: l.defaultBackendSendProxyProtocol }),
      maxConnections: l.maxConnections,
      active: 0,
      proxyProtocol: l.proxyProtocol,
      trusted: l.proxyProtocol ? new AddressTable(l.trustedProxies) : null,
      trustedProxies: l.trustedProxies,
      stats: new ListenerStats(l.addr),
    }));
    // Route label children exist from the start (a scrape shows every configured route at 0).
    for (const rt of this.listeners) for (const r of rt.table.routes()) rt.stats.route(r.hostname);
    const limits = readFdLimits();
    this.connectionCap = connectionCap(limits);
    const show = (n: number | undefined) => (n === undefined ? null : Number.isFinite(n) ? n : "unlimited");
    logger.info("file descriptor limit", { soft: show(limits?.soft), hard: show(limits?.hard), connection_cap: this.connectionCap });
    const warning = capacityWarning(
      config.listeners.map((l) => l.maxConnections),
      limits,
    );
    if (warning !== null) logger.warn(warning);
    const wheel = new DeadlineWheel<Connection>(WHEEL_TICK_MS, (c) => c.expire());
    this.ctx = {
      proxy: config.proxy,
      firewall: this.firewall,
      wheel,
      logger,
      histograms: options.histograms ?? false,
      connections: new Set(),
      backendHandlers: backendHandlers(logger),
      onConnectionClosed: () => {
        if (this.draining && this.ctx.connections.size === 0) this.stopped();
      },
    };
  }

  get activeConnections(): number {
    return this.ctx.connections.size;
  }

  /** The connections open now (the metrics add their bytes so far at scrape time). */
  get liveConnections(): ReadonlySet<Connection> {
    return this.ctx.connections;
  }

  /** True from the first SIGINT/SIGTERM on (/readyz answers 503). */
  get isDraining(): boolean {
    return this.draining;
  }

  /** Connections closed since start, over all listeners. */
  get closedTotal(): number {
    return this.listeners.reduce((n, l) => n + l.stats.closedTotal, 0);
  }

  listener(addr: string): ListenerRuntime | undefined {
    return this.listeners.find((l) => l.addr === addr);
  }

  /** Swap a listener's route table; connections already routed are not touched. */
  setRoutes(rt: ListenerRuntime, routes: readonly Route[]): void {
    rt.table = new RouteTable(routes, rt.table.defaultRoute);
    for (const r of routes) rt.stats.route(r.hostname);
  }

  /** Counters for the admin API's GetStatus. */
  status(): ServerStatus {
    const outcomes: Record<string, number> = {};
    OUTCOMES.forEach((o, i) => {
      let n = 0;
      for (const l of this.listeners) n += l.stats.closed[i]!;
      if (n > 0) outcomes[o] = n;
    });
    return {
      startedAt: this.startedAt,
      closed: this.closedTotal,
      active: this.ctx.connections.size,
      outcomes,
      listeners: this.listeners.map((l) => ({
        addr: l.addr,
        routes: l.table.size,
        active: l.active,
        maxConnections: l.maxConnections,
        proxyProtocol: l.proxyProtocol,
        trustedProxies: l.trustedProxies,
      })),
      connectionCap: this.connectionCap,
    };
  }

  /** Bind every listener; on any failure, unbind the rest and throw. */
  start(): void {
    try {
      this.config.listeners.forEach((lc, i) => {
        const rt = this.listeners[i]!;
        const host = lc.bind.host === "" ? "::" : lc.bind.host;
        try {
          this.bound.push(
            Bun.listen<Connection>({
              hostname: host,
              port: lc.bind.port,
              allowHalfOpen: true,
              socket: this.clientHandlers(rt),
            }) as TCPSocketListener<unknown>,
          );
        } catch (e) {
          throw new Error(`listeners[${i}].addr "${lc.addr}": cannot listen: ${(e as Error).message}`);
        }
      });
    } catch (e) {
      for (const l of this.bound) l.stop(true);
      throw e;
    }
    this.ctx.wheel.start();
    for (const rt of this.listeners) {
      this.logger.info("listening", { listener: rt.addr, routes: rt.table.size, max_connections: rt.maxConnections });
    }
  }

  private clientHandlers(rt: ListenerRuntime): SocketHandler<Connection> {
    const ctx = this.ctx;
    const firewall = this.firewall;
    const cap = this.connectionCap;
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
        // The process cap keeps descriptors from running out (fd_limit.ts).
        if (this.draining || (rt.maxConnections > 0 && rt.active >= rt.maxConnections) || (cap > 0 && ctx.connections.size >= cap)) {
          return conn.refuse("over_capacity");
        }
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
    this.logger.info("shutting down", { active: n, shutdown_timeout_ms: this.config.proxy.shutdownTimeoutMs });
    if (n === 0) return this.stopped();
    this.forceTimer = setTimeout(() => {
      this.logger.warn("shutdown timeout reached; closing remaining connections", { active: this.ctx.connections.size });
      for (const c of [...this.ctx.connections]) c.forceClose();
      this.stopped();
    }, this.config.proxy.shutdownTimeoutMs);
  }

  /** Runs once: force-closing the last connections also reaches here through onConnectionClosed. */
  private stopped(): void {
    if (this.isStopped) return;
    this.isStopped = true;
    if (this.forceTimer !== null) clearTimeout(this.forceTimer);
    this.forceTimer = null;
    this.ctx.wheel.stop();
    this.logger.info("stopped", { connections_total: this.closedTotal });
    this.logger.flush();
    this.resolveDone();
  }

  /** SIGHUP: re-open the GeoIP database; keep the old one if that fails. Null when none is configured. */
  reloadGeoIp(): "ok" | "error" | null {
    const r = this.firewall.reloadGeoIp();
    if (r === null) {
      this.logger.info("SIGHUP: no GeoIP database configured; nothing to reload");
      return null;
    }
    if (r.ok) this.logger.info("GeoIP database reloaded", { path: r.path });
    else this.logger.error("GeoIP reload failed; keeping the previous database", { error: r.error });
    return r.ok ? "ok" : "error";
  }
}

function backendHandlers(logger: Logger): SocketHandler<Connection> {
  return {
    binaryType: "uint8array",
    open: (socket) => socket.data.onBackendOpen(socket as unknown as PeerSocket),
    data: (socket, chunk) => {
      const c = socket.data;
      if (!c.finished) c.backendData(chunk);
    },
    drain: (socket) => {
      const c = socket.data;
      if (!c.finished) c.backendDrain();
    },
    end: (socket) => {
      const c = socket.data;
      if (!c.finished && c.backend === (socket as unknown)) c.backendEnd();
    },
    close: (socket, err) => {
      const c = socket.data;
      if (c.backend === (socket as unknown as PeerSocket)) c.socketClosed("backend", err);
    },
    connectError: (socket: Socket<Connection>) => socket.data.onBackendConnectError(),
    error: (socket, err) => {
      logger.error("backend socket handler failed", { error: err.message, stack: err.stack });
      socket.data?.forceClose("internal_error");
    },
  };
}
