// What every admin command shares (docs/COMMAND_LINE.md): its options
// (-c FILE, --listener, --json), the client from the config's [grpc] section,
// its output (JSON or lines), and --listener's default.
import { routeOwners } from "../config/listeners";
import { type RoutedConfig as Config, loadRoutedConfig } from "../routing/route_config";
import { AdminClient } from "./admin_client";
import { parseArgs, UsageError } from "./args";

export interface Opts {
  cfg: Config;
  json: boolean;
  listener: string | null;
  /** The command's own flags with values. */
  values: Map<string, string>;
  rest: string[];
}

export function options(args: string[], usage: string, allowListener: boolean, values: string[] = []): Opts | null {
  const a = parseArgs(args, usage, {
    values: [...(allowListener ? ["--listener"] : []), ...values],
    switches: ["--json"],
  });
  if (a.help) return null;
  if (a.config === null) throw new UsageError("-c FILE is required", usage);
  return {
    cfg: loadRoutedConfig(a.config),
    json: a.switches.has("--json"),
    listener: a.flags.get("--listener") ?? null,
    values: a.flags,
    rest: a.rest,
  };
}

export function client(cfg: Config): AdminClient {
  if (cfg.grpc === null) throw new Error(`${cfg.file}: no [grpc] section: the admin API is not configured`);
  return new AdminClient(cfg.grpc);
}

export function print(json: boolean, value: unknown, human: () => string): void {
  console.log(json ? JSON.stringify(value, null, 2) : human());
}

/** --listener, or the only listener with routes of its own in the config (config/listeners.ts routeOwners). */
export function listenerOf(o: Opts, usage: string): string {
  if (o.listener !== null) return o.listener;
  const owners = routeOwners(o.cfg);
  // A TCP listener by its addr, as before; a QUIC one by its name (its addr in the admin API is "ADDR/quic").
  if (owners.length === 1) return owners[0]!.protocol === "tcp" ? owners[0]!.addr : owners[0]!.name;
  throw new UsageError(
    `--listener ADDR is required: the config has ${owners.length} listeners (${owners.map((l) => l.addr).join(", ")})`,
    usage,
  );
}

/**
 * --alpn's protocols (absent: none, the plain route). An empty protocol id
 * is invalid (RFC 7301 §3.1: each is 1-255 bytes), so "--alpn ''" or a
 * stray "," is refused rather than read as the plain route.
 */
export function alpnList(v: string | undefined, usage: string): string[] {
  if (v === undefined) return [];
  const l = v.split(",");
  if (l.includes(""))
    throw new UsageError(
      `--alpn ${JSON.stringify(v)}: an empty protocol name (RFC 7301 §3.1: each is 1-255 bytes); leave --alpn out for the plain route`,
      usage,
    );
  return l;
}

export function noArgs(o: Opts, usage: string): void {
  if (o.rest.length > 0) throw new UsageError(`unexpected argument ${o.rest[0]}`, usage);
}
