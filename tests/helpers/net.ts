// Loopback helpers for end-to-end tests: free ports, TCP servers and clients
// with explicit results, all bounded in time.
import { createConnection, type Socket as NetSocket } from "node:net";

// Ports handed out in this process: never twice, so two listeners of one test
// cannot be given the same port.
const handedOut = new Set<number>();

/**
 * A port that was free a moment ago on 127.0.0.1, below the ephemeral range
 * (32768–60999 here): a port the kernel picked for `port: 0` and we released
 * may be taken by any outgoing connection before the test binds it again.
 */
export function freePort(): number {
  for (let tries = 0; tries < 1000; tries++) {
    const p = 10_000 + Math.floor(Math.random() * 22_000);
    if (handedOut.has(p)) continue;
    try {
      Bun.listen({ hostname: "127.0.0.1", port: p, socket: { data() {} } }).stop(true);
    } catch {
      continue;
    }
    handedOut.add(p);
    return p;
  }
  throw new Error("no free port below 32768 after 1000 tries");
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Poll `cond` every 20 ms until it holds or `ms` passes. */
/** The p-quantile of xs (nearest rank, 0 < p ≤ 1). */
export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * p))]!;
}

export async function waitFor(cond: () => boolean, ms = 5000, what = "condition"): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(20);
  }
}

export interface RawResult {
  /** Everything received before the socket closed. */
  received: Buffer;
  /** "reset" (ECONNRESET), "refused", "eof" (clean FIN/close), or "timeout". */
  end: "reset" | "refused" | "eof" | "timeout";
  error?: string;
}

/**
 * Open a TCP connection, send `payload` (optionally half-closing after it), and
 * collect what comes back until the connection ends or `timeoutMs` passes.
 */
export function rawExchange(
  port: number,
  payload: Uint8Array | null,
  opts: { localAddress?: string; halfClose?: boolean; timeoutMs?: number; host?: string } = {},
): Promise<RawResult> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let settled = false;
    const sock: NetSocket = createConnection({
      host: opts.host ?? "127.0.0.1",
      port,
      localAddress: opts.localAddress,
      allowHalfOpen: true,
    });
    const done = (end: RawResult["end"], error?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      resolve({ received: Buffer.concat(chunks), end, error });
    };
    const timer = setTimeout(() => done("timeout"), opts.timeoutMs ?? 3000);
    sock.on("connect", () => {
      if (payload !== null) sock.write(payload);
      if (opts.halfClose) sock.end();
    });
    sock.on("data", (d: Buffer) => chunks.push(d));
    sock.on("error", (e: NodeJS.ErrnoException) =>
      done(e.code === "ECONNRESET" ? "reset" : e.code === "ECONNREFUSED" ? "refused" : "eof", e.code ?? e.message),
    );
    // Let an 'error' that trails 'end'/'close' decide the outcome.
    sock.on("end", () => setTimeout(() => done("eof"), 50));
    sock.on("close", () => setTimeout(() => done("eof"), 50));
  });
}

/** A TCP server that counts connections and runs `onConn` for each. */
export interface CountingServer {
  port: number;
  connections: number;
  stop(): void;
}

export function tcpServer(
  onOpen: (s: import("bun").Socket<unknown>) => void = () => {},
  onData: (s: import("bun").Socket<unknown>, d: Buffer) => void = () => {},
): CountingServer {
  const state: CountingServer = {
    port: 0,
    connections: 0,
    stop: () => l.stop(true),
  };
  const l = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    allowHalfOpen: true,
    socket: {
      open(s) {
        state.connections++;
        onOpen(s);
      },
      data(s, d) {
        onData(s, d);
      },
    },
  });
  state.port = l.port;
  return state;
}

/** Connect, send `payload`, return the first reply as text ("" when the connection ended without one, or after 2 s). */
export function firstReply(port: number, payload: Uint8Array, localAddress?: string): Promise<string> {
  return new Promise((resolve) => {
    const s = createConnection({ host: "127.0.0.1", port, localAddress });
    const t = setTimeout(() => done(""), 2000);
    const done = (v: string) => {
      clearTimeout(t);
      s.destroy();
      resolve(v);
    };
    s.on("connect", () => s.write(payload));
    s.on("data", (d: Buffer) => done(d.toString()));
    s.on("error", () => done(""));
    s.on("close", () => done(""));
  });
}
