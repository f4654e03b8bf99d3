// Deterministic byte streams and backpressure-aware writers for relay tests.
import type { Socket } from "bun";
import { createHash } from "node:crypto";

/** A 64 KiB block of pseudo-random bytes derived from `seed`; streams repeat it with a counter mixed in. */
export function block(seed: number, index: number, size = 65536): Uint8Array {
  const b = new Uint8Array(size);
  let x = (seed * 2654435761 + index * 40503 + 1) >>> 0;
  for (let i = 0; i < size; i += 4) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b[i] = x & 0xff;
    b[i + 1] = (x >>> 8) & 0xff;
    b[i + 2] = (x >>> 16) & 0xff;
    b[i + 3] = x >>> 24;
  }
  return b;
}

/** SHA-256 of the stream `sendStream(seed, total)` would write. */
export function streamHash(seed: number, total: number): string {
  const h = createHash("sha256");
  for (let i = 0, sent = 0; sent < total; i++) {
    const b = block(seed, i);
    const n = Math.min(b.length, total - sent);
    h.update(n === b.length ? b : b.subarray(0, n));
    sent += n;
  }
  return h.digest("hex");
}

/**
 * Write `total` bytes of the seeded stream to a Bun socket, honouring
 * backpressure: call `onDrain` from the socket's drain handler. Resolves when
 * everything has been handed to the kernel.
 */
export class StreamWriter {
  private index = 0;
  private sent = 0;
  private pending: Uint8Array | null = null;
  private resolve!: () => void;
  readonly done = new Promise<void>((r) => (this.resolve = r));

  constructor(
    private readonly socket: Socket<unknown>,
    private readonly seed: number,
    private readonly total: number,
    private readonly prefix: Uint8Array | null = null,
  ) {}

  start(): void {
    if (this.prefix !== null) this.pending = this.prefix;
    this.pump();
  }

  onDrain(): void {
    this.pump();
  }

  private pump(): void {
    for (;;) {
      if (this.pending === null) {
        if (this.sent >= this.total) return this.resolve();
        const b = block(this.seed, this.index++);
        const n = Math.min(b.length, this.total - this.sent);
        this.sent += n;
        this.pending = n === b.length ? b : b.subarray(0, n);
      }
      const w = this.socket.write(this.pending);
      if (w < 0) return;
      if (w < this.pending.length) {
        this.pending = this.pending.subarray(w);
        return;
      }
      this.pending = null;
    }
  }
}

/** Incremental SHA-256 + byte count of received data, skipping a known prefix. */
export class StreamReader {
  private readonly h = createHash("sha256");
  received = 0;
  private skip: number;
  prefix: Uint8Array[] = [];

  constructor(skipPrefix = 0) {
    this.skip = skipPrefix;
  }

  push(d: Uint8Array): void {
    if (this.skip > 0) {
      const n = Math.min(this.skip, d.length);
      this.prefix.push(d.slice(0, n));
      this.skip -= n;
      d = d.subarray(n);
    }
    this.received += d.length;
    if (d.length > 0) this.h.update(d);
  }

  digest(): string {
    return this.h.digest("hex");
  }
}

/**
 * A backend that streams `total` bytes of the seeded stream once a client's
 * first bytes arrive, then sends FIN; `conns` counts the connections it accepted.
 */
export function streamBackend(seed: number, total: number): { port: number; readonly conns: number; stop(): void } {
  let conns = 0;
  const l = Bun.listen<{ w: StreamWriter | null }>({
    hostname: "127.0.0.1",
    port: 0,
    allowHalfOpen: true,
    socket: {
      open(s) {
        conns++;
        s.data = { w: null };
      },
      data(s) {
        if (s.data.w !== null) return;
        s.data.w = new StreamWriter(s as Socket<unknown>, seed, total);
        s.data.w.start();
        void s.data.w.done.then(() => s.shutdown());
      },
      drain(s) {
        s.data.w?.onDrain();
      },
    },
  });
  return {
    port: l.port,
    get conns() {
      return conns;
    },
    stop: () => l.stop(true),
  };
}

/**
 * A slow download: connect to `port`, send `hello`, read with a pause of
 * `paceMs` after every chunk; `done` resolves once the stream has ended.
 */
export async function pacedDownload(
  port: number,
  hello: Uint8Array,
  paceMs: number,
): Promise<{ reader: StreamReader; done: Promise<void> }> {
  const reader = new StreamReader(0);
  let finish!: () => void;
  const done = new Promise<void>((r) => (finish = r));
  const c = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    allowHalfOpen: true,
    socket: {
      data(s, d) {
        reader.push(d);
        s.pause();
        setTimeout(() => s.resume(), paceMs);
      },
      end(s) {
        s.end();
        finish();
      },
      close: () => finish(),
    },
  });
  c.write(hello);
  return { reader, done };
}
