// Command-line arguments, parsed in one place with node:util parseArgs
// (shipped by Bun): `-c FILE` / `--config FILE` / `--config=FILE`,
// `-h` / `--help`, each command's own flags, and positionals. A mistake is a
// UsageError: printed with the command's usage, exit code 2.
import { parseArgs as nodeParseArgs } from "node:util";

/** A command-line mistake: printed with the command's usage, exit code 2. */
export class UsageError extends Error {
  constructor(
    message: string,
    readonly usage: string,
  ) {
    super(message);
    this.name = "UsageError";
  }
}

export interface ParsedArgs {
  config: string | null;
  help: boolean;
  /** Positional arguments, in order. */
  rest: string[];
  /** Flags that take a value (e.g. --listener ADDR), by name as written in `own` ("--listener", "-o"). */
  flags: Map<string, string>;
  /** Flags without a value that were given (e.g. --json). */
  switches: Set<string>;
}

/** The name parseArgs uses for a flag as written: "--keep" → "keep"; a short "-o" → "o". */
const key = (flag: string) => flag.replace(/^--?/, "");

/**
 * Parse `argv` for a command whose own flags are `own.values` (take a value)
 * and `own.switches` (do not); anything else starting with "-" is an error.
 */
export function parseArgs(
  argv: string[],
  usage: string,
  own: { values?: string[]; switches?: string[] } = {},
): ParsedArgs {
  const options: Record<string, { type: "string" | "boolean"; short?: string }> = {
    config: { type: "string", short: "c" },
    help: { type: "boolean", short: "h" },
  };
  for (const f of own.values ?? []) if (f.startsWith("--")) options[key(f)] = { type: "string" };
  for (const f of own.switches ?? []) options[key(f)] = { type: "boolean" };
  // A short flag with a value ("-o PATH") is the short form of its long twin when there is one.
  for (const f of own.values ?? []) {
    if (f.startsWith("--")) continue;
    const long = (own.values ?? []).find((l) => l.startsWith("--") && l[2] === f[1]);
    if (long !== undefined) options[key(long)]!.short = key(f);
    else options[key(f)] = { type: "string", short: key(f) };
  }
  let parsed: ReturnType<typeof nodeParseArgs>;
  try {
    parsed = nodeParseArgs({ args: withNegativeValues(argv, options), strict: true, allowPositionals: true, options });
  } catch (e) {
    const m = (e as Error).message;
    const unknown = /Unknown option '([^']+)'/.exec(m);
    if (unknown !== null) throw new UsageError(`unknown flag ${unknown[1]}`, usage);
    const missing = /Option '(?:-(\w), )?--?([\w-]+)[^']*' argument missing/.exec(m);
    if (missing !== null)
      throw new UsageError(
        `${missing[2] === "config" ? "-c" : `--${missing[2]}`} needs ${missing[2] === "config" ? "a file name" : "a value"}`,
        usage,
      );
    throw new UsageError(m.split("\n")[0]!, usage);
  }
  const v = parsed.values as Record<string, string | boolean | undefined>;
  const out: ParsedArgs = {
    config: (v.config as string | undefined) ?? null,
    help: v.help === true,
    rest: parsed.positionals,
    flags: new Map(),
    switches: new Set(),
  };
  for (const f of own.values ?? []) {
    const got = v[key(f)];
    if (typeof got === "string") out.flags.set(f, got);
  }
  for (const f of own.switches ?? []) if (v[key(f)] === true) out.switches.add(f);
  return out;
}

/**
 * A flag that takes a value, followed by a negative number ("--limit -1"),
 * given as "--limit=-1": parseArgs would call it ambiguous (it might be a
 * flag), and the command's own check is the one that names the range.
 */
function withNegativeValues(
  argv: readonly string[],
  options: Record<string, { type: "string" | "boolean"; short?: string }>,
): string[] {
  const takesValue = (a: string) => {
    if (a.startsWith("--")) return options[a.slice(2)]?.type === "string";
    return (
      a.length === 2 && a[0] === "-" && Object.values(options).some((o) => o.type === "string" && o.short === a[1])
    );
  };
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--") return [...out, ...argv.slice(i)];
    const next = argv[i + 1];
    if (next !== undefined && /^-\d/.test(next) && takesValue(a)) {
      out.push(a.startsWith("--") ? `${a}=${next}` : `${a}${next}`);
      i++;
    } else out.push(a);
  }
  return out;
}

/** Print a command's usage (for --help): exit code 0. */
export function help(usage: string): number {
  console.log(usage);
  return 0;
}

/** A command that takes only -c FILE: the file, or null for --help. */
export function configArg(args: string[], usage: string): string | null {
  const a = parseArgs(args, usage);
  if (a.help) return null;
  if (a.rest.length > 0) throw new UsageError(`unexpected argument ${a.rest[0]}`, usage);
  if (a.config === null) throw new UsageError("-c FILE is required", usage);
  return a.config;
}
