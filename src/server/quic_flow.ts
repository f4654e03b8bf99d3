// What a QUIC listener (quic_listener.ts) keeps of one flow — a client
// address and port, from its first Initial to its end — and of each path a
// routed flow moved to (RFC 9000 §9), with the bounds they are held to.

import type { QuicHelloReader } from "../quic/hello_reader";
import type { Timed } from "../relay/deadline_wheel";
import type { SlotRef } from "../routing/backend_table";
import type { RoutePool } from "../routing/pool";
import type { RouteTable } from "../routing/route_table";
import type { AccessFacts } from "./access_record";
import { connectionId, nextSeq } from "./connection_id";
import type { RouteStats } from "./stats";

export const MAX_PENDING = 1024;
export const MAX_PENDING_PER_SOURCE = 8;
export const MAX_PENDING_DATAGRAMS = 16;
/**
 * Bytes of datagrams one flow holds before it is routed: 16 datagrams of 1,536 bytes (clients send Initials of
 * 1,200–1,500).
 */
export const MAX_HELD_BYTES_PER_FLOW = 24 * 1024;
/** Bytes every pending flow holds together: past it the oldest are evicted. */
export const MAX_HELD_BYTES = 8 * 1024 * 1024;
/**
 * A QUIC hello is whole within this long of its first datagram (or hello_timeout, if shorter): a client sends it
 * in one flight and, lost, again after a probe timeout (RFC 9002 §6.2: about 1 s at first).
 */
export const QUIC_HELLO_DEADLINE_MS = 3000;
/** Refused hellos remembered (by address and connection ID), and for how long. */
export const REFUSALS_REMEMBERED = 4096;
export const REFUSAL_MEMORY_MS = 10_000;
/** A QUIC ClientHello's CRYPTO data at most (a post-quantum Chromium hello is about 1.8 KB). */
export const MAX_QUIC_HELLO_BYTES = 16384;
/** Server connection IDs learned per flow at most. */
export const MAX_CIDS_PER_FLOW = 8;

/** A connected UDP socket to one backend (quic_listener.ts's seam: Bun's, or a unit test's fake). */
export interface BackendDatagrams {
  send(d: Uint8Array): unknown;
  sendMany(ds: readonly Uint8Array[]): unknown;
  close(): void;
}

/**
 * Makes a flow's backend socket to ip (an IP literal, checked by the destination guard: quic_backend.ts) and port,
 * handing its datagrams to onData.
 */
export type BackendDatagramConnector = (
  ip: string,
  port: number,
  onData: (d: Uint8Array) => void,
) => Promise<BackendDatagrams>;

/** An entry of the event loop's deadline wheel (relay/deadline_wheel.ts) with what to do when it is due. */
export interface Expiring extends Timed {
  expire(): void;
}

/**
 * A client address a routed flow moved to (quic/migration.ts), with a backend socket of its own; on the wheel by its
 * idle deadline.
 */
export interface Path extends Expiring {
  readonly key: string;
  readonly ip: string;
  readonly port: number;
  readonly src: string;
  readonly flow: Flow;
  backend: BackendDatagrams | null;
  held: Uint8Array[];
  heldBytes: number;
  /** The last datagram from its client, on the wheel's clock. */
  lastAt: number;
  closed: boolean;
}

/** A flow, on the wheel by its hello deadline while pending, then by its idle deadline. */
export interface Flow extends AccessFacts, Expiring {
  key: string;
  /** The source it counts against (quic/sources.ts sourceKey). */
  src: string;
  /** The first datagram (the hello deadline counts from it). */
  startAt: number;
  /** The refusal memory's key: address and the first Initial's Destination Connection ID. */
  refusalKey: string;
  state: "pending" | "connecting" | "relaying" | "ended";
  reader: QuicHelloReader | null;
  held: Uint8Array[];
  heldBytes: number;
  backend: BackendDatagrams | null;
  route: RoutePool | null;
  /** The route's counters, once routed (session.ts). */
  routeStats: RouteStats | null;
  backendIndex: number;
  /** Its backend's slot in the shared table, once picked (drain_timeout reads its state: quic_established.ts). */
  backendSlot: SlotRef | null;
  /** The IP literal and port its backend socket is connected to, checked by the destination guard; its paths' too. */
  backendIp: string;
  backendPort: number;
  holdsRoute: boolean;
  /** A place of the process's budget (ListenerRuntime.takePlace), from its backend socket on. */
  holdsPlace: boolean;
  /**
   * Its first Initial's Destination Connection ID (hex): with cids, what its client's long headers name
   * (quic/new_connection.ts).
   */
  dcid: string;
  /** The server's connection IDs (hex), learned from its long headers. */
  cids: string[];
  /** Client addresses besides the first, each its own path to the backend. */
  paths: Path[];
  /** When the last of them was opened. */
  pathOpenedAt: number;
  // AccessFacts, writable here.
  readonly listener: FlowListener;
  id: string;
  tries: number;
  clientIp: string;
  clientPort: number;
  sni: string | null;
  alpn: readonly string[];
  ja4: string;
  routeName: string;
  backendAddr: string | null;
  resolved: string | null;
  bytesFromClient: number;
  bytesFromBackend: number;
  closedBy: string | null;
  helloAt: number;
  connectStartAt: number;
  connectedAt: number;
}

/** What a flow knows of its listener: its label (the access record), its index and routes (drain_timeout). */
export interface FlowListener {
  readonly label: string;
  readonly index: number;
  readonly table: Pick<RouteTable, "find">;
}

/**
 * A flow's first datagram (`bytes` long, its Initial's Destination
 * Connection ID `dcid` in hex) from ip:port, pending its hello until
 * `deadline` (wheel clock); `expire` runs when the wheel finds it due.
 */
export function pendingFlow(
  listener: FlowListener,
  at: {
    key: string;
    src: string;
    dcid: string;
    ip: string;
    port: number;
    bytes: number;
    now: number;
    deadline: number;
  },
  reader: QuicHelloReader,
  expire: (f: Flow) => void,
): Flow {
  const { key, src, dcid, ip, port, bytes, now } = at;
  return {
    deadline: at.deadline,
    wheelSlot: null,
    expire() {
      expire(this);
    },
    key,
    src,
    startAt: now,
    refusalKey: `${ip}|${dcid}`,
    state: "pending",
    reader,
    held: [],
    heldBytes: 0,
    backend: null,
    route: null,
    routeStats: null,
    backendIndex: -1,
    backendSlot: null,
    backendIp: "",
    backendPort: 0,
    holdsRoute: false,
    holdsPlace: false,
    dcid,
    cids: [],
    paths: [],
    pathOpenedAt: Number.NEGATIVE_INFINITY,
    id: connectionId(nextSeq()),
    tries: 0,
    listener,
    clientIp: ip,
    clientPort: port,
    peerIp: "",
    peerPort: 0,
    sni: null,
    alpn: [],
    ja4: "",
    routeName: "",
    backendAddr: null,
    resolved: null,
    bytesFromClient: bytes,
    bytesFromBackend: 0,
    closedBy: null,
    acceptedAt: performance.now(),
    helloAt: 0,
    connectStartAt: 0,
    connectedAt: 0,
  };
}
