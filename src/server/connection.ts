// One client connection through its whole life (docs/SPEC.md §3): firewall
// verdict at accept, ClientHello, route, backend tries, replay, relay, access
// record. Sockets call in through the shared handlers (event_loop.ts,
// backend_socket.ts); the deadline wheel calls expire().

import type { Socket } from "bun";
import type { RuleVerdict } from "../firewall/firewall";
import type { ProxyHeader } from "../proxy_header/proxy_header";
import { ProxyHeaderReader } from "../proxy_header/proxy_header_reader";
import type { RoutePool } from "../routing/pool";
import type { Closer, PeerSocket, RelayEnd } from "../relay/relay";
import type { Timed } from "../relay/deadline_wheel";
import { admitHello, pickBackend } from "./admission";
import type { LoopContext } from "./loop_context";
import { type BackendOwner, proxyPreamble, reportConnect } from "./backend_socket";
import type { ListenerRuntime } from "./listener_runtime";
import { connectionId, nextSeq } from "./connection_id";
import { Peeked } from "./peeked";
import { type ReplayOwner, ReplayingRelay } from "./replaying_relay";
import { takeProxyHeader } from "./proxy_header_phase";
import { endSession, routeStatsOf } from "./session";
import type { Outcome, RouteStats } from "./stats";

/** What every connection of one event loop shares (loop_context.ts). */
export type ServerContext = LoopContext<Connection, BackendOwner>;

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

export class Connection implements Timed, BackendOwner, ReplayOwner {
  deadline = 0;
  wheelSlot: Set<Timed> | null = null;
  private phase: Phase;
  private headerReader: ProxyHeaderReader | null = null;
  /** The PROXY header received, once read. */
  received: ProxyHeader | null = null;
  /** The balancer, on a proxy_protocol listener (the socket's peer); "" otherwise. */
  peerIp = "";
  peerPort = 0;
  route: RoutePool | null = null;
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
  /** The address connected to (or refused) for a backend written as a name; null for an IP literal (backend_dial.ts). */
  resolved: string | null = null;
  readonly acceptedAt: number;
  /** The client's port, -1 until read: Bun asks the kernel (getpeername) on every read of remotePort (it caches
   * remoteAddress, not the port), and only the access log and an outgoing PROXY header need it. */
  clientPort = -1;
  helloAt = 0;
  connectStartAt = 0;
  connectedAt = 0;

  /** The byte pump, its replay policy and its half of the connection's state (bytes, who closed, finished). */
  readonly relay: ReplayingRelay;

  constructor(
    client: Socket<Connection>,
    readonly listener: ListenerRuntime,
    private readonly ctx: ServerContext,
    /** The client: the socket's peer, or on a proxy_protocol listener the source its header names. */
    public clientIp: string,
  ) {
    this.relay = new ReplayingRelay(client as unknown as PeerSocket, this);
    this.acceptedAt = performance.now();
    // The access log needs it even if the socket is gone by the time the
    // record is written; read now while it is open. Undefined when the client
    // reset before we could ask (see event_loop.ts, the client handlers' open).
    if (ctx.logger.enabled("info")) this.clientPort = client.remotePort ?? 0;
    this.phase = listener.proxyProtocol ? Phase.ProxyHeader : Phase.Hello;
    listener.stats.accepted++;
  }

  private readonly seq = nextSeq();
  /** The access log's `id`, and the PP2_TYPE_UNIQUE_ID sent to a backend (formatted only when asked). */
  get id(): string {
    return connectionId(this.seq);
  }

  /** Who ended it first (access-log `closed_by`), and the bytes each way: the relay's. */
  get closedBy(): Closer | null {
    return this.relay.closedBy;
  }

  get bytesFromClient(): number {
    return this.relay.bytesFromClient;
  }

  get bytesFromBackend(): number {
    return this.relay.bytesFromBackend;
  }

  /** Refuse at accept (capacity, draining, firewall): RST before any byte is read. */
  refuse(outcome: Outcome, closedBy: "proxy" | "client" = "proxy"): void {
    this.relay.closedBy = closedBy;
    this.abort(outcome);
  }

  /** Accepted: wait for the ClientHello within hello_timeout. */
  admit(): void {
    this.ctx.connections.add(this);
    this.deadline = this.ctx.wheel.after(this.ctx.proxy.helloTimeoutMs);
    this.ctx.wheel.schedule(this);
  }

  onClientData(chunk: Uint8Array): void {
    if (this.relay.finished) return;
    if (this.phase === Phase.Relaying) return this.relay.clientData(chunk);
    if (this.phase === Phase.ProxyHeader) {
      const r = takeProxyHeader((this.headerReader ??= new ProxyHeaderReader()), chunk, this, this.ctx);
      if (r.kind === "more") return;
      this.headerReader = null;
      if (r.kind === "refused") return this.abort(r.outcome);
      this.phase = Phase.Hello;
      if (r.rest.length === 0) return;
      chunk = r.rest;
    }
    this.peeked.add(chunk);
    if (this.phase !== Phase.Hello) {
      // Connecting: a TLS client sends little or nothing before the server's
      // reply; hold what comes, and stop reading only if it grows (pausing
      // costs two epoll changes, so it is not done for every connection).
      if (!this.clientPaused && this.peeked.length > this.ctx.proxy.maxHelloBytes + CONNECT_READ_ALLOWANCE) {
        this.clientPaused = true;
        this.relay.client.pause();
      }
      return;
    }
    const r = this.peeked.readHello(chunk, this.ctx.proxy.maxHelloBytes);
    if (r.kind === "more") return;
    this.helloAt = performance.now();
    if (this.ctx.histograms) this.listener.stats.hello.observe((this.helloAt - this.acceptedAt) / 1000);
    if (r.kind === "reject") return this.abort(r.outcome);
    const refused = admitHello(this.ctx, this.listener.table, this, r.value, "t");
    if (refused !== null) return this.abort(refused);
    this.holdsRoute = true;
    this.routeStats = routeStatsOf(this.listener.stats, this.route!);
    this.tryNext();
  }

  /** Connect to the route's next backend: nothing has reached the client from any yet, so a failed connect moves on. */
  private tryNext(): void {
    const i = pickBackend(this.ctx, this.route!, this.clientIp, this.tried, this.tries);
    if (typeof i === "string") return this.abort(i);
    this.tried |= 1 << i;
    this.tries++;
    this.backendIndex = i;
    this.holdsBackend = true;
    this.connect(this.route!.target(i, this.sni));
  }

  /** The current try's connect failed or timed out: count it against the backend (passive health) and try the next. */
  private connectFailed(): void {
    this.releaseBackend();
    reportConnect(this.ctx, this.route!, this.backendIndex, false, this.listener.label);
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

  /** The client's port as its socket's peer (read once, while the socket is open), or the one the PROXY header named. */
  socketPort(): number {
    if (this.clientPort < 0) this.clientPort = this.relay.client.remotePort ?? 0;
    return this.clientPort;
  }

  private connect(backend: string): void {
    this.backendAddr = backend;
    this.phase = Phase.Connecting;
    this.connectStartAt = performance.now();
    this.deadline = this.ctx.wheel.after(this.route!.connectTimeoutMs ?? this.ctx.proxy.connectTimeoutMs);
    this.ctx.wheel.schedule(this);
    this.ctx.connect(this, backend, this.tries);
  }

  /** Whether try `attempt` is the one still awaited: not given up on (connect_timeout, client gone, shutdown). */
  awaits(attempt: number): boolean {
    return this.phase === Phase.Connecting && !this.relay.finished && attempt === this.tries;
  }

  onBackendOpen(socket: PeerSocket, attempt: number): void {
    const relay = this.relay;
    if (!this.awaits(attempt)) {
      // We gave up on this try (connect_timeout, client gone, shutdown) before it opened.
      socket.terminate();
      return;
    }
    reportConnect(this.ctx, this.route!, this.backendIndex, true, this.listener.label);
    this.phase = Phase.Relaying;
    this.connectedAt = performance.now();
    if (this.ctx.histograms) this.routeStats!.connect.observe((this.connectedAt - this.connectStartAt) / 1000);
    this.deadline = this.ctx.wheel.after(this.ctx.proxy.idleTimeoutMs);
    this.ctx.wheel.schedule(this);
    const helloOnly = this.peeked.length <= this.peeked.helloEnd;
    const replay = this.peeked.take();
    const send = this.route!.sendProxyProtocol;
    const from = send === "off" ? null : { ip: this.clientIp, port: this.socketPort() };
    const preamble =
      from === null ? null : proxyPreamble(send as "v1" | "v2", from, this.received, relay.client, this.sni, this.id);
    relay.startWith(socket, replay, helloOnly, this.route!.maxTries > this.tries, this.clientPaused, preamble);
    // From here the relay pauses and resumes the client; the read cap of
    // the connecting phase starts afresh if a retry comes back to it.
    this.clientPaused = false;
  }

  onBackendConnectError(attempt: number): void {
    if (this.awaits(attempt)) this.connectFailed();
  }

  /** The backend's name did not resolve, or every address it gave is refused by the destination guard: RST. */
  onBackendRefused(attempt: number, outcome: "destination_denied" | "dns_failed"): void {
    if (this.awaits(attempt)) this.abort(outcome);
  }

  onClientEnd(): void {
    // After a lingering close (Relay.closeBoth) the client's FIN ends it.
    if (this.relay.finished) return void this.relay.client.end();
    if (this.phase === Phase.Hello || this.phase === Phase.ProxyHeader) {
      this.relay.closedBy = "client";
      return this.abort("client_closed");
    }
    this.relay.clientEnd();
  }

  onClientClose(error: Error | undefined): void {
    if (this.relay.finished) return;
    if (this.phase !== Phase.Relaying) {
      this.relay.closedBy = "client";
      return this.abort("client_closed");
    }
    this.relay.socketClosed("client", error);
  }

  /** The wheel found this connection's deadline passed. */
  expire(): void {
    if (this.relay.finished) return;
    switch (this.phase) {
      // The PROXY header and the ClientHello share hello_timeout.
      case Phase.ProxyHeader:
      case Phase.Hello:
        return this.abort("hello_timeout");
      case Phase.Connecting:
        return this.connectFailed();
      case Phase.Relaying:
        return this.relay.endRelay("idle_timeout");
    }
  }

  /** Reset both sides now: at the end of the shutdown grace period ("shutdown"), or after a handler threw
   * ("internal_error"), so that a bug can never leave a connection open and unaccounted for. */
  forceClose(outcome: "shutdown" | "internal_error" | "backend_disabled" = "shutdown"): void {
    if (this.relay.finished) return;
    if (this.phase === Phase.Relaying) {
      this.relay.outcomeOverride = outcome;
      // The drain's deadline ends a healthy connection: cleanly when nothing is lost.
      if (outcome === "shutdown") this.relay.closeBoth();
      else this.relay.resetBoth("proxy");
    } else this.abort(outcome);
  }

  /** The address the firewall judged this client by: "" while a PROXY header is awaited, or when it named none
   * (LOCAL: the balancer, never judged). */
  get judgedIp(): string {
    if (this.phase === Phase.ProxyHeader) return "";
    return this.listener.proxyProtocol && this.received?.source == null ? "" : this.clientIp;
  }

  /** A firewall rule added while this connection is open blocks it: RST both sides, the outcome the admission
   * would give now, `closed_by` firewall (docs/SECURITY.md). */
  block(outcome: RuleVerdict): void {
    if (this.relay.finished) return;
    this.relay.closedBy = "firewall";
    if (this.phase !== Phase.Relaying) return this.abort(outcome);
    this.relay.outcomeOverride = outcome;
    this.relay.resetBoth("firewall");
  }

  /**
   * The backend closed or reset before sending a byte (seen as an end, a close, or a failed write of the
   * replay): nothing from it has reached the client, and it got only the replayed hello. Like a failed connect,
   * count it against the backend and try the next one (HAProxy's retry-on empty-response) — a backend killed
   * between accepting and answering costs the client nothing. False when a retry is not safe.
   */
  retryEmpty(): boolean {
    const replay = this.relay.emptyReplay;
    if (replay === null || this.tries >= this.route!.maxTries) return false;
    this.relay.abandonForRetry(replay);
    this.peeked.restore(replay);
    this.phase = Phase.Connecting;
    this.connectFailed();
    return true;
  }

  touch(): void {
    this.deadline = this.ctx.wheel.after(this.ctx.proxy.idleTimeoutMs);
  }

  relayEnded(end: RelayEnd): void {
    this.phase = Phase.Closed;
    // Record before release: releasing the last connection of a drain logs
    // "stopped", which must come after every access record and count it.
    this.record(this.relay.outcomeOverride ?? (end === "idle_timeout" ? "idle_timeout" : "ok"));
    this.release();
  }

  /** End before the relay started: RST the client (docs/SPEC.md §3: no byte, no alert). */
  private abort(outcome: Outcome): void {
    this.relay.finished = true;
    this.phase = Phase.Closed;
    this.relay.closedBy ??= "proxy";
    this.peeked.clear();
    this.headerReader = null;
    this.relay.client.terminate();
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
    endSession(this.ctx, this.listener.stats, this.routeStats, this, outcome);
    // Counted: from now on the scrape must not add this connection's bytes again.
    this.routeStats = null;
  }
}
