// A UDP listener that routes QUIC by the server name in its Initial packets
// (quic/hello_reader.ts) and relays every datagram unchanged: nothing is
// terminated, nothing rewritten. The UDP shell around the pure reader; the
// steps are docs/ARCHITECTURE.md's "The life of one QUIC flow".
//
// A flow is a client address and port. Its first datagram passes the global
// firewall (address rules and the rate limit: one "connection" per flow)
// before any decryption, then the memory of recent refusals
// (quic_refusals.ts) and the per-source bound on flows (quic/sources.ts).
// Its datagrams are read until the ClientHello is whole, within the QUIC
// hello deadline, in a bounded pending table (quic/pending_table.ts) where a
// newcomer evicts the oldest — a flood of Initials costs bounded memory and
// one key derivation and decryption each. Then the flow is admitted like a
// TCP connection (admission.ts), its backend dialled like one's
// (quic_backend.ts: a name resolved, every address checked by the
// destination guard), and a connected UDP socket per flow carries its
// datagrams to the checked address, the held ones first; the backend's
// replies go back from the listener's address. A long header naming another
// connection (quic/new_connection.ts) is not relayed. A client that moves
// (RFC 9000 §9) opens another path of its flow (quic_paths.ts).
//
// A flow ends after quic_idle_timeout without a datagram either way (QUIC's
// own close is encrypted; the hello deadline and idle timeout are entries of
// the loop's deadline wheel), when a rule added at runtime blocks it, or at
// drain_timeout / max_connection_lifetime (quic_established.ts): with an
// access record, refusals within a record budget. Datagrams dropped before a
// hello (not QUIC, blocked addresses, a flood) are counted, not logged.

import type { NewlyBlocked } from "../firewall/firewall";
import { formatHostPort } from "../net/host_port";
import { normaliseIp } from "../net/ip";
import { QuicHelloReader } from "../quic/hello_reader";
import { opensNewConnection } from "../quic/new_connection";
import { longHeaderIds } from "../quic/packet";
import { PendingTable } from "../quic/pending_table";
import { SourceCounts, flowsPerSource, sourceKey } from "../quic/sources";
import { admitHello, pickBackend, sourceVerdict } from "./admission";
import type { ListenerRuntime } from "./listener_runtime";
import type { LoopContext } from "./loop_context";
import { type QuicBackends, dialFlow } from "./quic_backend";
import { SweptFlow, blockedFlows } from "./quic_established";
import { QuicRefusals } from "./quic_refusals";
import {
  type BackendDatagramConnector,
  type Expiring,
  type Flow,
  MAX_HELD_BYTES,
  MAX_HELD_BYTES_PER_FLOW,
  MAX_PENDING,
  MAX_PENDING_DATAGRAMS,
  MAX_PENDING_PER_SOURCE,
  MAX_QUIC_HELLO_BYTES,
  QUIC_HELLO_DEADLINE_MS,
  pendingFlow,
} from "./quic_flow";
import { type PathContext, type PathOwner, QuicPaths } from "./quic_paths";
import { countOutcome, endSession, routeStatsOf } from "./session";
import type { Outcome } from "./stats";

/** What a QUIC listener uses of its event loop's context. */
export type QuicContext = PathContext & Pick<LoopContext<Expiring, unknown>, "generation" | "histograms" | "refusals">;

/** The listener's UDP socket: Bun's, or a unit test's fake. */
export interface DatagramSocket {
  readonly port: number;
  send(d: Uint8Array, port: number, address: string): unknown;
  close(): void;
}

export class QuicListener implements PathOwner {
  private readonly flows = new Map<string, Flow>();
  private readonly pending = new PendingTable<Flow>({
    entries: MAX_PENDING,
    perSource: MAX_PENDING_PER_SOURCE,
    bytesPerEntry: MAX_HELD_BYTES_PER_FLOW,
    bytesTotal: MAX_HELD_BYTES,
  });
  readonly perSource: SourceCounts;
  private readonly refusals: QuicRefusals;
  private readonly paths: QuicPaths;
  /** Its routed flows as the loop's drain / lifetime sweep sees them (quic_established.ts). */
  private readonly swept = new Map<Flow, SweptFlow>();
  readonly connectBackend: BackendDatagramConnector;
  private closed = false;

  /** Over a bound socket (listener_kind.ts binds Bun's); a unit test hands in fakes of both sockets. */
  constructor(
    private readonly socket: DatagramSocket,
    readonly rt: ListenerRuntime,
    readonly ctx: QuicContext,
    private readonly backends: QuicBackends,
  ) {
    this.connectBackend = backends.connect;
    this.refusals = new QuicRefusals(ctx.logger, rt.label, ctx.wheel);
    this.perSource = new SourceCounts(flowsPerSource(rt.connectionCap));
    this.paths = new QuicPaths(this);
  }

  get port(): number {
    return this.socket.port;
  }

  /** Flows open now (pending ones included). */
  get size(): number {
    return this.flows.size;
  }

  /** A datagram from a client at address:port. */
  onDatagram(d: Uint8Array, port: number, address: string): void {
    // Keyed by the address as the socket gives it (one client, one form): made canonical only for a new flow or path.
    const key = `${address}|${port}`;
    const f = this.flows.get(key);
    if (f === undefined) {
      const p = this.paths.get(key);
      if (p !== undefined) return this.paths.fromClient(p, d);
      const moved = this.paths.movedFlow(d);
      if (moved !== null) return this.paths.open(moved, d, key, normaliseIp(address), port);
      return this.newFlow(d, key, normaliseIp(address), port);
    }
    // Another connection from a routed flow's address is not relayed under the flow's admission (new_connection.ts).
    if ((d[0]! & 0x80) !== 0 && opensNewConnection(d, f.dcid, f.cids)) return this.refusePath("quic_new_connection");
    f.bytesFromClient += d.length;
    if (f.state === "pending") return this.read(f, d);
    this.touch(f);
    if (f.state === "relaying") f.backend!.send(d);
    // Connecting, a moment (the backend socket is being made): held within the flow's bound, the rest dropped (QUIC
    // resends).
    else if (f.heldBytes + d.length <= MAX_HELD_BYTES_PER_FLOW) {
      f.held.push(d.slice());
      f.heldBytes += d.length;
    }
  }

  /** A datagram either way: the flow's idle deadline moves (the wheel re-files it when its slot comes round). */
  private touch(f: Flow): void {
    f.deadline = this.ctx.wheel.after(this.ctx.proxy.quicIdleTimeoutMs);
  }

  /**
   * A path refused, or a new connection's long header from a routed flow's address: one accepted and one closed with
   * its outcome.
   */
  refusePath(outcome: Outcome): void {
    this.rt.stats.accepted++;
    countOutcome(this.rt.stats, outcome);
  }

  toClient(d: Uint8Array, port: number, ip: string): void {
    this.socket.send(d, port, ip);
  }

  private newFlow(d: Uint8Array, key: string, ip: string, port: number): void {
    // Every first datagram from a new address is one accepted, as a TCP connection is: each ends counted in closed.
    this.rt.stats.accepted++;
    // Stray short-header packets and other non-Initials open nothing (cheap tests first).
    if (d.length < 1200 || (d[0]! & 0xc0) !== 0xc0) return this.count("not_quic");
    if (d.length > MAX_HELD_BYTES_PER_FLOW) return this.count("too_large");
    const ids = longHeaderIds(d, 0);
    if ("bad" in ids) return this.count("not_quic");
    const verdict = sourceVerdict(this.ctx, ip, "udp");
    if (verdict !== null) return this.count(verdict);
    // A copy of an Initial refused a moment ago (a retransmission): counted again, not read again.
    const dcid = Buffer.from(ids.dcid).toString("hex");
    const now = Date.now();
    const refused = this.refusals.repeat(`${ip}|${dcid}`, now);
    if (refused !== null) return this.count(refused);
    const src = sourceKey(ip);
    // max_connections counts routed flows, as a TCP listener's counts open connections: a full listener reads no more
    // hellos.
    const max = this.rt.maxConnections;
    if ((max > 0 && this.rt.active >= max) || this.perSource.count(src) >= this.perSource.max)
      return this.count("over_capacity");
    const reader = new QuicHelloReader(
      Math.min(this.ctx.proxy.maxHelloBytes, MAX_QUIC_HELLO_BYTES),
      MAX_PENDING_DATAGRAMS,
    );
    const deadline = this.ctx.wheel.after(this.helloDeadlineMs);
    const f = pendingFlow(this.rt, { key, src, dcid, ip, port, bytes: d.length, now, deadline }, reader, (x) =>
      this.expire(x),
    );
    // A full table makes room by evicting its oldest flows (pending_table.ts); a source past its share is refused.
    const evicted = this.pending.add(key, src, f);
    if (evicted === null) return this.count("over_capacity");
    for (const e of evicted) this.dropCounted(e, "over_capacity");
    this.perSource.take(src);
    this.flows.set(key, f);
    this.ctx.wheel.schedule(f);
    this.read(f, d);
  }

  /**
   * The wheel found a flow due: a pending one past its hello deadline is dropped; a routed one quiet past
   * quic_idle_timeout ends.
   */
  private expire(f: Flow): void {
    if (f.state === "pending") return this.timeOut(f);
    // QUIC's own close is encrypted: a flow ends when it goes quiet, as its endpoints' idle timers end it.
    if (f.state !== "ended") this.end(f, "ok");
  }

  private read(f: Flow, d: Uint8Array): void {
    // The deadline counts from the first datagram: a hello trickled in does not restart it.
    if (Date.now() - f.startAt > this.helloDeadlineMs) return this.timeOut(f);
    const held = this.pending.hold(f.key, d.length);
    if (held === "too_large") return this.dropCounted(f, "too_large");
    for (const e of held) this.dropCounted(e, "over_capacity");
    const r = f.reader!.feed(d);
    // Not a client we could read: dropped, counted (a flood is not logged datagram by datagram).
    if (r.kind === "reject") return this.dropCounted(f, r.outcome);
    f.held.push(d.slice());
    f.heldBytes += d.length;
    if (r.kind === "more") return;
    this.unpend(f);
    this.touch(f);
    f.helloAt = performance.now();
    const refused = admitHello(this.ctx, this.rt.table, f, r.value.hello, "q");
    if (refused !== null) return this.refuse(f, refused);
    const route = f.route!;
    f.holdsRoute = true;
    f.routeStats = routeStatsOf(this.rt.stats, route);
    const i = pickBackend(this.ctx, route, f.clientIp, 0, 0);
    if (typeof i === "string") return this.refuse(f, i);
    f.backendIndex = i;
    f.backendSlot = route.ref(i);
    // Its backend socket is a descriptor: a place of max_connections and of the process's connection cap, as a TCP
    // connection takes (host_limits.ts).
    if (!this.rt.takePlace(this.ctx.workerId)) return this.refuse(f, "over_capacity");
    f.holdsPlace = true;
    f.tries = 1;
    f.backendAddr = route.target(i, f.sni);
    f.state = "connecting";
    f.connectStartAt = performance.now();
    dialFlow(
      f,
      this.backends,
      (ip, port) => void this.connect(f, ip, port),
      (outcome) => this.refuse(f, outcome),
    );
  }

  /** The backend socket to the address the dial checked (an IP literal). */
  private async connect(f: Flow, ip: string, port: number): Promise<void> {
    f.backendIp = ip;
    f.backendPort = port;
    try {
      const s = await this.connectBackend(ip, port, (d) => this.fromBackend(f, d));
      // The flow may have ended (shutdown) while the socket was being made.
      if ((f.state as Flow["state"]) === "ended") return s.close();
      f.backend = s;
      f.connectedAt = performance.now();
      f.state = "relaying";
      this.swept.set(f, new SweptFlow(f, (x, by) => this.endBy(x, by)));
      s.sendMany(f.held);
      f.held = [];
      f.heldBytes = 0;
    } catch (e) {
      const backend = formatHostPort(ip, port);
      this.ctx.logger.debug("quic backend socket failed", { id: f.id, backend, error: (e as Error).message });
      this.end(f, "connect_failed");
    }
  }

  /**
   * A datagram from the backend socket of flow f's first address: to that address only (a path's go to its own:
   * quic_paths.ts).
   */
  private fromBackend(f: Flow, d: Uint8Array): void {
    if (f.state === "ended") return;
    this.touch(f);
    f.bytesFromBackend += d.length;
    this.paths.learn(f, d);
    this.socket.send(d, f.clientPort, f.clientIp);
  }

  private unpend(f: Flow): void {
    if (f.reader === null) return;
    f.reader = null;
    this.pending.remove(f.key);
  }

  /** Forget a flow that never got its hello: no backend, no record. */
  private drop(f: Flow): void {
    if (f.state === "ended") return;
    this.flows.delete(f.key);
    this.ctx.wheel.cancel(f);
    this.unpend(f);
    this.perSource.give(f.src);
    f.held = [];
    f.state = "ended";
  }

  /**
   * A pending flow past its hello deadline: dropped, and remembered as a
   * refusal, so that its Initial's copies cannot open it again with a new
   * deadline (a trickled hello restarts nothing).
   */
  private timeOut(f: Flow): void {
    this.refusals.remember(f.refusalKey, "hello_timeout", Date.now());
    this.dropCounted(f, "hello_timeout");
  }

  /** Drop a pending flow, its outcome counted. */
  private dropCounted(f: Flow, outcome: Outcome): void {
    this.drop(f);
    this.count(outcome);
  }

  /**
   * End a flow refused after its hello, with its record within the record
   * budget (record_budget.ts); its Initial's copies are then counted, not
   * read (refusal_memory.ts).
   */
  private refuse(f: Flow, outcome: Outcome): void {
    const now = Date.now();
    this.refusals.remember(f.refusalKey, outcome, now);
    this.end(f, outcome, this.refusals.record(outcome, now));
  }

  /** Drops before a flow exists: counted in the listener's outcomes, not logged. */
  private count(outcome: Outcome): void {
    countOutcome(this.rt.stats, outcome);
  }

  /** End a flow: its backend socket, its route and backend counts, its record (unless `record` is false). */
  private end(f: Flow, outcome: Outcome, record = true): void {
    if (f.state === "ended") return;
    this.unpend(f);
    f.state = "ended";
    f.held = [];
    this.flows.delete(f.key);
    this.ctx.wheel.cancel(f);
    this.perSource.give(f.src);
    this.paths.forget(f);
    this.swept.delete(f);
    f.backend?.close();
    f.backend = null;
    const w = this.ctx.workerId;
    if (f.route !== null && f.backendIndex >= 0) this.ctx.backends.give(f.route.ref(f.backendIndex), w);
    if (f.holdsRoute) f.route!.leave(w);
    if (f.holdsPlace) this.rt.givePlace(w);
    f.closedBy ??= "proxy";
    f.routeName = f.route?.name ?? "";
    endSession(this.ctx, this.rt.stats, f.routeStats, f, outcome, record);
  }

  /** Ended from outside (drain, lifetime, a rule): dropped, `closed_by` who ended it, outcome ok unless given. */
  private endBy(f: Flow, by: "firewall" | "drain" | "lifetime" | (string & {}), outcome: Outcome = "ok"): void {
    f.closedBy = by;
    this.end(f, outcome);
  }

  /**
   * A rule added at runtime (Firewall.newlyBlocked): the flows it blocks end with the outcome admission would give
   * now, `closed_by` firewall (a pending one is dropped, counted); a path it blocks closes. How many ended.
   */
  block(blocked: NewlyBlocked): number {
    const b = blockedFlows(this.flows.values(), blocked);
    for (const [f, v] of b.flows) {
      if (f.state === "pending") this.dropCounted(f, v);
      else this.endBy(f, "firewall", v);
    }
    for (const p of b.paths) this.paths.close(p);
    return b.flows.length + b.paths.length;
  }

  /** DISABLED with reset: end the flows on backend `ref` (outcome backend_disabled, as a TCP connection's); how many. */
  resetBackend(ref: NonNullable<Flow["backendSlot"]>): number {
    let n = 0;
    for (const { flow: f } of [...this.swept.values()]) {
      const b = f.backendSlot;
      if (b === null || b.slot !== ref.slot || b.gen !== ref.gen) continue;
      this.end(f, "backend_disabled");
      n++;
    }
    return n;
  }

  /** Its routed flows, for the loop's drain / lifetime sweep (connection_sweep.ts). */
  routedFlows(): Iterable<SweptFlow> {
    return this.swept.values();
  }

  /** The QUIC hello deadline in force: QUIC_HELLO_DEADLINE_MS, or hello_timeout if shorter. */
  private get helloDeadlineMs(): number {
    return Math.min(this.ctx.proxy.helloTimeoutMs, QUIC_HELLO_DEADLINE_MS);
  }

  /** Stop receiving; end every flow (a drain cannot wait on QUIC: its close is invisible here). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.refusals.stop();
    this.socket.close();
    for (const f of [...this.flows.values()]) {
      if (f.state === "pending") this.drop(f);
      else this.end(f, "shutdown");
    }
  }
}
