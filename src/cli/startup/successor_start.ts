// The successor this process starts itself — asked by `mc-proxy reload` on
// the takeover socket, or by SIGUSR2 (docs/TAKEOVER.md; docs/COMMAND_LINE.md
// "Signals"): the binary now at the path this process was started from
// (selfCommand, resolved at start-up: an upgrade renames a new file over
// it), as `server -c <this process's config> --takeover`, with this
// process's stdout, stderr (the journal, a file, a container's log) and
// environment, stdin ignored. One at a time, and none once this process
// stops; watched until it ends: an end before it took over is one log line
// here and is told by hello (handover.ts "successor"), so `reload` can
// print its exit code. One that has not prepared its takeover within
// START_MS is stopped (SIGTERM, SIGKILL after KILL_MS), so a successor that
// hangs blocks later reloads for a bounded time (docs/TAKEOVER.md). The
// decisions are the pure functions at the top; the class is the shell.

import { stat } from "node:fs/promises";
import type { Logger } from "../../log/logger";
import { type SuccessorReport, endedAs, running } from "../../server/handover";
import { clip } from "../../admin/clip";
import { selfCommand } from "../reload_command";

/** How long a successor this process started has to prepare its takeover (the reload command's default --timeout). */
export const START_MS = 60_000;
/** How long a successor stopped for that has after SIGTERM before SIGKILL. */
const KILL_MS = 5000;

/**
 * Why a successor cannot start now, `current` being the last one started
 * (null: none) and `stopping` the stop signal this process drains after
 * (null: it serves), or null.
 */
export function startRefusal(current: SuccessorReport | null, now: number, stopping: string | null): string | null {
  if (stopping !== null) return `this process is stopping (signal ${stopping}); it starts no successor`;
  if (!running(current)) return null;
  const s = Math.round((now - current.since) / 1000);
  return `a successor is starting: pid ${current.pid} (started by ${current.trigger === "SIGUSR2" ? "SIGUSR2" : "a reload request"} at ${new Date(current.since).toISOString()}, ${s} s ago)`;
}

/** Why `requested` (the path a reload request names) is not this process's config file `own`, given both files' identities. */
export function sameConfigError(
  requested: string,
  own: string,
  ids: { requested: { dev: bigint; ino: bigint } | string; own: { dev: bigint; ino: bigint } | string },
): string | null {
  if (typeof ids.requested === "string") return `cannot read ${requested}: ${ids.requested}`;
  if (typeof ids.own === "string") return `cannot read this process's config ${own}: ${ids.own}`;
  if (ids.requested.dev === ids.own.dev && ids.requested.ino === ids.own.ino) return null;
  return `${requested} is not the config file this process runs (${own}); reload the instance that runs it`;
}

/** A file's device and inode, or why not (without the path, which the message using it names). */
const identity = async (path: string) => {
  try {
    const s = await stat(path, { bigint: true });
    return { dev: s.dev, ino: s.ino };
  } catch (e) {
    // Node's and Bun's message ends ", stat '<path>'" (measured, Bun 1.4.4).
    const m = (e as Error).message;
    const tail = `, stat '${path}'`;
    return m.endsWith(tail) ? m.slice(0, -tail.length) : m.slice(0, 200);
  }
};

/** How the shell may be set up: a test starts another command and waits less. */
export interface StarterOptions {
  /** The successor's command line; `server -c FILE --takeover` of this program (selfCommand) unless given. */
  command?: string[];
  startMs?: number;
  killMs?: number;
}

/** Starts and watches this process's successors, one at a time. */
export class SuccessorStarter {
  private current: SuccessorReport | null = null;
  /** The last successor whose prepare the takeover socket accepted. */
  private preparedPid: number | null = null;
  /** The stop signal this process drains after; null while it serves. */
  private stopSignal: string | null = null;

  constructor(
    /** This process's config file, absolute. */
    private readonly config: string,
    private readonly logger: Logger,
    /** The pid this process handed over to, or null: a successor that took over and ends later is no failed reload. */
    private readonly handedOverTo: () => number | null,
    private readonly options: StarterOptions = {},
  ) {}

  /** This process stops (a stop signal): from now on it starts no successor, and its takeover socket hands over to none. */
  stop(signal: string): void {
    this.stopSignal ??= signal;
  }

  /** The stop signal this process drains after, or null. */
  get stopping(): string | null {
    return this.stopSignal;
  }

  /** The takeover socket accepted a prepare by `pid`: a successor of ours that did is no longer bounded here. */
  prepared(pid: number): void {
    this.preparedPid = pid;
  }

  /** The last successor started, for hello. */
  report(): SuccessorReport | null {
    return this.current === null ? null : { ...this.current };
  }

  /** A reload request naming `path`: the successor's pid, or an error saying why none was started. */
  async forRequest(path: string): Promise<number> {
    const refused = startRefusal(this.current, Date.now(), this.stopSignal);
    if (refused !== null) throw new Error(refused);
    const why = sameConfigError(clip(path), this.config, {
      requested: await identity(path),
      own: await identity(this.config),
    });
    if (why !== null) throw new Error(why);
    return this.start("reload");
  }

  /** Start the successor now (`trigger`: "reload" or "SIGUSR2"); its pid, or an error saying why not (the caller logs it). */
  start(trigger: string): number {
    const refused = startRefusal(this.current, Date.now(), this.stopSignal);
    if (refused !== null) throw new Error(refused);
    const cmd = this.options.command ?? [...selfCommand(), "server", "-c", this.config, "--takeover"];
    const failed = (fields: Record<string, string | number>) =>
      this.logger.error(`${trigger === "SIGUSR2" ? "SIGUSR2 reload" : "reload"} failed; this process keeps serving`, {
        command: cmd[0]!,
        ...fields,
      });
    let child: ReturnType<typeof Bun.spawn>;
    try {
      child = Bun.spawn(cmd, { stdin: "ignore", stdout: "inherit", stderr: "inherit", env: process.env });
    } catch (e) {
      throw new Error(`cannot start ${cmd[0]}: ${(e as Error).message}`);
    }
    child.unref();
    const report: SuccessorReport = { pid: child.pid, since: Date.now(), trigger, exitCode: null, signal: null };
    this.current = report;
    this.logger.info("starting a successor", { trigger, successor_pid: child.pid, command: cmd[0]! });
    const startMs = this.options.startMs ?? START_MS;
    const bound = setTimeout(() => {
      if (!running(report) || this.preparedPid === child.pid) return;
      this.logger.warn("the successor did not prepare its takeover in time; stopping it", {
        successor_pid: child.pid,
        after_ms: startMs,
      });
      child.kill("SIGTERM");
      setTimeout(() => {
        if (running(report)) child.kill("SIGKILL");
      }, this.options.killMs ?? KILL_MS).unref();
    }, startMs);
    bound.unref();
    void child.exited.then(() => {
      clearTimeout(bound);
      const signal = child.signalCode;
      report.signal = signal === null ? null : String(signal);
      report.exitCode = signal === null ? (child.exitCode ?? -1) : null;
      if (this.handedOverTo() === child.pid) {
        if (report.exitCode !== 0)
          this.logger.warn(`the successor that took over ${endedAs(report)}`, { successor_pid: child.pid });
        return;
      }
      failed({
        successor_pid: child.pid,
        ...(report.signal !== null ? { signal: report.signal } : { exit_code: report.exitCode! }),
      });
    });
    return child.pid;
  }
}
