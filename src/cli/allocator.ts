// `mc-proxy server` keeps freed memory for reuse while it is in use
// (docs/PERFORMANCE.md "The allocator"): Bun's allocator (mimalloc) purges
// freed memory to the kernel after 10 ms by default, and a relay's next reads
// fault it back in; after a second unused it goes back. The
// allocator reads MIMALLOC_PURGE_DELAY once, when the process starts, so a
// server started without it runs itself again at once with it set: execve,
// the same pid, before any module of the program is loaded or any file
// opened. A value the operator sets (any, e.g. 10 for the default) is kept.

/**
 * The variable and the value mc-proxy sets, in milliseconds (the unit and the image set the same): a relay reuses
 * its chunks within that, so it pays no faults per GB; memory left unused longer (a burst's, start-up's) is given
 * back, which "never" (-1) did not — measured in docs/PERFORMANCE.md "The allocator".
 */
export const PURGE_VARIABLE = "MIMALLOC_PURGE_DELAY";
export const PURGE_DELAY_MS = "1000";

/**
 * The execve arguments that run this server again with the purge delay set, or null when nothing is to be done
 * (not `server`, or the variable already set). `argv` is process.argv: in a compiled binary its second entry is
 * the program's path inside the executable ("/$bunfs/…"), which the executable supplies again by itself.
 */
export function allocatorRestart(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  execPath: string,
): { path: string; args: string[]; env: Record<string, string> } | null {
  if (argv[2] !== "server" || env[PURGE_VARIABLE] !== undefined) return null;
  const compiled = argv[1]?.startsWith("/$bunfs/") === true;
  const args = compiled ? [execPath, ...argv.slice(2)] : [execPath, ...argv.slice(1)];
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined) out[k] = v;
  out[PURGE_VARIABLE] = PURGE_DELAY_MS;
  return { path: execPath, args, env: out };
}
