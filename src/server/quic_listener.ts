// A UDP listener that routes QUIC by the server name in its Initial packets
// (quic/hello_reader.ts) and relays every datagram unchanged: nothing is
// terminated, nothing rewritten. The UDP shell around the pure reader.
//
// A flow is a client address and port. Its first datagram passes the global
// firewall (address rules and the rate limit: one "connection" per flow)
// before any decryption; then its datagrams are read until the ClientHello
// is whole — at most MAX_PENDING_DATAGRAMS of them, within hello_timeout,
// with at most MAX_PENDING_PER_SOURCE pending flows per client address and
// MAX_PENDING in all, so a flood of spoofed Initials costs a bounded amount
// of memory and one key derivation and decryption each. Then the flow is
// routed like a TCP connection (ja4 rules, the route's policy and limits, a
// backend from its pool), a connected UDP socket per flow carries its
// datagrams to the backend — the buffered ones first — and the backend's
// replies go back to the client from the listener's address.
//
// The server's connection IDs (the Source Connection ID of its long-header
// packets) are learned, so a short-header packet from a new client address
// (NAT rebinding, migration: RFC 9000 §9) that names one reaches the same
// flow, which then follows the client's new address.
//
// A flow ends after quic_idle_timeout without a datagram either way (QUIC's
// own close is encrypted), with an access record; refusals after the hello
// are recorded too; datagrams dropped before a hello (not QUIC, blocked
// addresses, a flood) are counted, not logged one by one.

import type { udp } from "bun";
import type { QuicListenerConfig } from "../config/types";
import { networkHash, normaliseIp } from "../net/ip";
import { longHeaderIds } from "../quic/packet";
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
/** A QUIC ClientHello's CRYPTO data at most (a post-quantum Chromium hello is about 1.8 KB). */
export const MAX_QUIC_HELLO_BYTES = 16384;
const SWEEP_MS = 1000;

/** What a QUIC listener uses of its event loop's context. */
type Ctx = Pick<LoopContext<Timed, unknown>, "proxy" | "firewall" | "logger" | "workerId" | "generation" | "backends" | "ja4" | "fingerprints"> & {
  /** The loop's coarse clock (the deadline wheel's). */
  readonly wheel: { readonly now: number; readonly nowSec: number };
};

interface Flow extends AccessFacts {
  key: string;
  state: "pending" | "connecting" | "relaying" | "ended";
  reader: QuicHelloReader | null;
  held: Uint8Array[];
  backend: udp.ConnectedSocket<"uint8array"> | null;
  route: RoutePool | null;
  backendIndex: number;
  holdsRoute: boolean;
  lastAt: number;
  cids: string[];
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
  private readonly pendingBySource = new Map<string, number>();
  private pending = 0;
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
    let f = this.flows.get(key);
    if (f === undefined) {
      f = this.migrated(d, key, ip, port) ?? undefined;
      if (f === undefined) return this.newFlow(d, key, ip, port);
    }
    f.lastAt = Date.now();
    f.bytesFromClient += d.length;
    switch (f.state) {
      case "relaying":
        f.backend!.send(d);
        return;
      case "connecting":
        if (f.held.length < MAX_PENDING_DATAGRAMS * 2) f.held.push(d.slice());
        return;
      case "pending":
        return this.read(f, d);
    }
  }

  /** A short-header packet from an unknown address that names a server connection ID we learned: the client moved. */
  private migrated(d: Uint8Array, key: string, ip: string, port: number): Flow | null {
    if (d.length < 2 || (d[0]! & 0xc0) !== 0x40) return null;
    for (const len of this.cidLengths) {
      if (1 + len > d.length) continue;
      const f = this.byCid.get(Buffer.from(d.subarray(1, 1 + len)).toString("hex"));
      if (f === undefined || f.state !== "relaying") continue;
      this.flows.delete(f.key);
      f.key = key;
      f.clientIp = ip;
      f.clientPort = port;
      this.flows.set(key, f);
      this.ctx.logger.debug("quic flow migrated", { id: f.id, client: `${ip}:${port}` });
      return f;
    }
    return null;
  }

  private newFlow(d: Uint8Array, key: string, ip: string, port: number): void {
    // Stray short-header packets and other non-Initials open nothing (cheap test first).
    if (d.length < 1200 || (d[0]! & 0xc0) !== 0xc0) return this.count("not_quic");
    const verdict = this.ctx.firewall.check(ip, this.ctx.wheel.now);
    if (verdict !== null) return this.count(verdict);
    const perSource = this.pendingBySource.get(ip) ?? 0;
    if (this.pending >= MAX_PENDING || perSource >= MAX_PENDING_PER_SOURCE || this.flows.size >= this.maxFlows) return this.count("over_capacity");
    const f: Flow = {
      key,
      state: "pending",
      reader: new QuicHelloReader(Math.min(this.ctx.proxy.maxHelloBytes, MAX_QUIC_HELLO_BYTES), MAX_PENDING_DATAGRAMS),
      held: [],
      backend: null,
      route: null,
      backendIndex: -1,
      holdsRoute: false,
      lastAt: Date.now(),
      cids: [],
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
    this.flows.set(key, f);
    this.pending++;
    this.pendingBySource.set(ip, perSource + 1);
    this.read(f, d);
  }

  private read(f: Flow, d: Uint8Array): void {
    const r = f.reader!.feed(d);
    if (r.kind === "more") {
      f.held.push(d.slice());
      return;
    }
    if (r.kind === "reject") {
      // Not a client we could read: dropped, counted (a flood is not logged datagram by datagram).
      this.drop(f);
      return this.count(r.outcome);
    }
    this.unpend(f);
    f.held.push(d.slice());
    f.helloAt = performance.now();
    const hello = r.hello;
    f.alpn = hello.alpn;
    if (hello.kind === "hostname") f.sni = hello.hostname;
    const fw = this.ctx.firewall;
    if (this.ctx.ja4 || fw.hasJa4Rules) f.ja4 = ja4(hello.buf, hello.start, hello.length, "q");
    const verdict = fw.checkJa4(f.ja4);
    this.ctx.fingerprints?.record(f.ja4, Date.now(), verdict !== null, networkHash(f.clientIp));
    if (verdict !== null) return this.end(f, verdict);
    const route = this.rt.table.lookup(f.sni, f.alpn);
    if (route === null) return this.end(f, f.sni === null ? "no_sni" : "no_route");
    f.route = route;
    f.routeName = route.hostname === "" ? DEFAULT_ROUTE_LABEL : route.name;
    const refused = route.enter(f.clientIp, this.ctx.workerId);
    if (refused !== null) return this.end(f, refused);
    f.holdsRoute = true;
    const i = route.pick(f.clientIp, 0, this.ctx.wheel.nowSec);
    if (i < 0) return this.end(f, "no_backend");
    f.backendIndex = i;
    f.tries = 1;
    f.backendAddr = route.addr(i);
    this.ctx.backends.take(route.ref(i), this.ctx.workerId);
    void this.connect(f, route.addr(i));
  }

  private async connect(f: Flow, addr: string): Promise<void> {
    f.state = "connecting";
    f.connectStartAt = performance.now();
    const colon = addr.lastIndexOf(":");
    const host = addr.slice(0, colon).replace(/^\[|\]$/g, "");
    const port = Number(addr.slice(colon + 1));
    try {
      const s = await Bun.udpSocket({
        binaryType: "uint8array",
        connect: { hostname: host, port },
        socket: {
          data: (_s, d) => this.fromBackend(f, d),
          error: () => {},
        },
      });
      // The flow may have ended (shutdown) while the socket was being made.
      if ((f.state as Flow["state"]) === "ended") return s.close();
      f.backend = s;
      f.connectedAt = performance.now();
      f.state = "relaying";
      s.sendMany(f.held);
      f.held = [];
    } catch (e) {
      this.ctx.logger.debug("quic backend socket failed", { id: f.id, backend: addr, error: (e as Error).message });
      this.end(f, "connect_failed");
    }
  }

  private fromBackend(f: Flow, d: Uint8Array): void {
    if (f.state === "ended") return;
    f.lastAt = Date.now();
    f.bytesFromBackend += d.length;
    // Learn the server's connection IDs from its long headers: the IDs are not encrypted (RFC 9000 §17.2), so no key is needed.
    if ((d[0]! & 0x80) !== 0) {
      const ids = longHeaderIds(d, 0);
      if (!("bad" in ids) && ids.version !== 0 && ids.scid.length > 0) this.learn(f, Buffer.from(ids.scid).toString("hex"), ids.scid.length);
    }
    this.socket.send(d, f.clientPort, f.clientIp);
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
    this.pending--;
    const n = (this.pendingBySource.get(f.clientIp) ?? 1) - 1;
    if (n <= 0) this.pendingBySource.delete(f.clientIp);
    else this.pendingBySource.set(f.clientIp, n);
  }

  /** Forget a flow that never got its hello: no backend, no record. */
  private drop(f: Flow): void {
    this.flows.delete(f.key);
    this.unpend(f);
    f.state = "ended";
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
    for (const c of f.cids) this.byCid.delete(c);
    f.backend?.close();
    f.backend = null;
    if (f.route !== null && f.backendIndex >= 0) this.ctx.backends.give(f.route.ref(f.backendIndex), this.ctx.workerId);
    if (f.holdsRoute) f.route!.leave(this.ctx.workerId);
    f.closedBy ??= "proxy";
    const ls = this.rt.stats;
    ls.closed[OUTCOME_INDEX[outcome]]!++;
    const rs = f.routeName === "" ? ls.none : ls.route(f.routeName);
    rs.bytesFromClient += f.bytesFromClient;
    rs.bytesToClient += f.bytesFromBackend;
    if (this.ctx.logger.enabled("info")) writeAccessRecord(this.ctx.logger, this.ctx.workerId, this.ctx.generation, f, outcome);
  }

  /** Pending flows past hello_timeout and quiet flows past quic_idle_timeout end. */
  private sweep(): void {
    const now = Date.now();
    for (const f of [...this.flows.values()]) {
      if (f.state === "pending" && now - f.lastAt > this.ctx.proxy.helloTimeoutMs) {
        this.drop(f);
        this.count("hello_timeout");
      } else if (f.state !== "pending" && now - f.lastAt > this.ctx.proxy.quicIdleTimeoutMs) {
        // QUIC's own close is encrypted: a flow ends when it goes quiet, as its endpoints' idle timers end it.
        this.end(f, "ok");
      }
    }
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
