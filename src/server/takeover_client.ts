// The new process's side of the takeover socket (handover.ts has the
// protocol and the running process's side): `hello` asks who serves;
// `requestReload` asks it to start its successor; `TakeoverSession` prepares
// a takeover and asks for the handover (docs/TAKEOVER.md).

import { type Socket, createConnection } from "node:net";
import {
  type HandoverResult,
  type HelloReply,
  type Incumbent,
  MAX_APPLIED,
  type Request,
  type SuccessorReport,
  isPid,
  lines,
} from "./handover";

/** The running process refused the request (its answer says why). */
export class Refused extends Error {}

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

  constructor(readonly path: string) {
    this.socket = createConnection({ path });
    this.connected = new Promise((resolve, reject) => {
      this.socket.once("connect", () => resolve());
      this.socket.once("error", (e) => reject(e));
    });
    this.connected.catch(() => {});
    const end = (e: Error) => {
      if (this.ended === null) this.ended = e;
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
    degraded: Array.isArray(o.degraded) ? o.degraded.slice(0, 8).map((d) => String(d).slice(0, 300)) : [],
    applied: typeof o.applied === "string" ? o.applied.slice(0, MAX_APPLIED) : null,
    successor: successorOf(o.successor),
  };
}

/** Ask the running process who it is. */
export async function hello(path: string, timeoutMs = 2000): Promise<HelloReply> {
  const c = new Channel(path);
  try {
    return incumbentOf(await c.ask({ op: "hello" }, timeoutMs));
  } finally {
    c.close();
  }
}

/**
 * Ask the running process to start its successor of the config file at
 * `config` (absolute): the successor's pid, or "unsupported" when the
 * running process is a release without the reload request (it answers
 * "not a request"). Any other refusal throws `Refused` with its reason.
 */
export async function requestReload(path: string, config: string, timeoutMs = 5000): Promise<number | "unsupported"> {
  const c = new Channel(path);
  try {
    const o = await c.ask({ op: "reload", config }, timeoutMs);
    if (!isPid(o.pid)) throw new Error(`${path}: the answer names no pid`);
    return o.pid;
  } catch (e) {
    if (e instanceof Refused && e.message === "not a request") return "unsupported";
    throw e;
  } finally {
    c.close();
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
    const c = new Channel(path);
    try {
      const o = await c.ask({ op: "prepare", pid: process.pid }, timeoutMs);
      const inc = incumbentOf(o);
      const next = typeof o.next === "number" && Number.isSafeInteger(o.next) ? o.next : inc.generation + 1;
      return new TakeoverSession(c, inc, next);
    } catch (e) {
      c.close();
      throw e;
    }
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
