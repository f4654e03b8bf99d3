// The takeover channel: a unix socket beside the database (mode 0600, so
// only the same user reaches it) through which a new process started with
// --takeover asks the running one to hand over. One JSON object per line,
// each way; a line is at most MAX_LINE bytes and anything else is refused
// (takeover_request.ts).
//
//   {"op":"hello"}                      → {"ok":true,"pid","version","generation","startedAt",
//                                          "previous":{"pid","generation"}|null,"takeoverBy":pid|null,
//                                          "takeoverSince":epoch ms|null,"degraded":[…],
//                                          "applied":summary|null,"successor":{"pid","since","trigger",
//                                          "exitCode","signal"}|null,"stopping":signal|null}
//   {"op":"reload","config":"/abs/path"} → once the path names the file this process runs (same device
//                                          and inode): it starts its successor itself, `server -c
//                                          <its config> --takeover` with its own stdout, stderr and
//                                          environment, and answers {"ok":true,"pid":N}; refused while
//                                          a successor it started is still starting or a takeover is
//                                          prepared (naming who), while it stops (a stop signal), and
//                                          after the handover. "successor"
//                                          in hello then says how that process ended, if it did
//                                          before taking over. A release without this op answers
//                                          "not a request" (mc-proxy reload then starts it itself).
//   {"op":"prepare","pid":N}            → once /proc shows pid N is a successor: the same and "next",
//                                          the generation N will carry; the takeover is N's until this
//                                          connection closes (at most PREPARE_MS): any other prepare is
//                                          refused ("a takeover is in progress by pid N (prepared at …)");
//                                          refused too while this process stops
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
// A connection carries one request (a prepared one, one more: its
// handover); a line sent while one is answered is dropped unread, and after
// the answer — a refusal included — the connection is closed and nothing
// more is read, so one connection writes at most one refusal to the log.
// Text the requester sent is clipped wherever an answer or a log line
// repeats it (src/admin/clip.ts).
// The listeners themselves are shared through SO_REUSEPORT (both processes
// bind them); when the old one closes its sockets, Linux moves their queued
// connections to the new one if net.ipv4.tcp_migrate_req is 1
// (docs/TAKEOVER.md; docs/ARCHITECTURE.md "Takeover").

import { chmodSync, existsSync, lstatSync, unlinkSync } from "node:fs";
import { type Server, type Socket, createServer } from "node:net";
import type { Logger } from "../log/logger";
import { removeStaleSocket } from "../net/unix_socket";
import { cmdlineOf, successorError } from "./successor";
import { MAX_LINE, lines, parseRequest } from "./takeover_request";

/** Connections at once; more are closed unanswered (takeover_client.ts tells that from a process not running). */
export const MAX_CONNECTIONS = 16;
/** A connection with no request within this long is closed. */
const IDLE_MS = 5000;
/** A prepared takeover not handed over within this long is dropped (the new process gives up too). */
const PREPARE_MS = 120_000;

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
  /** The stop signal this process drains after (it starts and hands over to no successor); null while it serves. */
  stopping: string | null;
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

/** One connection as its requests are answered (HandoverServer.accept). */
interface Conn {
  socket: Socket;
  /** Answer and close: nothing more is read. */
  reply(o: object): void;
  /** Answer a refusal (logged at warn) and close. */
  refuse(pid: number | null, error: string, what?: string): void;
  /** A prepare by `pid` holds the takeover: the connection takes one more request (its handover) for up to PREPARE_MS. */
  hold(pid: number): void;
  /** The handover proceeds: no deadline ends the connection now. */
  settle(): void;
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
  /** A prepare by `pid` was accepted (successor_start.ts stops a successor of its own that does not get here in time). */
  prepared(pid: number): void;
  /** The stop signal this process drains after, or null: while it stops it hands over to no one. */
  stopping(): string | null;
  logger: Logger;
}

/** The running process's side: answers hello, lets one takeover prepare at a time, and hands over once. */
export class HandoverServer {
  private handedOver = false;
  private closed = false;
  /** The takeover in progress: its pid, connection and when it was prepared (epoch ms). */
  private prepared: { pid: number; socket: Socket; since: number } | null = null;
  private connections = 0;

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

  /** Why this process hands over to no one while it stops, or null. */
  private static stopped(hooks: HandoverHooks): string | null {
    const signal = hooks.stopping();
    return signal === null ? null : `this process is stopping (signal ${signal}); it hands over to no successor`;
  }

  private accept(socket: Socket, hooks: HandoverHooks): void {
    socket.on("error", () => {});
    if (this.connections >= MAX_CONNECTIONS) return void socket.destroy();
    this.connections++;
    const { logger } = hooks;
    let timer = setTimeout(() => socket.destroy(), IDLE_MS);
    /** "ready" for a request; "busy" answering one (a line now is dropped unread); "done": answered, nothing more is read. */
    let state: "ready" | "busy" | "done" = "ready";
    const conn: Conn = {
      socket,
      reply: (o) => {
        state = "done";
        stopReading();
        socket.end(`${JSON.stringify(o)}\n`);
      },
      refuse: (pid, error, what = "takeover") => {
        logger.warn(`${what} refused: ${error}`, { requester_pid: pid ?? undefined });
        conn.reply({ ok: false, error });
      },
      hold: (pid) => {
        state = "ready";
        clearTimeout(timer);
        timer = setTimeout(() => {
          logger.warn("takeover abandoned: not handed over in time", { requester_pid: pid, after_ms: PREPARE_MS });
          socket.destroy();
        }, PREPARE_MS);
      },
      settle: () => clearTimeout(timer),
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
    const stopReading = lines(
      socket,
      (line) => {
        if (state !== "ready") return;
        state = "busy";
        this.answer(line, conn, hooks);
      },
      () => {
        if (state === "ready") conn.refuse(null, `line longer than ${MAX_LINE} bytes`);
      },
    );
  }

  /** hello's answer, now. */
  private hello(hooks: HandoverHooks): HelloReply & { ok: true } {
    return {
      ok: true,
      ...hooks.self(),
      takeoverBy: this.takeoverBy,
      takeoverSince: this.prepared?.since ?? null,
      stopping: hooks.stopping(),
    };
  }

  /** Answer one request line on `c`. */
  private answer(line: string, c: Conn, hooks: HandoverHooks): void {
    const req = parseRequest(line);
    if (typeof req === "string") return c.refuse(null, req);
    if (req.op === "hello") return c.reply(this.hello(hooks));
    if (req.op === "reload") {
      const why = this.handedOver
        ? `this process already handed over (to pid ${this.prepared?.pid ?? "?"}) and drains`
        : this.prepared !== null
          ? this.inProgress(this.prepared)
          : null;
      if (why !== null) return c.refuse(null, why, "reload");
      return void hooks.reload(req.config).then(
        (pid) => c.reply({ ok: true, pid }),
        (e: Error) => c.refuse(null, e.message, "reload"),
      );
    }
    const pid = req.pid;
    /** Why `pid` may not prepare or be handed over to now, whoever it is, or null. */
    const now = () =>
      this.handedOver
        ? `already handed over (to pid ${this.prepared?.pid ?? "?"})`
        : (HandoverServer.stopped(hooks) ??
          (req.op === "prepare" && this.prepared !== null ? this.inProgress(this.prepared) : null));
    const early = now();
    if (early !== null) return c.refuse(pid, early);
    if (req.op === "prepare")
      // Checked before it holds anything: only a successor may hold the takeover (successor.ts).
      return void Promise.all([successorError(pid, hooks.config, null), cmdlineOf(pid)]).then(([why, cmdline]) => {
        if (c.socket.destroyed) return;
        const refused = why ?? now();
        if (refused !== null) return c.refuse(pid, refused);
        this.prepared = { pid, socket: c.socket, since: Date.now() };
        c.hold(pid);
        hooks.prepared(pid);
        hooks.logger.info("takeover prepared", { requester_pid: pid, requester_cmdline: cmdline });
        const me = this.hello(hooks);
        c.socket.write(`${JSON.stringify({ ...me, takeoverBy: pid, next: me.generation + 1 })}\n`);
      });
    if (this.prepared?.socket !== c.socket || this.prepared.pid !== pid)
      return c.refuse(
        pid,
        `handover without a prepared takeover on this connection (send {"op":"prepare","pid":${pid}} first)`,
      );
    void successorError(pid, hooks.config, req.listeners).then((why) => {
      if (why !== null) return c.refuse(pid, why);
      if (this.prepared?.socket !== c.socket) return c.refuse(pid, "the takeover ended while its request was checked");
      const refused = now();
      if (refused !== null) return c.refuse(pid, refused);
      this.handedOver = true;
      c.settle();
      void hooks.handover(pid).then(
        (r) => c.reply({ ok: true, ...r }),
        (e: Error) => {
          // Not handed over (it was still starting): a later takeover may try again.
          this.handedOver = false;
          c.reply({ ok: false, error: e.message });
        },
      );
    });
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
