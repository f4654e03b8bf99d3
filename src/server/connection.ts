// One client connection through its whole life (docs/SPEC.md §3): firewall
// verdict at accept, ClientHello, route, backend tries, replay, relay, access
// record. Sockets call in through the shared handlers (event_loop.ts,
// backend_socket.ts); the deadline wheel calls expire().

import type { Socket } from "bun";
import { normaliseIp } from "../net/ip";
import type { ProxyHeader } from "../proxy_header/proxy_header";
import { ProxyHeaderReader } from "../proxy_header/proxy_header_reader";
import { headerFor } from "../proxy_header/proxy_header_writer";
import type { RoutePool } from "../routing/pool";
import { ja4 } from "../sni/ja4";
import { networkHash } from "../net/ip";
import type { PeerSocket, RelayEnd } from "../relay/relay";
import type { Timed } from "../relay/deadline_wheel";
import { writeAccessRecord } from "./access_record";
import type { LoopContext } from "./loop_context";
import { type BackendAttempt, type BackendOwner, connectBackend } from "./backend_socket";
import type { ListenerRuntime } from "./listener_runtime";
import { connectionId, nextSeq } from "./connection_id";
import { Peeked } from "./peeked";
import { ReplayingRelay } from "./replaying_relay";
import { DEFAULT_ROUTE_LABEL, OUTCOME_INDEX, type Outcome, type RouteStats } from "./stats";

/** What every connection of one event loop shares (loop_context.ts). */
export type ServerContext = LoopContext<Connection, BackendAttempt>;

/** Bytes a client may send beyond its hello while the backend connect is pending. */
const CONNECT_READ_ALLOWANCE = 16384;

const enum Phase {
  /** A proxy_protocol listener: waiting for the PROXY header. */
  ProxyHeader,
  Hello,
  Connecting,
  Relaying,
  Closed,
}

export class Connection extends ReplayingRelay implements Timed, BackendOwner {
  deadline = 0;
  wheelSlot: Set<Timed> | null = null;
  private phase: Phase;
  private headerReader: ProxyHeaderReader | null = null;
  /** The PROXY header received, once read. */
  private received: ProxyHeader | null = null;
  /** The balancer, on a proxy_protocol listener (the socket's peer); "" otherwise. */
  peerIp = "";
  peerPort = 0;
  private route: RoutePool | null = null;
  /** Backends tried on this connection (bit per pool index), how many, and the current one. */
  private tried = 0;
  tries = 0;
  private backendIndex = -1;
  /** Counted in the backend's shared active count (least_connections, drain progress). */
  private holdsBackend = false;
  /** Set at accept once a place in the shared counters is taken; given back when the connection ends. */
  holdsSlot = false;
  /** Counted in its route's connections (max_connections); given back when the connection ends. */
  private holdsRoute = false;
  /** The route's counters (bytes, connect times); resolved once, when routed. */
  private routeStats: RouteStats | null = null;
  /** Every byte read before the relay starts, in order, for the replay. */
  private readonly peeked = new Peeked();
  private clientPaused = false;
  sni: string | null = null;
  alpn: readonly string[] = [];
  /** The hello's JA4 fingerprint; "" when not computed or no complete hello. */
  ja4 = "";
  backendAddr: string | null = null;
  readonly acceptedAt: number;
  /**
   * The client's port, -1 until read: Bun asks the kernel (getpeername) on
   * every read of remotePort (it caches remoteAddress, not the port), and
   * only the access log and an outgoing PROXY header need it.
   */
  clientPort = -1;
  helloAt = 0;
  connectStartAt = 0;
  connectedAt = 0;

  constructor(
    client: Socket<Connection>,
    readonly listener: ListenerRuntime,
    private readonly ctx: ServerContext,
    /** The client: the socket's peer, or on a proxy_protocol listener the source its header names. */
    public clientIp: string,
  ) {
    super(client as unknown as PeerSocket);
    this.acceptedAt = performance.now();
    // The access log needs it even if the socket is gone by the time the
    // record is written; read now while it is open. Undefined when the client
    // reset before we could ask (see server.ts open).
    if (ctx.logger.enabled("info")) this.clientPort = client.remotePort ?? 0;
    this.phase = listener.proxyProtocol ? Phase.ProxyHeader : Phase.Hello;
    listener.stats.accepted++;
  }

  private readonly seq = nextSeq();
  /** The access log's `id`, and the PP2_TYPE_UNIQUE_ID sent to a backend (formatted only when asked). */
  get id(): string {
    return connectionId(this.seq);
  }

  /** Refuse at accept (capacity, draining, firewall): RST before any byte is read. */
  refuse(outcome: Outcome, closedBy: "proxy" | "client" = "proxy"): void {
    this.finished = true;
    this.phase = Phase.Closed;
    this.closedBy = closedBy;
    this.dropSlot();
    this.client.terminate();
    this.record(outcome);
  }

  /** Accepted: wait for the ClientHello within hello_timeout. */
  admit(): void {
    this.ctx.connections.add(this);
    this.deadline = this.ctx.wheel.after(this.ctx.proxy.helloTimeoutMs);
    this.ctx.wheel.schedule(this);
  }

  onClientData(chunk: Uint8Array): void {
    if (this.finished) return;
    if (this.phase === Phase.Relaying) return this.clientData(chunk);
    if (this.phase === Phase.ProxyHeader) {
      const rest = this.onProxyHeaderData(chunk);
      if (rest === null || rest.length === 0) return;
      chunk = rest;
    }
    this.peeked.add(chunk);
    if (this.phase !== Phase.Hello) {
      // Connecting: a TLS client sends little or nothing before the server's
      // reply; hold what comes, and stop reading only if it grows (pausing
      // costs two epoll changes, so it is not done for every connection).
      if (!this.clientPaused && this.peeked.length > this.ctx.proxy.maxHelloBytes + CONNECT_READ_ALLOWANCE) {
        this.clientPaused = true;
        this.client.pause();
      }
      return;
    }
    const r = this.peeked.readHello(chunk, this.ctx.proxy.maxHelloBytes);
    if (r === null) return;
    this.helloAt = performance.now();
    if (this.ctx.histograms) this.listener.stats.hello.observe((this.helloAt - this.acceptedAt) / 1000);
    if (r.kind === "reject") return this.abort(r.outcome);
    this.alpn = r.alpn;
    const fw = this.ctx.firewall;
    if (this.ctx.ja4 || fw.hasJa4Rules) this.ja4 = ja4(r.buf, r.start, r.length);
    // The firewall's last word, on the hello itself, before any routing.
    const verdict = fw.checkJa4(this.ja4);
    this.ctx.fingerprints?.record(this.ja4, Date.now(), verdict !== null, networkHash(this.clientIp));
    if (verdict !== null) return this.abort(verdict);
    if (r.kind === "hostname") this.sni = r.hostname;
    const route = this.listener.table.lookup(this.sni, this.alpn);
    if (route === null) return this.abort(this.sni === null ? "no_sni" : "no_route");
    this.route = route;
    // After the global firewall and the match: the route's own policy and limit.
    const refused = route.enter(this.clientIp, this.ctx.workerId);
    if (refused !== null) return this.abort(refused);
    this.holdsRoute = true;
    this.routeStats = this.listener.stats.route(route.hostname === "" ? DEFAULT_ROUTE_LABEL : route.name);
    this.tryNext();
  }

  /**
   * Connect to the next eligible backend of the route. Nothing
   * has reached the client from any backend yet, so a failed connect can
   * move on to another; a backend never gets a second try on the same
   * connection, and tries stop at the route's retries + 1.
   */
  private tryNext(): void {
    const pool = this.route!;
    if (this.tries >= pool.maxTries) return this.abort("connect_failed");
    const i = pool.pick(this.clientIp, this.tried, this.ctx.wheel.nowSec);
    if (i < 0) return this.abort(this.tries === 0 ? "no_backend" : "connect_failed");
    this.tried |= 1 << i;
    this.tries++;
    this.backendIndex = i;
    this.ctx.backends.take(pool.ref(i), this.ctx.workerId);
    this.holdsBackend = true;
    this.connect(pool.addr(i));
  }

  /** The current try's connect failed or timed out: count it against the backend (passive health) and try the next. */
  private connectFailed(): void {
    const pool = this.route!;
    const ref = pool.ref(this.backendIndex);
    this.releaseBackend();
    const went = this.ctx.backends.connectResult(ref, false, pool.fall, pool.checksOn, pool.holdSec, this.ctx.wheel.nowSec);
    if (went === "down")
      this.ctx.logger.warn("backend down after connect failures", { listener: this.listener.addr, route: pool.name, backend: pool.addr(this.backendIndex), worker: this.ctx.workerId });
    this.tryNext();
  }

  private releaseBackend(): void {
    if (!this.holdsBackend) return;
    this.holdsBackend = false;
    this.ctx.backends.give(this.route!.ref(this.backendIndex), this.ctx.workerId);
  }

  /** The backend this connection holds, for a DISABLED-with-reset; null when none. */
  get backendSlot(): { slot: number; gen: number } | null {
    return this.holdsBackend ? this.route!.ref(this.backendIndex) : null;
  }

  /**
   * The PROXY header phase: feed the reader; once the header is
   * complete, the client is the source it names and the firewall judges that
   * client (the balancer was judged by trusted_proxies at accept). Returns
   * the bytes after the header, or null while the header is incomplete or
   * when the connection was refused.
   */
  private onProxyHeaderData(chunk: Uint8Array): Uint8Array | null {
    const r = (this.headerReader ??= new ProxyHeaderReader()).feed(chunk);
    if (r === null) return null;
    this.headerReader = null;
    if (r.kind === "reject") {
      this.ctx.logger.debug("PROXY header refused", { peer: this.clientIp, reason: r.reason });
      this.abort("bad_proxy_header");
      return null;
    }
    this.received = r.header;
    this.peerIp = this.clientIp;
    this.peerPort = this.socketPort();
    this.phase = Phase.Hello;
    const src = r.header.source;
    // LOCAL / UNKNOWN: the balancer speaks for itself (a health check); it is
    // not firewalled again.
    if (src === null) return r.rest;
    this.clientIp = src.ip;
    this.clientPort = src.port;
    const verdict = this.ctx.firewall.check(src.ip, this.ctx.wheel.now);
    if (verdict !== null) {
      this.abort(verdict);
      return null;
    }
    return r.rest;
  }

  /** The client's port as its socket's peer (read once, while the socket is open), or the one the PROXY header named. */
  private socketPort(): number {
    if (this.clientPort < 0) this.clientPort = this.client.remotePort ?? 0;
    return this.clientPort;
  }

  private connect(backend: string): void {
    this.backendAddr = backend;
    this.phase = Phase.Connecting;
    this.connectStartAt = performance.now();
    this.deadline = this.ctx.wheel.after(this.route!.connectTimeoutMs ?? this.ctx.proxy.connectTimeoutMs);
    this.ctx.wheel.schedule(this);
    connectBackend(this, backend, this.tries, this.ctx.backendHandlers);
  }

  onBackendOpen(socket: PeerSocket, attempt: number): void {
    if (this.phase !== Phase.Connecting || this.finished || attempt !== this.tries) {
      // We gave up on this try (connect_timeout, client gone, shutdown) before it opened.
      socket.terminate();
      return;
    }
    const pool = this.route!;
    this.ctx.backends.connectResult(pool.ref(this.backendIndex), true, pool.fall, pool.checksOn, pool.holdSec, this.ctx.wheel.nowSec);
    this.phase = Phase.Relaying;
    this.connectedAt = performance.now();
    if (this.ctx.histograms) this.routeStats!.connect.observe((this.connectedAt - this.connectStartAt) / 1000);
    this.deadline = this.ctx.wheel.after(this.ctx.proxy.idleTimeoutMs);
    this.ctx.wheel.schedule(this);
    const helloOnly = this.peeked.length <= this.peeked.helloEnd;
    const replay = this.peeked.take();
    const send = this.route!.sendProxyProtocol;
    // PROXY header: the client as source (a received LOCAL leaves the balancer); as
    // destination what it dialled: the received header's, else our local address.
    const local = this.client as unknown as { localAddress?: string; localPort: number };
    const preamble =
      send === "off"
        ? null
        : headerFor(send, { ip: this.clientIp, port: this.socketPort() }, this.received?.destination ?? { ip: normaliseIp(local.localAddress ?? "0.0.0.0"), port: local.localPort }, this.sni, this.id);
    // Kept until the backend's first byte: if it closes or resets before
    // that, the same bytes go to the next backend (retryEmpty) — only when
    // they are the ClientHello alone, never a client's data.
    const canRetry = this.route!.maxTries > this.tries;
    this.replay = canRetry && helloOnly ? replay : null;
    this.unsafeRetry = canRetry && this.replay === null;
    this.startRelay(socket, replay, this.clientPaused, preamble);
    // From here the relay pauses and resumes the client; the read cap of
    // the connecting phase starts afresh if a retry comes back to it.
    this.clientPaused = false;
  }

  onBackendConnectError(attempt: number): void {
    if (this.phase === Phase.Connecting && !this.finished && attempt === this.tries) this.connectFailed();
  }

  onClientEnd(): void {
    // After a lingering close (Relay.closeBoth) the client's FIN ends it.
    if (this.finished) return void this.client.end();
    if (this.phase === Phase.Hello || this.phase === Phase.ProxyHeader) {
      this.closedBy = "client";
      return this.abort("client_closed");
    }
    this.clientEnd();
  }

  onClientClose(error: Error | undefined): void {
    if (this.finished) return;
    if (this.phase !== Phase.Relaying) {
      this.closedBy = "client";
      return this.abort("client_closed");
    }
    this.socketClosed("client", error);
  }

  /** The wheel found this connection's deadline passed. */
  expire(): void {
    if (this.finished) return;
    switch (this.phase) {
      // The PROXY header and the ClientHello share hello_timeout.
      case Phase.ProxyHeader:
      case Phase.Hello:
        return this.abort("hello_timeout");
      case Phase.Connecting:
        return this.connectFailed();
      case Phase.Relaying:
        return this.endRelay("idle_timeout");
    }
  }

  /**
   * Reset both sides now: at the end of the shutdown grace period
   * ("shutdown"), or after a handler threw ("internal_error"), so that a bug
   * can never leave a connection open and unaccounted for.
   */
  forceClose(outcome: "shutdown" | "internal_error" | "backend_disabled" = "shutdown"): void {
    if (this.finished) return;
    if (this.phase === Phase.Relaying) {
      this.outcomeOverride = outcome;
      // The drain's deadline ends a healthy connection: cleanly when nothing is lost.
      if (outcome === "shutdown") this.closeBoth();
      else this.resetBoth("proxy");
    } else this.abort(outcome);
  }

  /**
   * The backend closed or reset before sending a byte (seen as an end, a
   * close, or a failed write of the replay): nothing from it has
   * reached the client, and it got only the replayed hello. Like a failed
   * connect, count it against the backend and try the next one (HAProxy's
   * retry-on empty-response) — a backend killed between accepting and
   * answering costs the client nothing. False when a retry is not safe.
   */
  protected retryEmpty(): boolean {
    const replay = this.replay;
    if (replay === null || this.bytesFromBackend !== 0 || this.finished || this.clientEof || !this.backendWritesDone) return false;
    if (this.bytesFromClient !== replay.length || this.tries >= this.route!.maxTries) return false;
    this.replay = null;
    this.abandonBackend(replay.length);
    this.peeked.restore(replay);
    this.phase = Phase.Connecting;
    this.connectFailed();
    return true;
  }

  protected touch(): void {
    this.deadline = this.ctx.wheel.after(this.ctx.proxy.idleTimeoutMs);
  }

  protected onRelayEnd(end: RelayEnd): void {
    this.phase = Phase.Closed;
    // Record before release: releasing the last connection of a drain logs
    // "stopped", which must come after every access record and count it.
    this.record(this.outcomeOverride ?? (end === "idle_timeout" ? "idle_timeout" : "ok"));
    this.release();
  }

  /** End before the relay started: RST the client (docs/SPEC.md §3: no byte, no alert). */
  private abort(outcome: Outcome): void {
    this.finished = true;
    this.phase = Phase.Closed;
    this.closedBy ??= "proxy";
    this.peeked.clear();
    this.headerReader = null;
    this.client.terminate();
    this.record(outcome);
    this.release();
  }

  private release(): void {
    if (this.holdsRoute) {
      this.holdsRoute = false;
      this.route!.leave(this.ctx.workerId);
    }
    this.ctx.wheel.cancel(this);
    this.ctx.connections.delete(this);
    this.dropSlot();
    this.ctx.onConnectionClosed();
  }

  /** Give back the place taken in the shared counters at accept (once). */
  private dropSlot(): void {
    if (!this.holdsSlot) return;
    this.holdsSlot = false;
    this.ctx.counters.release(this.listener.index, this.ctx.workerId);
  }

  /** The route that matched (access log `route`): its name, "" before a match. */
  get routeName(): string {
    return this.route?.name ?? "";
  }

  /** Live byte counts, read by the metrics at scrape time (bytes are counted as they move). */
  get liveRouteStats(): RouteStats | null {
    return this.routeStats;
  }

  private record(outcome: Outcome): void {
    if (this.holdsBackend) this.releaseBackend();
    const ls = this.listener.stats;
    const i = OUTCOME_INDEX[outcome];
    ls.closed[i]!++;
    const rs = this.routeStats ?? ls.none;
    rs.bytesFromClient += this.bytesFromClient;
    rs.bytesToClient += this.bytesFromBackend;
    // Counted: from now on the scrape must not add this connection's bytes again.
    this.routeStats = null;
    if (this.ctx.histograms) ls.duration[i]!.observe((performance.now() - this.acceptedAt) / 1000);
    if (this.ctx.logger.enabled("info")) writeAccessRecord(this.ctx.logger, this.ctx.workerId, this.ctx.generation, this, outcome);
  }
}
