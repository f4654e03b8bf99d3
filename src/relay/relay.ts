// The byte pump between a client and its backend (docs/SPEC.md §6).
//
// Bun's socket.write() does not queue: it returns how many bytes the kernel
// took (docs/BUN-NOTES.md). What it did not take is kept here, reading from the other
// side is paused, and the rest is written on `drain`; so at most one chunk per
// direction is ever held, whatever the speed difference of the peers.
//
// EOF is propagated with shutdown() (a FIN, still reading); end() is a full
// close in Bun 1.4.4 and is used only once both directions are done.

import type { Socket } from "bun";

export type PeerSocket = Socket<unknown>;

/**
 * Who ended the connection first (access-log field `closed_by`); "firewall": a rule added while it was open;
 * "drain" / "lifetime": drain_timeout or max_connection_lifetime (docs/POOLS.md "Drains end").
 */
export type Closer = "client" | "backend" | "proxy" | "firewall" | "drain" | "lifetime";

/** How a relay ends, for the access log: ok, idle_timeout, or a reset. */
export type RelayEnd = "ok" | "idle_timeout";

/** What a relay tells the one that owns it (a connection): it knows nothing of routes or backends' choice. */
export interface RelayOwner {
  /** Called once when the relay is over (both directions done, error, or timeout). */
  relayEnded(end: RelayEnd): void;
  /** Called on every byte of traffic, to push the idle deadline. */
  touch(): void;
}

export class Relay {
  readonly client: PeerSocket;
  backend: PeerSocket | null = null;
  /** Bytes read from the client not yet taken by the backend's socket. */
  private toBackend: Uint8Array | null = null;
  /** Bytes read from the backend not yet taken by the client's socket. */
  private toClient: Uint8Array | null = null;
  clientEof = false;
  backendEof = false;
  private backendFinSent = false;
  private clientFinSent = false;
  bytesFromClient = 0;
  bytesFromBackend = 0;
  closedBy: Closer | null = null;
  /** Set once the connection is over; every handler checks it first. */
  finished = false;

  constructor(
    client: PeerSocket,
    protected readonly owner: RelayOwner,
  ) {
    this.client = client;
  }

  /**
   * Start relaying: write `preamble` (a PROXY header, or nothing) and what
   * was read during the hello (and while connecting), then pump both ways. `clientPaused` says whether reading from
   * the client was paused meanwhile and must be resumed.
   */
  start(backend: PeerSocket, replay: Uint8Array, clientPaused: boolean, preamble: Uint8Array | null = null): void {
    this.backend = backend;
    this.bytesFromClient += replay.length;
    // A PROXY header goes first, in the same write (it is ours, not the client's: not counted).
    this.writeToBackend(preamble === null ? replay : concat(preamble, replay));
    // The write found the backend already reset: the owner has ended the
    // relay or moved on to another backend (backendWriteFailed).
    if (this.finished || this.backend !== backend) return;
    // writeToBackend pauses the client itself when the backend did not take it all.
    if (this.toBackend === null && clientPaused) this.client.resume();
    // The client may have half-closed while we were connecting.
    if (this.clientEof && this.toBackend === null) this.finToBackend();
  }

  /**
   * A write to the backend failed: it is already closed or reset (on
   * loopback the first write can find a backend killed between the
   * handshake and accept()). Reset the client too, unless the owner can
   * still try another backend.
   */
  protected backendWriteFailed(): void {
    this.resetBoth("backend");
  }

  clientData(chunk: Uint8Array): void {
    this.bytesFromClient += chunk.length;
    this.owner.touch();
    this.writeToBackend(chunk);
    if (this.toBackend === null) release(chunk);
  }

  backendData(chunk: Uint8Array): void {
    this.bytesFromBackend += chunk.length;
    this.owner.touch();
    const pending = this.toClient;
    if (pending !== null) {
      // Only bytes already in flight when we paused can land here.
      this.toClient = concat(pending, chunk);
      return;
    }
    const n = this.client.write(chunk);
    if (n === chunk.length) return release(chunk);
    if (n < 0) return this.resetBoth("client");
    this.toClient = chunk.subarray(n);
    this.backend!.pause();
  }

  private writeToBackend(chunk: Uint8Array): void {
    const pending = this.toBackend;
    if (pending !== null) {
      this.toBackend = concat(pending, chunk);
      return;
    }
    if (chunk.length === 0) return;
    const n = this.backend!.write(chunk);
    if (n === chunk.length) return;
    if (n < 0) return this.backendWriteFailed();
    this.toBackend = chunk.subarray(n);
    this.client.pause();
  }

  backendDrain(): void {
    const p = this.toBackend;
    if (p === null || this.backend === null) return;
    const n = this.backend.write(p);
    if (n < 0) return this.backendWriteFailed();
    if (n < p.length) {
      this.toBackend = p.subarray(n);
      return;
    }
    this.toBackend = null;
    if (this.clientEof) this.finToBackend();
    else this.client.resume();
  }

  clientDrain(): void {
    const p = this.toClient;
    if (p === null) return;
    const n = this.client.write(p);
    if (n < 0) return this.resetBoth("client");
    if (n < p.length) {
      this.toClient = p.subarray(n);
      return;
    }
    this.toClient = null;
    if (this.backendEof) this.finToClient();
    else this.backend!.resume();
  }

  /**
   * Drop the backend before it has sent a byte, to try another (the owner
   * checks that nothing from it reached the client). Everything written to
   * it was the replay: that count is taken back, to be written again.
   */
  abandonBackend(replayed: number): void {
    const b = this.backend;
    this.backend = null;
    this.toBackend = null;
    this.backendEof = false;
    this.backendFinSent = false;
    this.bytesFromClient -= replayed;
    b?.terminate();
  }

  /** Bytes read from one side wait to be written to the other. */
  get pending(): boolean {
    return this.toBackend !== null || this.toClient !== null;
  }

  /** Nothing is waiting to be written to the backend (the replay went out whole). */
  protected get backendWritesDone(): boolean {
    return this.toBackend === null;
  }

  /** The client sent FIN. */
  clientEnd(): void {
    this.clientEof = true;
    this.closedBy ??= "client";
    if (this.backend !== null && this.toBackend === null) this.finToBackend();
  }

  /** The backend sent FIN. */
  backendEnd(): void {
    this.backendEof = true;
    this.closedBy ??= "backend";
    if (this.toClient === null) this.finToClient();
  }

  private finToBackend(): void {
    if (this.backendFinSent) return;
    this.backendFinSent = true;
    this.backend!.shutdown();
    this.maybeDone();
  }

  private finToClient(): void {
    if (this.clientFinSent) return;
    this.clientFinSent = true;
    this.client.shutdown();
    this.maybeDone();
  }

  private maybeDone(): void {
    if (this.backendFinSent && this.clientFinSent) this.endRelay("ok");
  }

  /**
   * A socket closed. With an error it was reset: reset the other side too.
   * Without one it is an EOF: Bun 1.4.4 reports a peer's FIN as `close`, not
   * `end`, when our write side to that peer is already shut down (measured;
   * kept as a test in tests/platform/bun_sockets.test.ts), so finish that
   * direction like an `end`.
   */
  socketClosed(side: Closer, error: Error | undefined): void {
    if (this.finished) return;
    if (error !== undefined) return this.resetBoth(side);
    if (side === "backend") {
      if (!this.backendEof) this.backendEnd();
    } else if (!this.clientEof) this.clientEnd();
  }

  /** Close both sockets with RST (an error on one side resets the other, docs/SPEC.md §6). */
  resetBoth(side: Closer): void {
    if (this.finished) return;
    this.closedBy ??= side;
    this.finished = true;
    this.toBackend = this.toClient = null;
    this.client.terminate();
    this.backend?.terminate();
    this.owner.relayEnded("ok");
  }

  /**
   * The proxy ends a connection that is not at fault (the drain deadline):
   * with nothing waiting to be written either way, FIN to both sides — the
   * client sees a clean end, as from a server closing an idle keep-alive
   * connection; with bytes pending (which would be lost), RST as for a failure.
   * The client's side is only half-closed: a byte it sent as the FIN crossed
   * is read and dropped rather than answered with RST (a lingering close,
   * as nginx's lingering_close); the socket closes when the client closes
   * it or the process ends (event_loop.ts waits LINGER_MS for that).
   */
  closeBoth(by: Closer = "proxy"): void {
    if (this.finished) return;
    if (this.pending) return this.resetBoth(by);
    this.closedBy ??= by;
    this.finished = true;
    this.client.shutdown();
    this.backend?.end();
    this.owner.relayEnded("ok");
  }

  /** Close both sockets gracefully. */
  endRelay(end: RelayEnd): void {
    if (this.finished) return;
    this.finished = true;
    if (end === "idle_timeout") this.closedBy ??= "proxy";
    this.toBackend = this.toClient = null;
    this.client.end();
    this.backend?.end();
    this.owner.relayEnded(end);
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (b.length === 0) return a;
  if (a.length === 0) return b;
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

/**
 * Give a chunk's memory back now: once the kernel has taken every byte, the
 * read buffer Bun made for this chunk is garbage. Detaching it (ES2024
 * ArrayBuffer.prototype.transfer) frees its backing store at once instead of
 * at the next collection, so the next reads reuse the same memory rather than
 * growing the heap until a collection runs (docs/PERFORMANCE.md "The
 * allocator"). Only whole buffers of bulk size: a view into a larger one is
 * left alone.
 */
function release(chunk: Uint8Array): void {
  if (chunk.byteLength < RELEASE_MIN_BYTES) return;
  const b = chunk.buffer;
  if (chunk.byteOffset === 0 && chunk.byteLength === b.byteLength && b instanceof ArrayBuffer) b.transfer(0);
}

/** Small chunks (requests, replies) are left to the collector: detaching costs an object, and they are cheap garbage. */
const RELEASE_MIN_BYTES = 16384;
