// `mc-proxy reload -c FILE`: check FILE, then ask the running process, on
// the takeover socket (handover.ts), to start its successor — the binary now
// on disk as `server -c FILE --takeover`, with the running process's stdout,
// stderr and environment, as SIGUSR2 does — and wait until the successor
// answers there, or has failed. Every message says what is true when it is
// printed: who serves is asked on the takeover socket, never assumed. An
// upgrade is the same with the new binary in place. A running release
// without the reload request: this command starts the successor itself
// (which then keeps this command's stdout and stderr), and says so.
// --timeout bounds the whole command: every wait takes what is left of it,
// and a refusal returns at once.
import { accessSync, constants, statSync } from "node:fs";
import { delimiter, isAbsolute, join, resolve } from "node:path";
import { loadRoutedConfig } from "../routing/route_config";
import { type HelloReply, type SuccessorReport, controlPath, endedAs, running } from "../server/handover";
import { BUSY_MS, Refused, hello, requestReload } from "../server/takeover_client";
import { UsageError, help, parseArgs } from "./args";

export const RELOAD_USAGE = `Usage: mc-proxy reload -c FILE [--timeout SECONDS]

Applies FILE (any change: listeners, addresses, PROXY settings, sections)
with no refused connection: checks it, then asks the running instance of
FILE to start its successor (the binary now on disk, as
"server -c FILE --takeover", with the running instance's stdout, stderr and
environment: the same as kill -USR2), and returns once the new process
serves (exit 0) or has failed (non-zero; it says how the new process ended
and which process serves then). The old process drains its open
connections for up to [proxy] shutdown_timeout. --timeout: how long this
command may take in all, waiting for the new process included (default 60).`;

/**
 * The path this program was started from, resolved now (at start-up): argv[0]
 * against the working directory, or PATH for a bare name. Not
 * process.execPath: Bun reads that from /proc/self/exe when first asked,
 * which names "… (deleted)" once an upgrade renamed a new file over the
 * binary (measured, Bun 1.4.4). Falls back to process.execPath when argv[0]
 * names no executable file.
 */
export function startPath(argv0: string, cwd: string, path: string | undefined, execPath: () => string): string {
  const executable = (p: string) => {
    try {
      accessSync(p, constants.X_OK);
      return statSync(p).isFile();
    } catch {
      return false;
    }
  };
  if (argv0.includes("/")) {
    const p = isAbsolute(argv0) ? argv0 : resolve(cwd, argv0);
    if (executable(p)) return p;
  } else if (argv0 !== "") {
    for (const dir of (path ?? "").split(delimiter)) {
      if (dir === "") continue;
      const p = resolve(cwd, join(dir, argv0));
      if (executable(p)) return p;
    }
  }
  return execPath();
}

const COMPILED = import.meta.url.startsWith("file:///$bunfs/");
/** Resolved when this module loads, at start-up, before anything can rename the binary. */
const SELF = COMPILED
  ? [startPath(process.argv0, process.cwd(), process.env.PATH, () => process.execPath)]
  : [startPath(process.argv0, process.cwd(), process.env.PATH, () => process.execPath), resolve(process.argv[1]!)];

/** This program, as a command line: the compiled binary, or bun and the entry script, at the paths it was started from. */
export function selfCommand(): string[] {
  return SELF;
}

/** "pid P (generation G) serves", as the takeover socket answers now. */
function serving(h: HelloReply | null, control: string): string {
  if (h === null) return `nothing answers on ${control} now (see the log)`;
  if (h.stopping !== null)
    return `pid ${h.pid} (generation ${h.generation}) drains and stops (signal ${h.stopping}); start the server again once it stopped`;
  const degraded = h.degraded.length > 0 ? ` without: ${h.degraded.join("; ")}` : "";
  const busy =
    h.takeoverBy !== null
      ? `, while a takeover by pid ${h.takeoverBy} is in progress`
      : running(h.successor)
        ? `, while its successor pid ${h.successor.pid} is starting`
        : "";
  return `pid ${h.pid} (generation ${h.generation}) serves${degraded}${busy}`;
}

/** The time left until `until` for one wait of at most `ms` (at least 100 ms: a last question is still asked). */
const within = (until: number, ms: number) => Math.max(100, Math.min(ms, until - Date.now()));

/** Who serves now, asked once by `until` (null: nothing answered). */
const ask = (control: string, until: number) =>
  hello(control, within(until, 1000), within(until, BUSY_MS)).catch(() => null);

/** Who serves now, asked until one answers (a handover leaves the socket unbound for a moment) or `until`. */
async function answering(control: string, until: number): Promise<HelloReply | null> {
  for (;;) {
    const h = await ask(control, until);
    if (h !== null || Date.now() >= until) return h;
    await Bun.sleep(50);
  }
}

/** Who serves once no takeover is in progress nor a successor starting (another reload's may be), asked until `until`. */
async function settled(control: string, until: number): Promise<HelloReply | null> {
  let last: HelloReply | null = null;
  for (;;) {
    const h = await ask(control, until);
    if (h !== null) {
      last = h;
      if (h.takeoverBy === null && !running(h.successor)) return h;
    }
    if (Date.now() >= until) return h ?? last;
    await Bun.sleep(50);
  }
}

/**
 * The new process as this command sees it: started by the running process
 * (its end told by hello's "successor"), or — a running release without
 * the reload request — by this command.
 */
interface NewProcess {
  pid: number;
  /** How it ended before taking over, if it did; `now` is the latest hello (null: none answered). */
  ended(now: HelloReply | null): { exitCode: number | null; signal: string | null } | null;
  /** Stop it (it did not take over in time); resolves once it ended, or at `until`. */
  stop(until: number): Promise<void>;
  /** Whose log its log lines are in, for a failure's message. */
  log: string;
}

/** A successor the running process started. */
function startedByServer(pid: number, control: string): NewProcess {
  const mine = (s: SuccessorReport | null | undefined) => (s?.pid === pid ? s : null);
  let last: SuccessorReport | null = null;
  return {
    pid,
    ended(now) {
      const s = mine(now?.successor);
      if (s !== null) last = s;
      return last !== null && !running(last) ? last : null;
    },
    async stop(until) {
      // Only while the running process still reports it running: its pid is not yet anyone else's.
      if (!running(mine((await ask(control, until))?.successor))) return;
      process.kill(pid, "SIGTERM");
      while (Date.now() < until && running(mine((await ask(control, until))?.successor))) await Bun.sleep(50);
    },
    log: "the running process's log",
  };
}

/** A successor this command started itself (the running release has no reload request). */
function startedHere(config: string): NewProcess {
  const child = Bun.spawn([...selfCommand(), "server", "-c", config, "--takeover"], {
    stdin: "ignore",
    stdout: "inherit",
    stderr: "inherit",
    env: process.env,
  });
  child.unref();
  return {
    pid: child.pid,
    ended: () =>
      child.exitCode === null && child.signalCode === null
        ? null
        : { exitCode: child.exitCode, signal: child.signalCode === null ? null : String(child.signalCode) },
    async stop(until) {
      child.kill("SIGTERM");
      await Promise.race([child.exited, Bun.sleep(Math.max(0, until - Date.now()))]);
    },
    log: "this command's output",
  };
}

export async function reload(args: string[]): Promise<number> {
  const a = parseArgs(args, RELOAD_USAGE, { values: ["--timeout"] });
  if (a.help) return help(RELOAD_USAGE);
  if (a.rest.length > 0) throw new UsageError(`unexpected argument ${a.rest[0]}`, RELOAD_USAGE);
  if (a.config === null) throw new UsageError("-c FILE is required", RELOAD_USAGE);
  const rawTimeout = a.flags.get("--timeout") ?? "60";
  if (!/^[1-9]\d{0,4}$/.test(rawTimeout))
    throw new UsageError(`--timeout: ${JSON.stringify(rawTimeout)} is not a number of seconds (1-99999)`, RELOAD_USAGE);
  const t0 = Date.now();
  const deadline = t0 + Number(rawTimeout) * 1000;
  // The config's own checks: a bad config changes nothing. The files it
  // names are read by the new process's preflight (startup/preflight.ts),
  // as the server's user, before it asks the running process anything.
  const cfg = loadRoutedConfig(a.config);
  const control = controlPath(cfg.databasePath);
  const before = await hello(control, within(deadline, 2000), within(deadline, BUSY_MS)).catch((e: Error) => {
    if (e instanceof Refused) throw new Error(`reload: ${e.message}`);
    throw new Error(
      `no running mc-proxy answers on ${control} (${e.message}); start it with "mc-proxy server -c ${a.config}"`,
    );
  });
  let started: number | "unsupported";
  try {
    started = await requestReload(control, resolve(a.config), within(deadline, 5000), within(deadline, BUSY_MS));
  } catch (e) {
    if (!(e instanceof Refused)) throw e;
    // At once: who serves now (and what it is doing), not once it settled.
    console.error(
      `mc-proxy: reload failed: the running process refused: ${e.message}; ${serving(await answering(control, Math.min(deadline, Date.now() + 2000)), control)}`,
    );
    return 1;
  }
  let child: NewProcess;
  if (started === "unsupported") {
    console.error(
      `mc-proxy: the running process (pid ${before.pid}, version ${before.version || "?"}) is an older release that cannot start its successor: this command starts it, so the new server's logs go to this command's stdout and stderr`,
    );
    child = startedHere(a.config);
  } else child = startedByServer(started, control);
  // What is left at the end is kept to stop the new process and say who serves.
  const end = deadline - Math.min(3000, (deadline - t0) / 4);
  for (;;) {
    const now = await ask(control, end);
    if (now !== null && now.pid === child.pid) {
      const from = now.previous === null ? "?" : `pid ${now.previous.pid} (generation ${now.previous.generation})`;
      const applied = now.applied !== null ? `\napplied: ${now.applied}` : "";
      if (now.degraded.length > 0) {
        console.error(
          `mc-proxy: reload done with errors: ${from} → pid ${now.pid} (generation ${now.generation}), which serves its listeners without: ${now.degraded.join("; ")}; the old process drains${applied}`,
        );
        return 1;
      }
      console.log(
        `reloaded: ${from} → pid ${now.pid} (generation ${now.generation}); the old process drains${applied}`,
      );
      return 0;
    }
    const ended = child.ended(now);
    if (ended !== null) {
      const after = await settled(control, deadline);
      console.error(
        `mc-proxy: reload failed: the new process (pid ${child.pid}) ${endedAs(ended)} before taking over (${child.log} says why); ${serving(after, control)}`,
      );
      return 1;
    }
    if (Date.now() >= end) {
      // Another process still answering means the new one has not been
      // handed over to: stopping it changes nothing. Nobody answering means
      // it may be past the handover: it is left running.
      if (now === null) {
        console.error(
          `mc-proxy: reload failed: the new process (pid ${child.pid}) did not answer within --timeout ${rawTimeout} s and nothing answers on ${control}; it was left running (${child.log} says what it does)`,
        );
        return 1;
      }
      await child.stop(deadline - 500);
      console.error(
        `mc-proxy: reload failed: the new process (pid ${child.pid}) did not take over within --timeout ${rawTimeout} s; it was stopped; ${serving(await answering(control, deadline), control)}`,
      );
      return 1;
    }
    await Bun.sleep(50);
  }
}
