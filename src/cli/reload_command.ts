// `mc-proxy reload -c FILE`: check FILE, then start this binary as
// `server -c FILE --takeover` and wait until the new process answers on the
// takeover socket (handover.ts) — or has failed, leaving the old one serving.
// An upgrade is the same with the new binary in place. The new process keeps
// this command's stdout and stderr (under systemd: the journal).
import { loadRoutedConfig } from "../routing/route_config";
import { controlPath, hello } from "../server/handover";
import { UsageError, help, parseArgs } from "./args";

export const RELOAD_USAGE = `Usage: mc-proxy reload -c FILE [--timeout SECONDS]

Applies FILE (any change: listeners, addresses, PROXY settings, sections)
with no refused connection: checks it, starts this binary as
"server -c FILE --takeover" beside the running instance, and returns once
the new process serves (exit 0) or has failed (non-zero; the running
instance keeps serving, untouched). The old process drains its open
connections for up to [proxy] shutdown_timeout. --timeout: how long to wait
for the new process (default 60).`;

/** This program, as a command line: the compiled binary, or bun and the entry script. */
export function selfCommand(): string[] {
  const compiled = import.meta.url.startsWith("file:///$bunfs/");
  return compiled ? [process.execPath] : [process.execPath, process.argv[1]!];
}

export async function reload(args: string[]): Promise<number> {
  const a = parseArgs(args, RELOAD_USAGE, { values: ["--timeout"] });
  if (a.help) return help(RELOAD_USAGE);
  if (a.rest.length > 0) throw new UsageError(`unexpected argument ${a.rest[0]}`, RELOAD_USAGE);
  if (a.config === null) throw new UsageError("-c FILE is required", RELOAD_USAGE);
  const rawTimeout = a.flags.get("--timeout") ?? "60";
  if (!/^[1-9]\d{0,4}$/.test(rawTimeout)) throw new UsageError(`--timeout: ${JSON.stringify(rawTimeout)} is not a number of seconds (1-99999)`, RELOAD_USAGE);
  // The same checks as `mc-proxy check`: a bad config changes nothing.
  const cfg = loadRoutedConfig(a.config);
  const control = controlPath(cfg.databasePath);
  const before = await hello(control).catch((e: Error) => {
    throw new Error(`no running mc-proxy answers on ${control} (${e.message}); start it with "mc-proxy server -c ${a.config}"`);
  });
  const child = Bun.spawn([...selfCommand(), "server", "-c", a.config, "--takeover"], { stdin: "ignore", stdout: "inherit", stderr: "inherit", env: process.env });
  child.unref();
  const end = Date.now() + Number(rawTimeout) * 1000;
  for (;;) {
    if (child.exitCode !== null) {
      console.error(`mc-proxy: reload failed: the new process exited with code ${child.exitCode} (its log says why); pid ${before.pid} keeps serving`);
      return 1;
    }
    const now = await hello(control, 500).catch(() => null);
    if (now !== null && now.pid === child.pid) {
      console.log(`reloaded: pid ${before.pid} (generation ${before.generation}) → pid ${now.pid} (generation ${now.generation}); the old process drains`);
      return 0;
    }
    if (Date.now() > end) {
      child.kill("SIGTERM");
      console.error(`mc-proxy: reload failed: the new process (pid ${child.pid}) did not take over within ${rawTimeout} s; it was stopped`);
      return 1;
    }
    await Bun.sleep(50);
  }
}
