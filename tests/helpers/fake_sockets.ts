// Fakes for the unit tests of a connection's life (tests/unit/connection.test.ts,
// event_loop.test.ts): a socket with the few methods the relay and the
// connection call, and a backend connector that records each connect and
// hands the test a fake backend socket to open, fail, feed or close through
// the real backend handlers (src/server/backend_socket.ts). No socket is made.
import type { Socket } from "bun";
import { Logger } from "../../src/log/logger";
import { BackendAttempt, type BackendOwner, backendHandlers } from "../../src/server/backend_socket";

/** A socket as Bun's: write() takes at most `room` bytes (what the kernel would take); the rest waits for a drain. */
export class FakeSocket<D = unknown> {
  data: D = undefined as D;
  /** Every byte written, in order. */
  readonly written: number[] = [];
  room = Number.POSITIVE_INFINITY;
  paused = false;
  shut = false;
  ended = false;
  terminated = false;
  /** -1: the socket is gone (a write fails). */
  constructor(
    public remoteAddress: string | undefined = "192.0.2.10",
    public remotePort: number | undefined = 40000,
    readonly localAddress = "127.0.0.1",
    readonly localPort = 443,
  ) {}

  write(chunk: Uint8Array): number {
    if (this.terminated || this.ended) return -1;
    const n = Math.min(chunk.length, this.room);
    this.room -= n;
    for (let i = 0; i < n; i++) this.written.push(chunk[i]!);
    return n;
  }
  pause(): void {
    this.paused = true;
  }
  resume(): void {
    this.paused = false;
  }
  shutdown(): void {
    this.shut = true;
  }
  end(): void {
    this.ended = true;
  }
  terminate(): void {
    this.terminated = true;
  }
  get text(): string {
    return Buffer.from(this.written).toString("latin1");
  }
  /** As a Bun socket, for the code under test. */
  as<T>(): Socket<T> {
    return this as unknown as Socket<T>;
  }
}

/** One connect a connection asked for: the test decides how it goes. */
export class FakeAttempt {
  readonly socket = new FakeSocket<BackendAttempt>("127.0.0.1", 443, "127.0.0.1", 50000);
  private readonly h: ReturnType<typeof backendHandlers>;
  constructor(
    readonly owner: BackendOwner,
    readonly backend: string,
    readonly attempt: number,
    logger: Logger,
  ) {
    this.socket.data = new BackendAttempt(owner, attempt);
    this.h = backendHandlers(logger);
  }
  private get s(): Socket<BackendAttempt> {
    return this.socket.as<BackendAttempt>();
  }
  open(): void {
    void this.h.open!(this.s);
  }
  fail(): void {
    void this.h.connectError!(this.s, new Error("ECONNREFUSED"));
  }
  data(text: string | Uint8Array): void {
    void this.h.data!(this.s, (typeof text === "string" ? Buffer.from(text) : text) as Buffer);
  }
  drain(): void {
    void this.h.drain!(this.s);
  }
  end(): void {
    void this.h.end!(this.s);
  }
  close(error?: Error): void {
    void this.h.close!(this.s, error as Error);
  }
}

/** A connector (src/server/backend_socket.ts BackendConnector) that records each connect. */
export function fakeConnector(logger: Logger): {
  connect: (o: BackendOwner, b: string, n: number) => void;
  attempts: FakeAttempt[];
} {
  const attempts: FakeAttempt[] = [];
  return { attempts, connect: (o, b, n) => void attempts.push(new FakeAttempt(o, b, n, logger)) };
}

/** A JSON logger whose records the test reads (flushed first). */
export function capturingLogger(level: "debug" | "info" | "warn" = "info"): {
  logger: Logger;
  records: () => Record<string, unknown>[];
} {
  const lines: string[] = [];
  const logger = new Logger(level, "json", { write: (t) => void lines.push(t), flush() {} });
  return {
    logger,
    records: () => {
      logger.flush();
      return lines
        .join("")
        .split("\n")
        .filter((l) => l !== "")
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    },
  };
}
