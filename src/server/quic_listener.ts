// A UDP listener that routes QUIC by the server name in its Initial packets
// (quic/hello_reader.ts) and relays every datagram unchanged: nothing is
// terminated, nothing rewritten. The UDP shell around the pure reader.
//
// A flow is a client address and port. Its first datagram passes the global
// firewall (address rules and the rate limit: one "connection" per flow)
// before any decryption, then the memory of recent refusals (by address and
// Destination Connection ID: a retransmitted refused Initial is counted, not
// decrypted and logged again) and the per-source bound on flows
// (quic/sources.ts flowsPerSource per IPv4 address or IPv6 /64). Then its datagrams
// are read until the ClientHello is whole: at most MAX_PENDING_DATAGRAMS
// and MAX_HELD_BYTES_PER_FLOW of them, within the QUIC hello deadline
// counted from the first datagram, in a pending table (quic/pending_table.ts)
// of MAX_PENDING flows, MAX_PENDING_PER_SOURCE per source, MAX_HELD_BYTES
// in all, where a newcomer evicts the oldest — so a flood of Initials costs
// bounded memory and one key derivation and decryption each, and cannot
// hold the table against a client whose hello arrives within a round trip.
// Then the flow is routed like a TCP connection (ja4 rules, the route's
// policy and limits, a backend from its pool), a connected UDP socket per
// flow carries its datagrams to the backend — the buffered ones first — and
// the backend's replies go back to the client from the listener's address.
// A long header from the flow's address naming another connection (a new
// Destination Connection ID: quic/new_connection.ts) is not relayed: a new
// connection is admitted on its own (quic_new_connection, counted).
//
// A client that moves (RFC 9000 §9) opens another path of its flow
// (quic_paths.ts).
//
// A flow ends after quic_idle_timeout without a datagram either way (QUIC's
// own close is encrypted), with an access record — its hello deadline and
// idle timeout are entries of the event loop's deadline wheel, as a TCP
// connection's are; refusals after the hello are recorded too, within a record budget (quic/record_budget.ts: the rest
// summed in one line a second); datagrams dropped before a hello (not QUIC,
// blocked addresses, a flood) are counted, not logged one by one.

import { normaliseIp } from "../net/ip";
import { QuicHelloReader } from "../quic/hello_reader";
import { opensNewConnection } from "../quic/new_connection";
import { longHeaderIds } from "../quic/packet";
import { PendingTable } from "../quic/pending_table";
import { RecordBudget } from "../quic/record_budget";
import { type Refusal, RefusalMemory } from "../quic/refusal_memory";
import { SourceCounts, flowsPerSource, sourceKey } from "../quic/sources";
import { admitHello, pickBackend, sourceVerdict } from "./admission";
import type { ListenerRuntime } from "./listener_runtime";
import type { LoopContext } from "./loop_context";
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
  REFUSALS_REMEMBERED,
  REFUSAL_MEMORY_MS,
  backendSocket,
  pendingFlow,
} from "./quic_flow";
import { type PathContext, type PathOwner, QuicPaths } from "./quic_paths";
import { countOutcome, endSession, routeStatsOf } from "./session";
import type { Outcome } from "./stats";

/** How often the refusal memory forgets and the refusals past the record budget are summed in one line. */
const HOUSEKEEPING_MS = 1000;

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
  private readonly refusals = new RefusalMemory<Outcome>(REFUSALS_REMEMBERED, REFUSAL_MEMORY_MS);
  private readonly records = new RecordBudget<Outcome>();
  private readonly paths: QuicPaths;
  /** The refusal memory's and the record budget's turn, an entry of the wheel like the flows. */
  private readonly housekeeping: Expiring;
  private closed = false;

  /** Over a bound socket (listener_kind.ts binds Bun's); a unit test hands in fakes of both sockets. */
  constructor(
    private readonly socket: DatagramSocket,
    readonly rt: ListenerRuntime,
    readonly ctx: QuicContext,
    readonly connectBackend: BackendDatagramConnector = backendSocket,
  ) {
    this.perSource = new SourceCounts(flowsPerSource(rt.connectionCap));
    this.paths = new QuicPaths(this);
    this.housekeeping = { deadline: ctx.wheel.after(HOUSEKEEPING_MS), wheelSlot: null, expire: () => this.houseKeep() };
    ctx.wheel.schedule(this.housekeeping);
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
    const ip = normaliseIp(address);
    const key = `${ip}|${port}`;
    const f = this.flows.get(key);
    if (f === undefined) {
      const p = this.paths.get(key);
      if (p !== undefined) return this.paths.fromClient(p, d);
      const moved = this.paths.movedFlow(d);
      if (moved !== null) return this.paths.open(moved, d, key, ip, port);
      return this.newFlow(d, key, ip, port);
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
    f.lastAt = Date.now();
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
    // Its backend socket is a descriptor: a place of max_connections and of the process's connection cap, as a TCP
    // connection takes (host_limits.ts).
    if (!this.rt.takePlace(this.ctx.workerId)) return this.refuse(f, "over_capacity");
    f.holdsPlace = true;
    f.tries = 1;
    f.backendAddr = route.target(i, f.sni);
    void this.connect(f, f.backendAddr);
  }

  private async connect(f: Flow, addr: string): Promise<void> {
    f.state = "connecting";
    f.connectStartAt = performance.now();
    try {
      const s = await this.connectBackend(addr, (d) => this.fromBackend(f, d));
      // The flow may have ended (shutdown) while the socket was being made.
      if ((f.state as Flow["state"]) === "ended") return s.close();
      f.backend = s;
      f.connectedAt = performance.now();
      f.state = "relaying";
      s.sendMany(f.held);
      f.held = [];
      f.heldBytes = 0;
    } catch (e) {
      this.ctx.logger.debug("quic backend socket failed", { id: f.id, backend: addr, error: (e as Error).message });
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
    const pushed = this.refusals.remember(f.refusalKey, "hello_timeout", Date.now());
    if (pushed !== null) this.logRepeats(pushed);
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
    const pushed = this.refusals.remember(f.refusalKey, outcome, now);
    if (pushed !== null) this.logRepeats(pushed);
    this.end(f, outcome, this.records.take(outcome, now));
  }

  private logRepeats(r: Refusal<Outcome>): void {
    if (r.repeats === 0) return;
    const bar = r.key.lastIndexOf("|");
    this.ctx.logger.info("quic refusal repeated", {
      client: r.key.slice(0, bar),
      dcid: r.key.slice(bar + 1),
      outcome: r.outcome,
      repeats: r.repeats,
    });
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

  /** The QUIC hello deadline in force: QUIC_HELLO_DEADLINE_MS, or hello_timeout if shorter. */
  private get helloDeadlineMs(): number {
    return Math.min(this.ctx.proxy.helloTimeoutMs, QUIC_HELLO_DEADLINE_MS);
  }

  /**
   * Once a second: refusals are forgotten after REFUSAL_MEMORY_MS; the refusals past the record budget since the last
   * turn make one line.
   */
  private houseKeep(): void {
    if (this.closed) return;
    for (const r of this.refusals.expire(Date.now())) this.logRepeats(r);
    const unlogged = this.records.drain();
    if (unlogged !== null) this.ctx.logger.info("quic refusals not logged", { listener: this.rt.label, ...unlogged });
    this.housekeeping.deadline = this.ctx.wheel.after(HOUSEKEEPING_MS);
    this.ctx.wheel.schedule(this.housekeeping);
  }

  /** Stop receiving; end every flow (a drain cannot wait on QUIC: its close is invisible here). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.ctx.wheel.cancel(this.housekeeping);
    this.socket.close();
    for (const f of [...this.flows.values()]) {
      if (f.state === "pending") this.drop(f);
      else this.end(f, "shutdown");
    }
  }
}
