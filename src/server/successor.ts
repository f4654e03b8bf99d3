// Who may take over from the running process (docs/TAKEOVER.md "Who may
// take over"): a process whose command line is mc-proxy's `server …
// --takeover` with the same config file as this one, and — for the handover
// itself — that listens on every listener address it names. From Linux's
// /proc (proc(5)): /proc/PID/cmdline is its argv, NUL-separated;
// /proc/PID/cwd and /proc/PID/root its working and root directories, through
// which the config path it was given is opened as it sees it. The pid is the
// requester's word (no SO_PEERCRED in Node or Bun); these checks are what
// keep a confused program from ending the service. The parser is pure; the
// readers at the bottom are the shell.

import { readFile, stat } from "node:fs/promises";
import { isAbsolute } from "node:path";
import { parseArgs } from "node:util";
import { type HostPort, parseHostPort } from "../net/host_port";
import { listensOn } from "../net/proc_sockets";

/** The longest command line a log line or a refusal quotes. */
const CMDLINE_SHOWN = 200;

/** A command line as a log line shows it: its arguments joined by spaces, clipped. */
export function shownCmdline(argv: readonly string[]): string {
  const s = argv.join(" ");
  return s.length > CMDLINE_SHOWN ? `${s.slice(0, CMDLINE_SHOWN)}…` : s;
}

/** /proc/PID/cmdline's text → its arguments. */
export function splitCmdline(raw: string): string[] {
  const args = raw.split("\0");
  if (args.at(-1) === "") args.pop();
  return args;
}

const SCRIPT = /\.[cm]?[jt]sx?$/;

/**
 * The config file an mc-proxy `server … --takeover` command line names (as
 * given: relative to its working directory), or why it is none. The
 * command is the first argument after the program — after `[run] SCRIPT`
 * when run from source (`bun run src/main.ts server …`) — and its flags are
 * parsed as the server command parses them (cli/args.ts): `-c FILE`,
 * `--config FILE` or `--config=FILE`, and `--takeover`; anything else is
 * not a takeover. The program's own name is not checked: a binary may be
 * installed under any name.
 */
export function takeoverConfig(argv: readonly string[]): { config: string } | { error: string } {
  let i = 1;
  if (SCRIPT.test(argv[1] ?? "")) i = 2;
  else if (argv[1] === "run" && SCRIPT.test(argv[2] ?? "")) i = 3;
  const not = { error: `its command line is not "mc-proxy server -c FILE --takeover": ${shownCmdline(argv)}` };
  if (argv[i] !== "server") return not;
  let values: { config?: string; takeover?: boolean };
  try {
    values = parseArgs({
      args: argv.slice(i + 1),
      strict: true,
      allowPositionals: false,
      options: { config: { type: "string", short: "c" }, takeover: { type: "boolean" } },
    }).values;
  } catch {
    return not;
  }
  if (values.takeover !== true || values.config === undefined || values.config === "") return not;
  return { config: values.config };
}

/** What the checks read of another process (the shell below; unit tests pass fakes). */
export interface ProcView {
  /** Its command line's arguments. */
  cmdline(pid: number): Promise<string[]>;
  /** Whether `path`, as process `pid` names it, is the same file as `ours` (an absolute path). */
  sameFile(pid: number, path: string, ours: string): Promise<boolean>;
  /** Whether it holds a listening TCP socket on each address. */
  listens(pid: number, addrs: readonly HostPort[]): Promise<boolean[]>;
}

/**
 * Why process `pid` is not a successor of this one, or null. It must be
 * another process, an mc-proxy `server --takeover` of `config` (this
 * process's config file, absolute), and — when `listeners` is given (the
 * handover request names at least one) — listen on every address in it.
 */
export async function successorError(
  pid: number,
  config: string,
  listeners: readonly string[] | null,
  proc: ProcView = PROC,
): Promise<string | null> {
  if (pid === process.pid) return `pid ${pid} is this process`;
  let argv: string[];
  try {
    argv = await proc.cmdline(pid);
  } catch (e) {
    return `cannot read the command line of pid ${pid}: ${(e as Error).message}`;
  }
  const named = takeoverConfig(argv);
  if ("error" in named) return `pid ${pid}: ${named.error}`;
  let same: boolean;
  try {
    same = await proc.sameFile(pid, named.config, config);
  } catch (e) {
    return `pid ${pid}: cannot open its config ${named.config}: ${(e as Error).message}`;
  }
  if (!same) return `pid ${pid} runs another config (${named.config}, not ${config})`;
  if (listeners === null) return null;
  if (listeners.length === 0) return `pid ${pid} names no listener`;
  const addrs: HostPort[] = [];
  for (const l of listeners) {
    const hp = parseHostPort(l, { allowEmptyHost: true });
    if (!hp.ok) return `listener ${l}: ${hp.error}`;
    addrs.push(hp.value);
  }
  let held: boolean[];
  try {
    held = await proc.listens(pid, addrs);
  } catch (e) {
    return `cannot read the sockets of pid ${pid}: ${(e as Error).message}`;
  }
  const missing = listeners.filter((_, i) => !held[i]);
  return missing.length === 0 ? null : `pid ${pid} holds no listening socket on ${missing.join(", ")}`;
}

/** The shell: /proc as it is. */
const PROC: ProcView = {
  cmdline: async (pid) => splitCmdline(await readFile(`/proc/${pid}/cmdline`, "utf8")),
  async sameFile(pid, path, ours) {
    // Opened through the process's own root or working directory: its mount namespace and cwd, not this one's.
    const theirs = isAbsolute(path) ? `/proc/${pid}/root${path}` : `/proc/${pid}/cwd/${path}`;
    const [a, b] = await Promise.all([stat(theirs, { bigint: true }), stat(ours, { bigint: true })]);
    return a.dev === b.dev && a.ino === b.ino;
  },
  listens: listensOn,
};

/** Process `pid`'s command line as a log line shows it, or "?" when it cannot be read. */
export async function cmdlineOf(pid: number, proc: ProcView = PROC): Promise<string> {
  try {
    return shownCmdline(await proc.cmdline(pid));
  } catch {
    return "?";
  }
}
