// The successor this process starts itself — asked by `mc-proxy reload` on
// the takeover socket, or by SIGUSR2 (docs/TAKEOVER.md; docs/COMMAND_LINE.md
// "Signals"): the binary now at the path this process was started from
// (selfCommand, resolved at start-up: an upgrade renames a new file over
// it), as `server -c <this process's config> --takeover`, with this
// process's stdout, stderr (the journal, a file, a container's log) and
// environment, stdin ignored. One at a time; watched until it ends: an end
// before it took over is one log line here and is told by hello
// (handover.ts "successor"), so `reload` can print its exit code. The
// decisions are the pure functions at the top; the class is the shell.

import { stat } from "node:fs/promises";
import type { Logger } from "../../log/logger";
import { type SuccessorReport, endedAs, running } from "../../server/handover";
import { selfCommand } from "../reload_command";

/** Why a successor cannot start now, `current` being the last one started (null: none), or null. */
export function startRefusal(current: SuccessorReport | null, now: number): string | null {
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

const identity = async (path: string) => {
  try {
    const s = await stat(path, { bigint: true });
    return { dev: s.dev, ino: s.ino };
  } catch (e) {
    return (e as Error).message;
  }
};

/** Starts and watches this process's successors, one at a time. */
export class SuccessorStarter {
  private current: SuccessorReport | null = null;

  constructor(
    /** This process's config file, absolute. */
    private readonly config: string,
    private readonly logger: Logger,
    /** The pid this process handed over to, or null: a successor that took over and ends later is no failed reload. */
    private readonly handedOverTo: () => number | null,
  ) {}

  /** The last successor started, for hello. */
  report(): SuccessorReport | null {
    return this.current === null ? null : { ...this.current };
  }

  /** A reload request naming `path`: the successor's pid, or an error saying why none was started. */
  async forRequest(path: string): Promise<number> {
    const why = sameConfigError(path, this.config, {
      requested: await identity(path),
      own: await identity(this.config),
    });
    if (why !== null) throw new Error(why);
    return this.start("reload");
  }

  /** Start the successor now (`trigger`: "reload" or "SIGUSR2"); its pid, or an error saying why not (the caller logs it). */
  start(trigger: string): number {
    const refused = startRefusal(this.current, Date.now());
    if (refused !== null) throw new Error(refused);
    const cmd = [...selfCommand(), "server", "-c", this.config, "--takeover"];
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
    void child.exited.then(() => {
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
