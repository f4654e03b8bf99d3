// The new process's side of the takeover socket (handover.ts has the
// protocol and the running process's side): `hello` asks who serves;
// `requestReload` asks it to start its successor; `TakeoverSession` prepares
// a takeover and asks for the handover (docs/TAKEOVER.md). A connection
// closed right after connect, with no answer, is the running process at its
// connection limit (it closes the ones over it unanswered), not a process
// gone: each request is tried again for up to BUSY_MS, then refused saying
// so; a process gone refuses the next connect.

import { type Socket, createConnection } from "node:net";
import {
  type HandoverResult,
  type HelloReply,
  type Incumbent,
  MAX_APPLIED,
  MAX_CONNECTIONS,
  type SuccessorReport,
} from "./handover";
import { type Request, isPid, lines } from "./takeover_request";

/** The running process refused the request (its answer says why), or kept closing the connection unanswered (busy). */
export class Refused extends Error {}

/** How long a request is tried again while the running process closes its connections unanswered. */
export const BUSY_MS = 5000;
/** The pause between those tries. */
const RETRY_MS = 100;

/** A connection closed after connect with no answer: the running process is at its connection limit. */
class Unanswered extends Error {}

/** One connection to the takeover socket: requests one at a time, each answered by one line. */
class Channel {
  private readonly socket: Socket;
  private pending: {
    resolve: (o: Record<string, unknown>) => void;
    reject: (e: Error) => void;
    timer: ReturnType<typeof setTimeout>;
  } | null = null;
  private ended: Error | null = null;
  private readonly connected: Promise<void>;
  /** The connection was made: an end before any answer is Unanswered. */
  private made = false;
  /** A line was answered. */
  private answered = false;

  constructor(readonly path: string) {
    this.socket = createConnection({ path });
    /** The error as this channel tells it: an end or a reset (even at connect) before any answer is the server closing it unanswered. */
    const told = (e: NodeJS.ErrnoException) =>
      !this.answered && (this.made || e.code === "ECONNRESET" || e.code === "EPIPE")
        ? new Unanswered(`${path}: closed unanswered (${e.message})`)
        : e;
    this.connected = new Promise((resolve, reject) => {
      this.socket.once("connect", () => {
        this.made = true;
        resolve();
      });
      this.socket.once("error", (e) => reject(told(e)));
    });
    this.connected.catch(() => {});
    const end = (e: Error) => {
      if (this.ended === null) this.ended = told(e);
      const p = this.pending;
      this.pending = null;
      if (p !== null) {
        clearTimeout(p.timer);
        p.reject(this.ended);
      }
    };
    this.socket.on("error", (e) => end(e));
    this.socket.on("close", () => end(new Error(`${path}: closed without an answer`)));
    lines(
      this.socket,
      (line) => {
        this.answered = true;
        const p = this.pending;
        if (p === null) return;
        this.pending = null;
        clearTimeout(p.timer);
        let v: unknown;
        try {
          v = JSON.parse(line);
        } catch {
          return p.reject(new Error(`${path}: not an answer: ${line.slice(0, 80)}`));
        }
        if (typeof v !== "object" || v === null) return p.reject(new Error(`${path}: not an answer`));
        const o = v as Record<string, unknown>;
        if (o.ok !== true) return p.reject(new Refused(String(o.error ?? "refused").slice(0, 500)));
        p.resolve(o);
      },
      () => end(new Error(`${path}: answer too long`)),
    );
  }

  async ask(req: Request, timeoutMs: number): Promise<Record<string, unknown>> {
    await this.connected;
    if (this.ended !== null) throw this.ended;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending = null;
        this.close();
        reject(new Error(`no answer on ${this.path} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending = { resolve, reject, timer };
      this.socket.write(`${JSON.stringify(req)}\n`);
    });
  }

  close(): void {
    this.socket.destroy();
  }
}

const num = (v: unknown) => (typeof v === "number" && Number.isSafeInteger(v) ? v : 0);

function successorOf(v: unknown): SuccessorReport | null {
  if (typeof v !== "object" || v === null) return null;
  const o = v as Record<string, unknown>;
  if (!isPid(o.pid)) return null;
  return {
    pid: o.pid,
    since: num(o.since),
    trigger: String(o.trigger ?? "").slice(0, 32),
    exitCode: typeof o.exitCode === "number" && Number.isSafeInteger(o.exitCode) ? o.exitCode : null,
    signal: typeof o.signal === "string" ? o.signal.slice(0, 32) : null,
  };
}

function incumbentOf(o: Record<string, unknown>): HelloReply {
  const prev = o.previous as Record<string, unknown> | null | undefined;
  return {
    pid: num(o.pid),
    version: typeof o.version === "string" ? o.version.slice(0, 64) : "",
    generation: num(o.generation),
    startedAt: num(o.startedAt),
    previous:
      typeof prev === "object" && prev !== null ? { pid: num(prev.pid), generation: num(prev.generation) } : null,
    takeoverBy: isPid(o.takeoverBy) ? o.takeoverBy : null,
    takeoverSince:
      typeof o.takeoverSince === "number" && Number.isSafeInteger(o.takeoverSince) ? o.takeoverSince : null,
    stopping: typeof o.stopping === "string" ? o.stopping.slice(0, 32) : null,
    degraded: Array.isArray(o.degraded) ? o.degraded.slice(0, 8).map((d) => String(d).slice(0, 300)) : [],
    applied: typeof o.applied === "string" ? o.applied.slice(0, MAX_APPLIED) : null,
    successor: successorOf(o.successor),
  };
}

/**
 * Ask `req` on a new connection, each try answered within `timeoutMs`; tried
 * again while the connection is closed unanswered, for up to `busyMs`. The
 * answer and its connection (`keep`: left open for the caller), or an error.
 */
async function exchange(
  path: string,
  req: Request,
  timeoutMs: number,
  busyMs: number,
  keep = false,
): Promise<{ c: Channel; o: Record<string, unknown> }> {
  const t0 = Date.now();
  for (let tries = 1; ; tries++) {
    const c = new Channel(path);
    try {
      const o = await c.ask(req, timeoutMs);
      if (!keep) c.close();
      return { c, o };
    } catch (e) {
      c.close();
      if (!(e instanceof Unanswered)) throw e;
      if (Date.now() - t0 + RETRY_MS >= busyMs)
        throw new Refused(
          `the takeover socket ${path} is at its connection limit (${MAX_CONNECTIONS} connections): it closed ${tries} connection${tries === 1 ? "" : "s"} unanswered in ${((Date.now() - t0) / 1000).toFixed(1)} s; try again, or see what holds it (ss -xp | grep ${path})`,
        );
      await Bun.sleep(RETRY_MS);
    }
  }
}

/** Ask the running process who it is (tried for up to `busyMs` while its takeover socket is busy). */
export async function hello(path: string, timeoutMs = 2000, busyMs = BUSY_MS): Promise<HelloReply> {
  return incumbentOf((await exchange(path, { op: "hello" }, timeoutMs, busyMs)).o);
}

/**
 * Ask the running process to start its successor of the config file at
 * `config` (absolute): the successor's pid, or "unsupported" when the
 * running process is a release without the reload request (it answers
 * "not a request"). Any other refusal throws `Refused` with its reason.
 */
export async function requestReload(
  path: string,
  config: string,
  timeoutMs = 5000,
  busyMs = BUSY_MS,
): Promise<number | "unsupported"> {
  try {
    const { o } = await exchange(path, { op: "reload", config }, timeoutMs, busyMs);
    if (!isPid(o.pid)) throw new Error(`${path}: the answer names no pid`);
    return o.pid;
  } catch (e) {
    if (e instanceof Refused && e.message === "not a request") return "unsupported";
    throw e;
  }
}

/**
 * The new process's side of one takeover: `open` prepares it (from then on
 * the running process refuses any other until this connection closes),
 * `handover` asks for the handover, `close` gives up.
 */
export class TakeoverSession {
  private constructor(
    private readonly channel: Channel,
    /** The process being taken over. */
    readonly incumbent: Incumbent,
    /** This process's generation, as the running process assigned it. */
    readonly generation: number,
  ) {}

  static async open(path: string, timeoutMs = 2000): Promise<TakeoverSession> {
    const { c, o } = await exchange(path, { op: "prepare", pid: process.pid }, timeoutMs, BUSY_MS, true);
    const inc = incumbentOf(o);
    const next = typeof o.next === "number" && Number.isSafeInteger(o.next) ? o.next : inc.generation + 1;
    return new TakeoverSession(c, inc, next);
  }

  /** Ask the running process to hand over to this one, which listens on `listeners` (TCP, host:port as configured). */
  async handover(listeners: string[], timeoutMs = 10_000): Promise<HandoverResult> {
    const o = await this.channel.ask({ op: "handover", pid: process.pid, listeners }, timeoutMs);
    return { active: typeof o.active === "number" ? o.active : 0 };
  }

  close(): void {
    this.channel.close();
  }
}
