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
  /** Flags that take a value (e.g. --listener ADDR), by name. */
  flags: Map<string, string>;
  /** Flags without a value that were given (e.g. --json). */
  switches: Set<string>;
}

/**
 * Parse `-c FILE` / `--config FILE` / `--config=FILE`, `-h` / `--help`, and
 * the command's own flags; anything else starting with "-" is an error.
 */
export function parseArgs(argv: string[], usage: string, own: { values?: string[]; switches?: string[] } = {}): ParsedArgs {
  const out: ParsedArgs = { config: null, help: false, rest: [], flags: new Map(), switches: new Set() };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const eq = a.indexOf("=");
    const name = a.startsWith("--") && eq > 0 ? a.slice(0, eq) : a;
    const inline = name === a ? undefined : a.slice(eq + 1);
    if (a === "-h" || a === "--help") out.help = true;
    else if (name === "-c" || name === "--config" || own.values?.includes(name)) {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new UsageError(`${name} needs ${name === "-c" || name === "--config" ? "a file name" : "a value"}`, usage);
      if (name === "-c" || name === "--config") out.config = v;
      else out.flags.set(name, v);
    } else if (own.switches?.includes(a)) out.switches.add(a);
    else if (a.startsWith("-") && a !== "-") throw new UsageError(`unknown flag ${a}`, usage);
    else out.rest.push(a);
  }
  return out;
}
