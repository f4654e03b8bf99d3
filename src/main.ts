// mc-proxy entry point: `mc-proxy COMMAND [flags]`. A server started without
// the allocator's setting runs itself again with it first (cli/allocator.ts),
// before the program is loaded: the program (cli/cli.ts) is an entry point
// of its own (scripts/build.ts), imported by a path the bundler does not
// follow, so this module stays small and the first run costs a runtime
// start, not the program's load.
import { allocatorRestart } from "./cli/allocator";

const again = allocatorRestart(process.argv, process.env, process.execPath);
if (again !== null) {
  // Where execve fails (an emulator that cannot exec the binary) the server runs on, and its "memory allocator"
  // line says so. Bun 1.4 marks execve experimental with a warning on stderr, not a log line: the warning
  // listeners (the default one prints) are set aside until it has passed.
  const listeners = process.listeners("warning");
  process.removeAllListeners("warning");
  try {
    process.execve?.(again.path, again.args, again.env);
  } catch {}
  setTimeout(() => {
    for (const l of listeners) process.on("warning", l);
  }, 0);
}
const PROGRAM = "./cli/cli.ts";
const { runCli } = (await import(PROGRAM)) as typeof import("./cli/cli");
process.exit(await runCli(process.argv.slice(2)));
