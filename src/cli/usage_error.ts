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
  rest: string[];
}

/** Parse `-c FILE` / `--config FILE` / `--config=FILE` and `-h` / `--help`; anything else unknown is an error. */
export function parseArgs(argv: string[], usage: string, extraFlags: string[] = []): ParsedArgs & { flags: Map<string, string> } {
  const out = { config: null as string | null, help: false, rest: [] as string[], flags: new Map<string, string>() };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "-h" || a === "--help") out.help = true;
    else if (a === "-c" || a === "--config") {
      const v = argv[++i];
      if (v === undefined) throw new UsageError(`${a} needs a file name`, usage);
      out.config = v;
    } else if (a.startsWith("--config=")) out.config = a.slice("--config=".length);
    else if (extraFlags.includes(a.split("=")[0]!)) {
      const [name, inline] = a.includes("=") ? [a.slice(0, a.indexOf("=")), a.slice(a.indexOf("=") + 1)] : [a, undefined];
      const v = inline ?? argv[++i];
      if (v === undefined) throw new UsageError(`${name} needs a value`, usage);
      out.flags.set(name, v);
    } else if (a.startsWith("-") && a !== "-") throw new UsageError(`unknown flag ${a}`, usage);
    else out.rest.push(a);
  }
  return out;
}
