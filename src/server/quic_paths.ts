// The paths of a QUIC listener's routed flows: clients that move (NAT
// rebinding, migration: RFC 9000 §9). The server's connection IDs are
// learned from its long headers (their IDs are not encrypted, §17.2); a
// short-header packet from a new client address that names one opens
// another path of that flow if the address passes what a new flow's would
// (admission.ts pathVerdict: the firewall, the rate limit, ja4 rules, the
// route's allow/deny), within quic/migration.ts's bounds: a backend socket
// of its own, so the backend sees the move and validates the path (§9.3),
// to the flow's backend address as its dial checked it (nothing is resolved
// again: quic_backend.ts), and each path's replies go to its own address only. A path silent for
// quic_idle_timeout is closed (the event loop's deadline wheel).

import { formatHostPort } from "../net/host_port";
import { newPathDecision } from "../quic/migration";
import { opensNewConnection } from "../quic/new_connection";
import { longHeaderIds } from "../quic/packet";
import type { SourceCounts } from "../quic/sources";
import { sourceKey } from "../quic/sources";
import type { DeadlineWheel } from "../relay/deadline_wheel";
import { pathVerdict } from "./admission";
import type { ListenerRuntime } from "./listener_runtime";
import type { LoopContext } from "./loop_context";
import {
  type BackendDatagramConnector,
  type Expiring,
  type Flow,
  MAX_CIDS_PER_FLOW,
  MAX_HELD_BYTES_PER_FLOW,
  type Path,
} from "./quic_flow";
import type { Outcome } from "./stats";

/** What the paths use of their QUIC listener's event loop. */
export type PathContext = Pick<
  LoopContext<Expiring, unknown>,
  "proxy" | "firewall" | "logger" | "workerId" | "backends" | "ja4" | "fingerprints"
> & {
  readonly wheel: Pick<DeadlineWheel<Expiring>, "now" | "nowSec" | "after" | "schedule" | "cancel">;
};

/** What the paths need of their listener. */
export interface PathOwner {
  readonly ctx: PathContext;
  readonly rt: ListenerRuntime;
  readonly perSource: SourceCounts;
  readonly connectBackend: BackendDatagramConnector;
  /** A refused path or new connection: counted as a new flow refused at once. */
  refusePath(outcome: Outcome): void;
  /** A datagram of the backend's to the client at ip:port, from the listener's address. */
  toClient(d: Uint8Array, port: number, ip: string): void;
}

export class QuicPaths {
  private readonly byCid = new Map<string, Flow>();
  private readonly cidLengths = new Set<number>();
  private readonly paths = new Map<string, Path>();

  constructor(private readonly o: PathOwner) {}

  /** The path whose client is at `key` ("ip|port"), if any. */
  get(key: string): Path | undefined {
    return this.paths.get(key);
  }

  /** The routed flow whose learned server connection ID a short-header packet names, or null. */
  movedFlow(d: Uint8Array): Flow | null {
    if (d.length < 2 || (d[0]! & 0xc0) !== 0x40) return null;
    for (const len of this.cidLengths) {
      if (1 + len > d.length) continue;
      const f = this.byCid.get(Buffer.from(d.subarray(1, 1 + len)).toString("hex"));
      if (f !== undefined && f.state === "relaying") return f;
    }
    return null;
  }

  /** Learn the server's connection ID from one of its long headers to flow f (no key is needed). */
  learn(f: Flow, d: Uint8Array): void {
    if ((d[0]! & 0x80) === 0) return;
    const ids = longHeaderIds(d, 0);
    if ("bad" in ids || ids.version === 0 || ids.scid.length === 0) return;
    const cid = Buffer.from(ids.scid).toString("hex");
    if (f.cids.includes(cid) || f.cids.length >= MAX_CIDS_PER_FLOW) return;
    f.cids.push(cid);
    this.byCid.set(cid, f);
    this.cidLengths.add(ids.scid.length);
  }

  /**
   * A new client address names flow f's connection ID: another path of f,
   * if the address passes what a new flow's would and migration.ts's
   * bounds. Refusals are counted, not logged (anyone can send this packet).
   */
  open(f: Flow, d: Uint8Array, key: string, ip: string, port: number): void {
    const { ctx, rt } = this.o;
    const verdict = pathVerdict(ctx, rt.table, ip, f);
    if (verdict !== null) return this.o.refusePath(verdict);
    // The wheel's clock (a tick's precision): what fromClient stamps each path with.
    const now = ctx.wheel.now;
    const decision = newPathDecision(
      f.paths.map((p) => p.lastAt),
      f.pathOpenedAt,
      now,
    );
    if (decision.kind === "refuse") return this.o.refusePath("over_capacity");
    const src = sourceKey(ip);
    if (!this.o.perSource.take(src)) return this.o.refusePath("over_capacity");
    // Its backend socket is a descriptor: a place of the process's connection cap, as for the flow's first.
    if (!rt.takePlace(ctx.workerId)) {
      this.o.perSource.give(src);
      return this.o.refusePath("over_capacity");
    }
    if (decision.kind === "replace") this.close(f.paths[decision.index]!);
    const idle = ctx.proxy.quicIdleTimeoutMs;
    const p: Path = {
      key,
      ip,
      port,
      src,
      flow: f,
      backend: null,
      held: [d.slice()],
      heldBytes: d.length,
      lastAt: now,
      closed: false,
      deadline: ctx.wheel.after(idle),
      wheelSlot: null,
      expire: () => this.close(p),
    };
    f.paths.push(p);
    f.pathOpenedAt = now;
    f.deadline = p.deadline;
    f.bytesFromClient += d.length;
    this.paths.set(key, p);
    ctx.wheel.schedule(p);
    ctx.logger.debug("quic path opened", { id: f.id, client: `${ip}:${port}`, paths: 1 + f.paths.length });
    void this.connect(p);
  }

  /** A datagram from a path's client: to its backend socket (held while it is being made). */
  fromClient(p: Path, d: Uint8Array): void {
    const f = p.flow;
    if ((d[0]! & 0x80) !== 0 && opensNewConnection(d, f.dcid, f.cids)) return this.o.refusePath("quic_new_connection");
    p.lastAt = this.o.ctx.wheel.now;
    p.deadline = f.deadline = this.o.ctx.wheel.after(this.o.ctx.proxy.quicIdleTimeoutMs);
    f.bytesFromClient += d.length;
    if (p.backend !== null) p.backend.send(d);
    else if (p.heldBytes + d.length <= MAX_HELD_BYTES_PER_FLOW) {
      p.held.push(d.slice());
      p.heldBytes += d.length;
    }
  }

  /** The path's backend socket, to the address the flow's dial checked (an IP literal). */
  private async connect(p: Path): Promise<void> {
    const f = p.flow;
    try {
      const s = await this.o.connectBackend(f.backendIp, f.backendPort, (d) => this.fromBackend(p, d));
      if (p.closed) return s.close();
      p.backend = s;
      s.sendMany(p.held);
      p.held = [];
    } catch (e) {
      this.o.ctx.logger.debug("quic backend socket failed", {
        id: p.flow.id,
        backend: formatHostPort(f.backendIp, f.backendPort),
        error: (e as Error).message,
      });
      this.close(p);
    }
  }

  /** A datagram from a path's backend socket: to that path's client only. */
  private fromBackend(p: Path, d: Uint8Array): void {
    const f = p.flow;
    if (f.state === "ended" || p.closed) return;
    f.deadline = this.o.ctx.wheel.after(this.o.ctx.proxy.quicIdleTimeoutMs);
    f.bytesFromBackend += d.length;
    this.learn(f, d);
    this.o.toClient(d, p.port, p.ip);
  }

  close(p: Path): void {
    if (p.closed) return;
    p.closed = true;
    p.held = [];
    this.o.ctx.wheel.cancel(p);
    this.paths.delete(p.key);
    const ps = p.flow.paths;
    ps.splice(ps.indexOf(p), 1);
    p.backend?.close();
    p.backend = null;
    this.o.perSource.give(p.src);
    this.o.rt.givePlace(this.o.ctx.workerId);
  }

  /** A flow ended: its paths closed, its connection IDs forgotten. */
  forget(f: Flow): void {
    for (const c of f.cids) this.byCid.delete(c);
    for (const p of [...f.paths]) this.close(p);
  }
}
