// The takeover channel: a unix socket beside the database (mode 0600, so
// only the same user reaches it) through which a new process started with
// --takeover asks the running one to hand over. One JSON object per line,
// each way; a line is at most MAX_LINE bytes and anything else is refused.
//
//   new → old  {"op":"hello"}     old → new  {"ok":true,"pid":…,"version":…,"generation":…,"startedAt":…}
//   new → old  {"op":"handover"}  old → new  {"ok":true,"active":…} once its listeners, admin API and
//                                  metrics are closed; it then drains and exits 0
//
// The listeners themselves are shared through SO_REUSEPORT (both processes
// bind them); when the old one closes its sockets, Linux moves their queued
// connections to the new one if net.ipv4.tcp_migrate_req is 1
// (docs/ARCHITECTURE.md "Takeover").

import { chmodSync, existsSync, lstatSync, unlinkSync } from "node:fs";
import { type Server, type Socket, createConnection, createServer } from "node:net";
import { removeStaleSocket } from "../net/unix_socket";

const MAX_LINE = 4096;

/** What the running process says about itself. */
export interface Incumbent {
  pid: number;
  version: string;
  generation: number;
  startedAt: number;
}

export interface HandoverResult {
  /** Connections it still holds, now draining. */
  active: number;
}

/** The control socket's path for a config: beside its database. */
export function controlPath(databasePath: string): string {
  return `${databasePath}.control`;
}

/** Longest path a unix socket address holds on Linux (sun_path minus the NUL). */
const MAX_SOCKET_PATH = 107;

/** Why a takeover socket (controlPath) cannot exist at `path`, or null. */
export function controlPathError(path: string): string | null {
  return path.length > MAX_SOCKET_PATH ? `database.path: the takeover socket beside it (${path}) is longer than ${MAX_SOCKET_PATH} bytes; use a shorter path` : null;
}

type Request = { op: "hello" } | { op: "handover" };

/** Parse one request line; null when it is not one we know. */
export function parseRequest(line: string): Request | null {
  if (line.length > MAX_LINE) return null;
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return null;
  }
  if (typeof v !== "object" || v === null) return null;
  const op = (v as { op?: unknown }).op;
  return op === "hello" || op === "handover" ? { op } : null;
}

/** Split a stream into lines, refusing one longer than MAX_LINE. */
function lines(socket: Socket, onLine: (line: string) => void, onTooLong: () => void): void {
  let buf = "";
  socket.setEncoding("utf8");
  socket.on("data", (chunk: string) => {
    buf += chunk;
    for (;;) {
      const nl = buf.indexOf("\n");
      if (nl < 0) break;
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      onLine(line);
    }
    if (buf.length > MAX_LINE) {
      buf = "";
      onTooLong();
    }
  });
}

/** The running process's side: answers hello, and hands over once. */
export class HandoverServer {
  private handedOver = false;
  private closed = false;

  private constructor(
    private readonly server: Server,
    readonly path: string,
  ) {}

  /**
   * Listen on `path`. A socket file no one answers on (a process that died)
   * is replaced; a live one means another process serves this config.
   */
  static async start(path: string, self: () => Incumbent, handover: () => Promise<HandoverResult>): Promise<HandoverServer> {
    const tooLong = controlPathError(path);
    if (tooLong !== null) throw new Error(tooLong);
    await removeStaleSocket(path, "takeover socket", "is held by another mc-proxy serving this config (use server --takeover, or mc-proxy reload)");
    const hs: { v: HandoverServer | null } = { v: null };
    const server = createServer((socket) => {
      socket.on("error", () => {});
      const reply = (o: object) => socket.end(`${JSON.stringify(o)}\n`);
      lines(
        socket,
        (line) => {
          const req = parseRequest(line);
          if (req === null) return reply({ ok: false, error: "not a request" });
          if (req.op === "hello") return void socket.write(`${JSON.stringify({ ok: true, ...self() })}\n`);
          const h = hs.v!;
          if (h.handedOver) return reply({ ok: false, error: "already handed over" });
          h.handedOver = true;
          void handover().then(
            (r) => reply({ ok: true, ...r }),
            (e: Error) => reply({ ok: false, error: e.message }),
          );
        },
        () => reply({ ok: false, error: `line longer than ${MAX_LINE} bytes` }),
      );
    });
    const oldMask = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(path, () => resolve());
      });
    } finally {
      process.umask(oldMask);
    }
    chmodSync(path, 0o600);
    const h = new HandoverServer(server, path);
    hs.v = h;
    return h;
  }

  /**
   * Stop listening and remove the socket file (before the new process binds
   * its own) — once: later the path is the new process's socket.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.server.close();
    try {
      if (existsSync(this.path) && lstatSync(this.path).isSocket()) unlinkSync(this.path);
    } catch {}
  }
}

/** One request, one reply line, within `timeoutMs`. */
function ask(path: string, op: Request["op"], timeoutMs: number): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const s = createConnection({ path });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no answer on ${path} within ${timeoutMs} ms`));
    }, timeoutMs);
    const done = (f: () => void) => {
      clearTimeout(timer);
      s.destroy();
      f();
    };
    s.on("error", (e) => done(() => reject(e)));
    s.on("connect", () => s.write(`${JSON.stringify({ op })}\n`));
    s.on("close", () => done(() => reject(new Error(`${path}: closed without an answer`))));
    lines(
      s,
      (line) => {
        let v: unknown;
        try {
          v = JSON.parse(line);
        } catch {
          return done(() => reject(new Error(`${path}: not an answer: ${line.slice(0, 80)}`)));
        }
        if (typeof v !== "object" || v === null) return done(() => reject(new Error(`${path}: not an answer`)));
        const o = v as Record<string, unknown>;
        if (o.ok !== true) return done(() => reject(new Error(`${path}: ${String(o.error ?? "refused")}`)));
        done(() => resolve(o));
      },
      () => done(() => reject(new Error(`${path}: answer too long`))),
    );
  });
}

/** Ask the running process who it is. */
export async function hello(path: string, timeoutMs = 2000): Promise<Incumbent> {
  const o = await ask(path, "hello", timeoutMs);
  const num = (k: string) => (typeof o[k] === "number" && Number.isSafeInteger(o[k]) ? (o[k] as number) : 0);
  return { pid: num("pid"), version: typeof o.version === "string" ? o.version.slice(0, 64) : "", generation: num("generation"), startedAt: num("startedAt") };
}

/** Ask it to close its listeners, admin API and metrics and drain. */
export async function requestHandover(path: string, timeoutMs = 10_000): Promise<HandoverResult> {
  const o = await ask(path, "handover", timeoutMs);
  return { active: typeof o.active === "number" ? o.active : 0 };
}
