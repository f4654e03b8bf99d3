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
//
// The server's connection IDs (the Source Connection ID of its long-header
// packets) are learned. A short-header packet from a new client address
// (NAT rebinding, migration: RFC 9000 §9) that names one opens another path
// of that flow if the address passes the firewall, the rate limit and the
// route's policy as a new flow would, within quic/migration.ts's bounds: a
// backend socket of its own, so the backend sees the move and validates the
// path (§9.3), and each path's replies go to its own address only.
//
// A flow ends after quic_idle_timeout without a datagram either way (QUIC's
// own close is encrypted), with an access record; refusals after the hello
// are recorded too; datagrams dropped before a hello (not QUIC, blocked
// addresses, a flood) are counted, not logged one by one.

import type { udp } from "bun";
import type { QuicListenerConfig } from "../config/types";
import { networkHash, normaliseIp } from "../net/ip";
import { newPathDecision } from "../quic/migration";
import { longHeaderIds } from "../quic/packet";
import { PendingTable } from "../quic/pending_table";
import { type Refusal, RefusalMemory } from "../quic/refusal_memory";
import { SourceCounts, flowsPerSource, sourceKey } from "../quic/sources";
import { bindRetrying } from "../net/bind_retry";
import { QuicHelloReader } from "../quic/hello_reader";
import type { RoutePool } from "../routing/pool";
import { ja4 } from "../sni/ja4";
import { type AccessFacts, writeAccessRecord } from "./access_record";
import { connectionId, nextSeq } from "./connection_id";
import type { ListenerRuntime } from "./listener_runtime";
import type { LoopContext } from "./loop_context";
import type { Timed } from "../relay/deadline_wheel";
import { DEFAULT_ROUTE_LABEL, OUTCOME_INDEX, type Outcome } from "./stats";

export const QUIC_DEFAULT_MAX_FLOWS = 10_000;
export const MAX_PENDING = 1024;
export const MAX_PENDING_PER_SOURCE = 8;
export const MAX_PENDING_DATAGRAMS = 16;
/** Bytes of datagrams one flow holds before it is routed: 16 datagrams of 1,536 bytes (clients send Initials of 1,200–1,500). */
export const MAX_HELD_BYTES_PER_FLOW = 24 * 1024;
/** Bytes every pending flow holds together: past it the oldest are evicted. */
export const MAX_HELD_BYTES = 8 * 1024 * 1024;
/** A QUIC hello is whole within this long of its first datagram (or hello_timeout, if shorter): a client sends it in one flight and, lost, again after a probe timeout (RFC 9002 §6.2: about 1 s at first). */
export const QUIC_HELLO_DEADLINE_MS = 3000;
/** Refused hellos remembered (by address and connection ID), and for how long. */
export const REFUSALS_REMEMBERED = 4096;
export const REFUSAL_MEMORY_MS = 10_000;
/** A QUIC ClientHello's CRYPTO data at most (a post-quantum Chromium hello is about 1.8 KB). */
export const MAX_QUIC_HELLO_BYTES = 16384;
const SWEEP_MS = 1000;

/** What a QUIC listener uses of its event loop's context. */
type Ctx = Pick<LoopContext<Timed, unknown>, "proxy" | "firewall" | "logger" | "workerId" | "generation" | "backends" | "ja4" | "fingerprints"> & {
  /** The loop's coarse clock (the deadline wheel's). */
  readonly wheel: { readonly now: number; readonly nowSec: number };
};

/** A client address a routed flow moved to (migration.ts), with a backend socket of its own. */
interface Path {
  readonly key: string;
  readonly ip: string;
  readonly port: number;
  readonly src: string;
  readonly flow: Flow;
  backend: udp.ConnectedSocket<"uint8array"> | null;
  held: Uint8Array[];
  heldBytes: number;
  /** The last datagram from its client. */
  lastAt: number;
  closed: boolean;
}

interface Flow extends AccessFacts {
  key: string;
  /** The source it counts against (sourceKey). */
  src: string;
  /** The first datagram (the hello deadline counts from it). */
  startAt: number;
  /** The refusal memory's key: address and the first Initial's Destination Connection ID. */
  refusalKey: string;
  state: "pending" | "connecting" | "relaying" | "ended";
  reader: QuicHelloReader | null;
  held: Uint8Array[];
  heldBytes: number;
  backend: udp.ConnectedSocket<"uint8array"> | null;
  route: RoutePool | null;
  backendIndex: number;
  holdsRoute: boolean;
  /** A place of the process's budget (ListenerRuntime.takePlace), from its backend socket on. */
  holdsPlace: boolean;
  lastAt: number;
  cids: string[];
  /** Client addresses besides the first, each its own path to the backend. */
  paths: Path[];
  /** When the last of them was opened. */
  pathOpenedAt: number;
  // AccessFacts, writable here.
  id: string;
  tries: number;
  clientIp: string;
  clientPort: number;
  sni: string | null;
  alpn: readonly string[];
  ja4: string;
  routeName: string;
  backendAddr: string | null;
  bytesFromClient: number;
  bytesFromBackend: number;
  closedBy: string | null;
  helloAt: number;
  connectStartAt: number;
  connectedAt: number;
}

export class QuicListener {
  private readonly flows = new Map<string, Flow>();
  private readonly byCid = new Map<string, Flow>();
  private readonly cidLengths = new Set<number>();
  private readonly paths = new Map<string, Path>();
  private readonly pending = new PendingTable<Flow>({ entries: MAX_PENDING, perSource: MAX_PENDING_PER_SOURCE, bytesPerEntry: MAX_HELD_BYTES_PER_FLOW, bytesTotal: MAX_HELD_BYTES });
  private readonly perSource: SourceCounts;
  private readonly refusals = new RefusalMemory<Outcome>(REFUSALS_REMEMBERED, REFUSAL_MEMORY_MS);
  private readonly sweeper: ReturnType<typeof setInterval>;
  private readonly label: string;
  private readonly maxFlows: number;

  private constructor(
    private readonly socket: udp.Socket<"uint8array">,
    readonly cfg: QuicListenerConfig,
    private readonly rt: ListenerRuntime,
    private readonly ctx: Ctx,
  ) {
    this.label = `${cfg.addr}/quic`;
    this.maxFlows = cfg.maxFlows > 0 ? cfg.maxFlows : QUIC_DEFAULT_MAX_FLOWS;
    this.perSource = new SourceCounts(flowsPerSource(rt.connectionCap));
    this.sweeper = setInterval(() => this.sweep(), SWEEP_MS);
  }

  /** Bind the UDP address, retrying EADDRINUSE for `retryMs` (a takeover: the old process holds it until it hands over). */
  static async start(cfg: QuicListenerConfig, rt: ListenerRuntime, ctx: Ctx, bindHost: string, retryMs = 0): Promise<QuicListener> {
    const holder: { l: QuicListener | null } = { l: null };
    try {
      const socket = await bindRetrying(retryMs, () =>
        Bun.udpSocket({
          hostname: bindHost,
          port: cfg.bind.port,
          binaryType: "uint8array",
          socket: { data: (_s, d, port, addr) => holder.l?.onDatagram(d, port, addr) },
        }),
      );
      holder.l = new QuicListener(socket, cfg, rt, ctx);
      return holder.l;
    } catch (e) {
      throw new Error(`quic listener "${cfg.addr}": cannot bind UDP: ${(e as Error).message}`);
    }
  }

  get port(): number {
    return this.socket.port;
  }

  /** Flows open now (pending ones included). */
  get size(): number {
    return this.flows.size;
  }

  private onDatagram(d: Uint8Array, port: number, address: string): void {
    const ip = normaliseIp(address);
    const key = `${ip}|${port}`;
    const f = this.flows.get(key);
    if (f === undefined) {
      const p = this.paths.get(key);
      if (p !== undefined) return this.fromPathClient(p, d);
      const moved = this.movedFlow(d);
      if (moved !== null) return this.newPath(moved, d, key, ip, port);
      return this.newFlow(d, key, ip, port);
    }
    f.lastAt = Date.now();
    f.bytesFromClient += d.length;
    switch (f.state) {
      case "relaying":
        f.backend!.send(d);
        return;
      case "connecting":
        // A moment (the backend socket is being made): held within the flow's bound, the rest dropped (QUIC resends).
        if (f.heldBytes + d.length <= MAX_HELD_BYTES_PER_FLOW) {
          f.held.push(d.slice());
          f.heldBytes += d.length;
        }
        return;
      case "pending":
        return this.read(f, d);
    }
  }

  /** The routed flow whose learned server connection ID a short-header packet names, or null. */
  private movedFlow(d: Uint8Array): Flow | null {
    if (d.length < 2 || (d[0]! & 0xc0) !== 0x40) return null;
    for (const len of this.cidLengths) {
      if (1 + len > d.length) continue;
      const f = this.byCid.get(Buffer.from(d.subarray(1, 1 + len)).toString("hex"));
      if (f !== undefined && f.state === "relaying") return f;
    }
    return null;
  }

  /**
   * A new client address names flow f's connection ID: another path of f,
   * if the address passes what a new flow's would — the firewall and the
   * rate limit, ja4 rules, the route's allow/deny — and migration.ts's
   * bounds. Refusals are counted, not logged (anyone can send this packet).
   */
  private newPath(f: Flow, d: Uint8Array, key: string, ip: string, port: number): void {
    const fw = this.ctx.firewall;
    const verdict = fw.check(ip, this.ctx.wheel.now) ?? fw.checkJa4(f.ja4);
    if (verdict !== null) return this.refusePath(verdict);
    const route = this.rt.table.lookup(f.sni, f.alpn);
    if (route === null || !route.admits(ip)) return this.refusePath("route_denied");
    const now = Date.now();
    const decision = newPathDecision(
      f.paths.map((p) => p.lastAt),
      f.pathOpenedAt,
      now,
    );
    if (decision.kind === "refuse") return this.refusePath("over_capacity");
    const src = sourceKey(ip);
    if (!this.perSource.take(src)) return this.refusePath("over_capacity");
    // Its backend socket is a descriptor: a place of the process's connection cap, as for the flow's first.
    if (!this.rt.takePlace(this.ctx.workerId)) {
      this.perSource.give(src);
      return this.refusePath("over_capacity");
    }
    if (decision.kind === "replace") this.closePath(f.paths[decision.index]!);
    const p: Path = { key, ip, port, src, flow: f, backend: null, held: [d.slice()], heldBytes: d.length, lastAt: now, closed: false };
    f.paths.push(p);
    f.pathOpenedAt = now;
    f.lastAt = now;
    f.bytesFromClient += d.length;
    this.paths.set(key, p);
    this.ctx.logger.debug("quic path opened", { id: f.id, client: `${ip}:${port}`, paths: 1 + f.paths.length });
    void this.connectPath(p, f.backendAddr!);
  }

  /** A path refused: one accepted and one closed with its outcome, as a new flow refused at once (a path that opens is part of its flow, counted once). */
  private refusePath(outcome: Outcome): void {
    this.rt.stats.accepted++;
    this.count(outcome);
  }

  private fromPathClient(p: Path, d: Uint8Array): void {
    const f = p.flow;
    p.lastAt = f.lastAt = Date.now();
    f.bytesFromClient += d.length;
    if (p.backend !== null) p.backend.send(d);
    else if (p.heldBytes + d.length <= MAX_HELD_BYTES_PER_FLOW) {
      p.held.push(d.slice());
      p.heldBytes += d.length;
    }
  }

  private async connectPath(p: Path, addr: string): Promise<void> {
    try {
      const s = await this.backendSocket(addr, (d) => this.fromBackend(p.flow, d, p));
      if (p.closed) return s.close();
      p.backend = s;
      s.sendMany(p.held);
      p.held = [];
    } catch (e) {
      this.ctx.logger.debug("quic backend socket failed", { id: p.flow.id, backend: addr, error: (e as Error).message });
      this.closePath(p);
    }
  }

  private closePath(p: Path): void {
    if (p.closed) return;
    p.closed = true;
    p.held = [];
    this.paths.delete(p.key);
    const ps = p.flow.paths;
    ps.splice(ps.indexOf(p), 1);
    p.backend?.close();
    p.backend = null;
    this.perSource.give(p.src);
    this.rt.givePlace(this.ctx.workerId);
  }

  /** A connected UDP socket to the backend at addr ("host:port"), handing its datagrams to onData. */
  private backendSocket(addr: string, onData: (d: Uint8Array) => void): Promise<udp.ConnectedSocket<"uint8array">> {
    const colon = addr.lastIndexOf(":");
    const host = addr.slice(0, colon).replace(/^\[|\]$/g, "");
    const port = Number(addr.slice(colon + 1));
    return Bun.udpSocket({
      binaryType: "uint8array",
      connect: { hostname: host, port },
      socket: {
        data: (_s, d) => onData(d),
        error: () => {},
      },
    });
  }

  private newFlow(d: Uint8Array, key: string, ip: string, port: number): void {
    // Every first datagram from a new address is one accepted, as a TCP connection is: each ends counted in closed.
    this.rt.stats.accepted++;
    // Stray short-header packets and other non-Initials open nothing (cheap tests first).
    if (d.length < 1200 || (d[0]! & 0xc0) !== 0xc0) return this.count("not_quic");
    if (d.length > MAX_HELD_BYTES_PER_FLOW) return this.count("too_large");
    const ids = longHeaderIds(d, 0);
    if ("bad" in ids) return this.count("not_quic");
    const verdict = this.ctx.firewall.check(ip, this.ctx.wheel.now);
    if (verdict !== null) return this.count(verdict);
    // A copy of an Initial refused a moment ago (a retransmission): counted again, not read again.
    const refusalKey = `${ip}|${Buffer.from(ids.dcid).toString("hex")}`;
    const now = Date.now();
    const refused = this.refusals.repeat(refusalKey, now);
    if (refused !== null) return this.count(refused);
    const src = sourceKey(ip);
    if (this.flows.size >= this.maxFlows || this.perSource.count(src) >= this.perSource.max) return this.count("over_capacity");
    const f: Flow = {
      key,
      src,
      startAt: now,
      refusalKey,
      state: "pending",
      reader: new QuicHelloReader(Math.min(this.ctx.proxy.maxHelloBytes, MAX_QUIC_HELLO_BYTES), MAX_PENDING_DATAGRAMS),
      held: [],
      heldBytes: 0,
      backend: null,
      route: null,
      backendIndex: -1,
      holdsRoute: false,
      holdsPlace: false,
      lastAt: now,
      cids: [],
      paths: [],
      pathOpenedAt: Number.NEGATIVE_INFINITY,
      id: connectionId(nextSeq()),
      tries: 0,
      listener: { addr: this.label },
      clientIp: ip,
      clientPort: port,
      peerIp: "",
      peerPort: 0,
      sni: null,
      alpn: [],
      ja4: "",
      routeName: "",
      backendAddr: null,
      bytesFromClient: d.length,
      bytesFromBackend: 0,
      closedBy: null,
      acceptedAt: performance.now(),
      helloAt: 0,
      connectStartAt: 0,
      connectedAt: 0,
    };
    // A full table makes room by evicting its oldest flows (pending_table.ts); a source past its share is refused.
    const evicted = this.pending.add(key, src, f, now);
    if (evicted === null) return this.count("over_capacity");
    for (const e of evicted) this.dropCounted(e, "over_capacity");
    this.perSource.take(src);
    this.flows.set(key, f);
    this.read(f, d);
  }

  private read(f: Flow, d: Uint8Array): void {
    // The deadline counts from the first datagram: a hello trickled in does not restart it.
    if (Date.now() - f.startAt > this.helloDeadlineMs) return this.dropCounted(f, "hello_timeout");
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
    f.helloAt = performance.now();
    const hello = r.hello;
    f.alpn = hello.alpn;
    if (hello.kind === "hostname") f.sni = hello.hostname;
    const fw = this.ctx.firewall;
    if (this.ctx.ja4 || fw.hasJa4Rules) f.ja4 = ja4(hello.buf, hello.start, hello.length, "q");
    const verdict = fw.checkJa4(f.ja4);
    this.ctx.fingerprints?.record(f.ja4, Date.now(), verdict !== null, networkHash(f.clientIp));
    if (verdict !== null) return this.refuse(f, verdict);
    const route = this.rt.table.lookup(f.sni, f.alpn);
    if (route === null) return this.refuse(f, f.sni === null ? "no_sni" : "no_route");
    f.route = route;
    f.routeName = route.hostname === "" ? DEFAULT_ROUTE_LABEL : route.name;
    const refused = route.enter(f.clientIp, this.ctx.workerId);
    if (refused !== null) return this.refuse(f, refused);
    f.holdsRoute = true;
    const i = route.pick(f.clientIp, 0, this.ctx.wheel.nowSec);
    if (i < 0) return this.refuse(f, "no_backend");
    // Its backend socket is a descriptor: a place of the process's connection cap, as a TCP connection takes (host_limits.ts).
    if (!this.rt.takePlace(this.ctx.workerId)) return this.refuse(f, "over_capacity");
    f.holdsPlace = true;
    f.backendIndex = i;
    f.tries = 1;
    f.backendAddr = route.addr(i);
    this.ctx.backends.take(route.ref(i), this.ctx.workerId);
    void this.connect(f, route.addr(i));
  }

  private async connect(f: Flow, addr: string): Promise<void> {
    f.state = "connecting";
    f.connectStartAt = performance.now();
    try {
      const s = await this.backendSocket(addr, (d) => this.fromBackend(f, d, null));
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

  /** A datagram from the backend socket of flow f's first address (path null) or of one of its paths: to that address only. */
  private fromBackend(f: Flow, d: Uint8Array, path: Path | null): void {
    if (f.state === "ended") return;
    f.lastAt = Date.now();
    f.bytesFromBackend += d.length;
    // Learn the server's connection IDs from its long headers: the IDs are not encrypted (RFC 9000 §17.2), so no key is needed.
    if ((d[0]! & 0x80) !== 0) {
      const ids = longHeaderIds(d, 0);
      if (!("bad" in ids) && ids.version !== 0 && ids.scid.length > 0) this.learn(f, Buffer.from(ids.scid).toString("hex"), ids.scid.length);
    }
    if (path === null) this.socket.send(d, f.clientPort, f.clientIp);
    else this.socket.send(d, path.port, path.ip);
  }

  private learn(f: Flow, cid: string, len: number): void {
    if (f.cids.includes(cid) || f.cids.length >= 8) return;
    f.cids.push(cid);
    this.byCid.set(cid, f);
    this.cidLengths.add(len);
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
    this.unpend(f);
    this.perSource.give(f.src);
    f.held = [];
    f.state = "ended";
  }

  /** Drop a pending flow, its outcome counted. */
  private dropCounted(f: Flow, outcome: Outcome): void {
    this.drop(f);
    this.count(outcome);
  }

  /** End a flow refused after its hello, with its record; its Initial's copies are then counted, not read (refusal_memory.ts). */
  private refuse(f: Flow, outcome: Outcome): void {
    const pushed = this.refusals.remember(f.refusalKey, outcome, Date.now());
    if (pushed !== null) this.logRepeats(pushed);
    this.end(f, outcome);
  }

  private logRepeats(r: Refusal<Outcome>): void {
    if (r.repeats === 0) return;
    const bar = r.key.lastIndexOf("|");
    this.ctx.logger.info("quic refusal repeated", { client: r.key.slice(0, bar), dcid: r.key.slice(bar + 1), outcome: r.outcome, repeats: r.repeats });
  }

  /** Drops before a flow exists: counted in the listener's outcomes, not logged. */
  private count(outcome: Outcome): void {
    this.rt.stats.closed[OUTCOME_INDEX[outcome]]!++;
  }

  /** End a flow: its backend socket, its route and backend counts, its record. */
  private end(f: Flow, outcome: Outcome): void {
    if (f.state === "ended") return;
    this.unpend(f);
    f.state = "ended";
    f.held = [];
    this.flows.delete(f.key);
    this.perSource.give(f.src);
    for (const c of f.cids) this.byCid.delete(c);
    for (const p of [...f.paths]) this.closePath(p);
    f.backend?.close();
    f.backend = null;
    if (f.route !== null && f.backendIndex >= 0) this.ctx.backends.give(f.route.ref(f.backendIndex), this.ctx.workerId);
    if (f.holdsRoute) f.route!.leave(this.ctx.workerId);
    if (f.holdsPlace) this.rt.givePlace(this.ctx.workerId);
    f.closedBy ??= "proxy";
    const ls = this.rt.stats;
    ls.closed[OUTCOME_INDEX[outcome]]!++;
    const rs = f.routeName === "" ? ls.none : ls.route(f.routeName);
    rs.bytesFromClient += f.bytesFromClient;
    rs.bytesToClient += f.bytesFromBackend;
    if (this.ctx.logger.enabled("info")) writeAccessRecord(this.ctx.logger, this.ctx.workerId, this.ctx.generation, f, outcome);
  }

  /** The QUIC hello deadline in force: QUIC_HELLO_DEADLINE_MS, or hello_timeout if shorter. */
  private get helloDeadlineMs(): number {
    return Math.min(this.ctx.proxy.helloTimeoutMs, QUIC_HELLO_DEADLINE_MS);
  }

  /**
   * Pending flows past the hello deadline are dropped; flows quiet past
   * quic_idle_timeout end, and so do the paths of a flow whose clients went
   * quiet that long; refusals are forgotten after REFUSAL_MEMORY_MS.
   */
  private sweep(): void {
    const now = Date.now();
    for (const f of this.pending.expire(now - this.helloDeadlineMs)) this.dropCounted(f, "hello_timeout");
    const idle = this.ctx.proxy.quicIdleTimeoutMs;
    for (const f of [...this.flows.values()]) {
      if (f.state === "pending") continue;
      // QUIC's own close is encrypted: a flow ends when it goes quiet, as its endpoints' idle timers end it.
      if (now - f.lastAt > idle) this.end(f, "ok");
      else for (const p of [...f.paths]) if (now - p.lastAt > idle) this.closePath(p);
    }
    for (const r of this.refusals.expire(now)) this.logRepeats(r);
  }

  /** Stop receiving; end every flow (a drain cannot wait on QUIC: its close is invisible here). */
  close(): void {
    clearInterval(this.sweeper);
    this.socket.close();
    for (const f of [...this.flows.values()]) {
      if (f.state === "pending") this.drop(f);
      else this.end(f, "shutdown");
    }
  }
}
