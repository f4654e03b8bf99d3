// The takeover channel: a unix socket beside the database (mode 0600, so
// only the same user reaches it) through which a new process started with
// --takeover asks the running one to hand over. One JSON object per line,
// each way; a line is at most MAX_LINE bytes and anything else is refused.
//
//   {"op":"hello"}                      → {"ok":true,"pid","version","generation","startedAt",
//                                          "previous":{"pid","generation"}|null,"takeoverBy":pid|null,
//                                          "takeoverSince":epoch ms|null,"degraded":[…],
//                                          "applied":summary|null,"successor":{"pid","since","trigger",
//                                          "exitCode","signal"}|null}
//   {"op":"reload","config":"/abs/path"} → once the path names the file this process runs (same device
//                                          and inode): it starts its successor itself, `server -c
//                                          <its config> --takeover` with its own stdout, stderr and
//                                          environment, and answers {"ok":true,"pid":N}; refused while
//                                          a successor it started is still starting or a takeover is
//                                          prepared (naming who), and after the handover. "successor"
//                                          in hello then says how that process ended, if it did
//                                          before taking over. A release without this op answers
//                                          "not a request" (mc-proxy reload then starts it itself).
//   {"op":"prepare","pid":N}            → once /proc shows pid N is a successor: the same and "next",
//                                          the generation N will carry; the takeover is N's until this
//                                          connection closes (at most PREPARE_MS): any other prepare is
//                                          refused ("a takeover is in progress by pid N (prepared at …)")
//   {"op":"handover","pid":N,"listeners":["host:port",…]}
//                                       → on the prepared connection only, once /proc shows that
//                                          pid N is a successor listening on every address named: the
//                                          running process closes its listeners, admin API, metrics and
//                                          this socket, answers {"ok":true,"active":…}, drains and
//                                          exits 0.
//
// Node and Bun expose no SO_PEERCRED, so the pid is the requester's word,
// checked against /proc (successor.ts): a prepare and a handover are
// accepted only from another process whose command line is mc-proxy's
// `server --takeover` of the same config file, and the handover only once
// it listens on the addresses it names. Every prepare is logged with the
// requester's pid and command line, every refusal at warn with the reason.
// The listeners themselves are shared through SO_REUSEPORT (both processes
// bind them); when the old one closes its sockets, Linux moves their queued
// connections to the new one if net.ipv4.tcp_migrate_req is 1
// (docs/TAKEOVER.md; docs/ARCHITECTURE.md "Takeover").

import { chmodSync, existsSync, lstatSync, unlinkSync } from "node:fs";
import { type Server, type Socket, createServer } from "node:net";
import type { Logger } from "../log/logger";
import { parseHostPort } from "../net/host_port";
import { removeStaleSocket } from "../net/unix_socket";
import { cmdlineOf, successorError } from "./successor";

const MAX_LINE = 4096;
/** Connections at once; more are closed unanswered. */
const MAX_CONNECTIONS = 16;
/** A connection with no request within this long is closed. */
const IDLE_MS = 5000;
/** A prepared takeover not handed over within this long is dropped (the new process gives up too). */
const PREPARE_MS = 120_000;
/** Listener addresses one handover request may name. */
const MAX_LISTENERS = 256;

/** What the running process says about itself. */
export interface Incumbent {
  pid: number;
  version: string;
  generation: number;
  startedAt: number;
  /** The process it took over from; null after a plain start. */
  previous: { pid: number; generation: number } | null;
  /** What failed after its own handover (it serves its listeners without them); empty when fully up. */
  degraded: string[];
  /** What it applied from its config file at start (a summary, at most MAX_APPLIED characters); null if not told. */
  applied: string | null;
  /** The last successor it started itself (a reload request, SIGUSR2); null if none. */
  successor: SuccessorReport | null;
}

/** The longest `applied` summary hello carries. */
export const MAX_APPLIED = 1000;

/** A successor the running process started: its pid, when and why, and how it ended (both null while it runs). */
export interface SuccessorReport {
  pid: number;
  /** Epoch ms. */
  since: number;
  /** What asked for it: "reload" (a reload request on this socket) or "SIGUSR2". */
  trigger: string;
  exitCode: number | null;
  signal: string | null;
}

/** How a successor ended, in a log line's and a message's words. */
export function endedAs(r: { exitCode: number | null; signal: string | null }): string {
  return r.signal !== null ? `was killed by ${r.signal}` : `exited with code ${r.exitCode}`;
}

/** Whether a successor is still running (started, not yet ended). */
export const running = (s: SuccessorReport | null): s is SuccessorReport =>
  s !== null && s.exitCode === null && s.signal === null;

/** hello's answer: the incumbent, and the pid of a takeover in progress and when it was prepared (epoch ms), if any. */
export interface HelloReply extends Incumbent {
  takeoverBy: number | null;
  takeoverSince: number | null;
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
  return path.length > MAX_SOCKET_PATH
    ? `database.path: the takeover socket beside it (${path}) is longer than ${MAX_SOCKET_PATH} bytes; use a shorter path`
    : null;
}

export type Request =
  | { op: "hello" }
  | { op: "reload"; config: string }
  | { op: "prepare"; pid: number }
  | { op: "handover"; pid: number; listeners: string[] };

export const isPid = (v: unknown): v is number =>
  typeof v === "number" && Number.isSafeInteger(v) && v > 0 && v <= 0x3fffffff;

/** Parse one request line: the request, or why it is not one. */
export function parseRequest(line: string): Request | string {
  if (line.length > MAX_LINE) return `line longer than ${MAX_LINE} bytes`;
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return "not a request";
  }
  if (typeof v !== "object" || v === null) return "not a request";
  const o = v as Record<string, unknown>;
  if (o.op === "hello") return { op: "hello" };
  if (o.op === "reload") {
    if (typeof o.config !== "string" || !o.config.startsWith("/") || o.config.includes("\0"))
      return 'reload: "config" must be the absolute path of the config file the running process runs';
    return { op: "reload", config: o.config };
  }
  if (o.op !== "prepare" && o.op !== "handover") return "not a request";
  if (!isPid(o.pid)) return `${o.op}: "pid" must be the requesting process's id`;
  if (o.op === "prepare") return { op: "prepare", pid: o.pid };
  const ls = o.listeners;
  if (!Array.isArray(ls) || ls.length === 0 || ls.length > MAX_LISTENERS)
    return `handover: "listeners" must name the 1-${MAX_LISTENERS} TCP listener addresses the requester listens on`;
  for (const l of ls) {
    if (typeof l !== "string" || !parseHostPort(l, { allowEmptyHost: true }).ok)
      return `handover: listener ${JSON.stringify(l).slice(0, 80)} is not host:port`;
  }
  return { op: "handover", pid: o.pid, listeners: [...new Set(ls as string[])] };
}

/** Split a stream into lines, refusing one longer than MAX_LINE. */
export function lines(socket: Socket, onLine: (line: string) => void, onTooLong: () => void): void {
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

/** What the running process gives its takeover socket. */
export interface HandoverHooks {
  self(): Incumbent;
  /** This process's config file, absolute: a successor runs the same file (successor.ts). */
  config: string;
  /** Close the listeners, admin API, metrics and this socket; the requester is `pid`. */
  handover(pid: number): Promise<HandoverResult>;
  /** A reload request: start the successor of this process's config, which `config` must name; its pid, or why not. */
  reload(config: string): Promise<number>;
  logger: Logger;
}

/** The running process's side: answers hello, lets one takeover prepare at a time, and hands over once. */
export class HandoverServer {
  private handedOver = false;
  private closed = false;
  /** The takeover in progress: its pid, connection and when it was prepared (epoch ms). */
  private prepared: { pid: number; socket: Socket; since: number } | null = null;
  private connections = 0;
  /** A handover request's /proc check is running. */
  private checking = false;

  private constructor(
    private readonly server: Server,
    readonly path: string,
  ) {}

  /**
   * Listen on `path`. A socket file no one answers on (a process that died)
   * is replaced; a live one means another process serves this config.
   */
  static async start(path: string, hooks: HandoverHooks): Promise<HandoverServer> {
    const tooLong = controlPathError(path);
    if (tooLong !== null) throw new Error(tooLong);
    await removeStaleSocket(
      path,
      "takeover socket",
      "is held by another mc-proxy serving this config (use server --takeover, or mc-proxy reload)",
    );
    const hs: { v: HandoverServer | null } = { v: null };
    const server = createServer((socket) => hs.v!.accept(socket, hooks));
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

  /** The pid of the takeover in progress, or null. */
  get takeoverBy(): number | null {
    return this.prepared?.pid ?? null;
  }

  /** Who holds the takeover, and since when: what a refused prepare says. */
  private inProgress(p: { pid: number; since: number }): string {
    const s = Math.round((Date.now() - p.since) / 1000);
    return `a takeover is in progress by pid ${p.pid} (prepared at ${new Date(p.since).toISOString()}, ${s} s ago; dropped ${PREPARE_MS / 1000} s after it unless handed over)`;
  }

  private accept(socket: Socket, hooks: HandoverHooks): void {
    socket.on("error", () => {});
    if (this.connections >= MAX_CONNECTIONS) return void socket.destroy();
    this.connections++;
    const { logger } = hooks;
    let timer = setTimeout(() => socket.destroy(), IDLE_MS);
    const reply = (o: object) => socket.end(`${JSON.stringify(o)}\n`);
    const refuse = (pid: number | null, error: string, what = "takeover") => {
      logger.warn(`${what} refused: ${error}`, { requester_pid: pid ?? undefined });
      reply({ ok: false, error });
    };
    socket.on("close", () => {
      clearTimeout(timer);
      this.connections--;
      if (this.prepared?.socket === socket) {
        if (!this.handedOver)
          logger.warn("takeover abandoned: the requester closed the takeover socket before the handover", {
            requester_pid: this.prepared.pid,
          });
        this.prepared = null;
      }
    });
    lines(
      socket,
      (line) => {
        const req = parseRequest(line);
        if (typeof req === "string") return refuse(null, req);
        const hello = () => ({
          ok: true,
          ...hooks.self(),
          takeoverBy: this.takeoverBy,
          takeoverSince: this.prepared?.since ?? null,
        });
        if (req.op === "hello") return reply(hello());
        if (req.op === "reload") {
          const why = this.handedOver
            ? `this process already handed over (to pid ${this.prepared?.pid ?? "?"}) and drains`
            : this.prepared !== null
              ? this.inProgress(this.prepared)
              : null;
          if (why !== null) return refuse(null, why, "reload");
          return void hooks.reload(req.config).then(
            (pid) => reply({ ok: true, pid }),
            (e: Error) => refuse(null, e.message, "reload"),
          );
        }
        if (this.handedOver) return refuse(req.pid, `already handed over (to pid ${this.prepared?.pid ?? "?"})`);
        if (req.op === "prepare") {
          if (this.prepared !== null) return refuse(req.pid, this.inProgress(this.prepared));
          // Checked before it holds anything: only a successor may hold the takeover (successor.ts).
          return void Promise.all([successorError(req.pid, hooks.config, null), cmdlineOf(req.pid)]).then(
            ([why, cmdline]) => {
              if (socket.destroyed) return;
              if (why !== null) return refuse(req.pid, why);
              if (this.prepared !== null) return refuse(req.pid, this.inProgress(this.prepared));
              if (this.handedOver) return refuse(req.pid, "already handed over");
              this.prepared = { pid: req.pid, socket, since: Date.now() };
              clearTimeout(timer);
              timer = setTimeout(() => {
                logger.warn("takeover abandoned: not handed over in time", {
                  requester_pid: req.pid,
                  after_ms: PREPARE_MS,
                });
                socket.destroy();
              }, PREPARE_MS);
              logger.info("takeover prepared", { requester_pid: req.pid, requester_cmdline: cmdline });
              const me = hello();
              socket.write(`${JSON.stringify({ ...me, takeoverBy: req.pid, next: me.generation + 1 })}\n`);
            },
          );
        }
        if (this.prepared?.socket !== socket || this.prepared.pid !== req.pid)
          return refuse(
            req.pid,
            `handover without a prepared takeover on this connection (send {"op":"prepare","pid":${req.pid}} first)`,
          );
        // One check at a time: a second handover line on this connection waits its turn and finds it handed over.
        if (this.checking) return refuse(req.pid, "a handover request is being checked");
        this.checking = true;
        void successorError(req.pid, hooks.config, req.listeners).then((why) => {
          this.checking = false;
          if (why !== null) return refuse(req.pid, why);
          if (this.prepared?.socket !== socket || this.handedOver)
            return refuse(req.pid, "the takeover ended while its request was checked");
          this.handedOver = true;
          clearTimeout(timer);
          void hooks.handover(req.pid).then(
            (r) => reply({ ok: true, ...r }),
            (e: Error) => {
              // Not handed over (it was still starting): a later takeover may try again.
              this.handedOver = false;
              reply({ ok: false, error: e.message });
            },
          );
        });
      },
      () => refuse(null, `line longer than ${MAX_LINE} bytes`),
    );
  }

  /**
   * Stop listening and remove the socket file (before the new process binds
   * its own) — once: later the path is the new process's socket. A
   * connection still open (the handover's) gets its answer.
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
