// What every admin command shares (docs/COMMAND_LINE.md): its options
// (-c FILE or --admin ADDR, --listener, --json), the client — from the
// config's [grpc] section alone, so that a file half edited elsewhere still
// reaches the API, or from --admin and its TLS flags — its output (JSON or
// lines), and --listener's default, asked of the server.
import { accessSync, constants } from "node:fs";
import type { ListRoutesReply } from "../admin/messages";
import { type GrpcConfig, loadGrpcSection } from "../config/config";
import { parseHostPort } from "../net/host_port";
import { AdminClient } from "./admin_client";
import { parseArgs, UsageError } from "./args";

/** The flags every admin command takes to name the API without a config file (or over its [grpc]). */
const TARGET_FLAGS = ["--admin", "--server-ca", "--client-cert", "--client-key"];

/** How every admin command's usage names the API (status, routes, backends, firewall, fingerprints). */
export const ADMIN_TARGET_USAGE = `The admin API is the one named by FILE's [grpc] section (only that section
is read), or --admin ADDR (host:port, or unix:/abs/path/admin.sock) with, for
TLS, --server-ca FILE (else the system's roots) and for mTLS --client-cert
FILE --client-key FILE; with -c as well, [grpc] gives the files not given.`;

/**
 * What is wrong with --admin ADDR, or null: a unix socket by its absolute
 * path, or host:port read by the parser [grpc] addr's is (config/sections.ts),
 * so that nothing reaches grpc-js that the config file would refuse.
 */
export function adminAddrProblem(addr: string): string | null {
  const what = "host:port, or unix:/abs/path/admin.sock";
  if (addr === "") return `--admin "": no address (${what})`;
  if (addr.startsWith("unix:")) {
    if (addr === "unix:") return `--admin unix:: names no socket path (${what})`;
    if (!addr.startsWith("unix:/"))
      return `--admin ${addr}: a unix socket needs an absolute path (unix:/abs/path/admin.sock)`;
    return null;
  }
  const hp = parseHostPort(addr, { allowEmptyHost: true });
  return hp.ok ? null : `--admin ${JSON.stringify(addr)}: ${hp.error} (${what})`;
}

export interface Opts {
  /** The admin API to call: the [grpc] section, or one made of --admin and its flags. */
  admin: GrpcConfig;
  json: boolean;
  listener: string | null;
  /** The command's own flags with values. */
  values: Map<string, string>;
  rest: string[];
}

export function options(args: string[], usage: string, allowListener: boolean, values: string[] = []): Opts | null {
  const a = parseArgs(args, usage, {
    values: [...(allowListener ? ["--listener"] : []), ...TARGET_FLAGS, ...values],
    switches: ["--json"],
  });
  if (a.help) return null;
  return {
    admin: target(a.config, a.flags, usage),
    json: a.switches.has("--json"),
    listener: a.flags.get("--listener") ?? null,
    values: a.flags,
    rest: a.rest,
  };
}

/** -c FILE's [grpc], --admin ADDR's flags, or both (the flags win). */
function target(file: string | null, flags: Map<string, string>, usage: string): GrpcConfig {
  const addr = flags.get("--admin");
  const tlsFlags = TARGET_FLAGS.filter((f) => f !== "--admin" && flags.has(f));
  if (addr === undefined && file === null) throw new UsageError("-c FILE or --admin ADDR is required", usage);
  if (addr === undefined && tlsFlags.length > 0) throw new UsageError(`${tlsFlags[0]} goes with --admin ADDR`, usage);
  const grpc = file === null ? null : loadGrpcSection(file);
  if (addr === undefined) {
    if (grpc === null)
      throw new Error(`${file}: no [grpc] section: the admin API is not configured (or give --admin ADDR)`);
    return grpc;
  }
  const bad = adminAddrProblem(addr);
  if (bad !== null) throw new UsageError(bad, usage);
  if (addr.startsWith("unix:") && tlsFlags.length > 0)
    throw new UsageError(`${tlsFlags[0]}: a unix socket is plaintext (its file mode guards it)`, usage);
  const flag = (f: string): string | null => {
    const p = flags.get(f);
    if (p === undefined) return null;
    try {
      accessSync(p, constants.R_OK);
    } catch (e) {
      throw new UsageError(`${f} ${p}: cannot read it: ${(e as Error).message}`, usage);
    }
    return p;
  };
  const clientCert = flag("--client-cert") ?? grpc?.clientCert ?? null;
  const clientKey = flag("--client-key") ?? grpc?.clientKey ?? null;
  if ((clientCert === null) !== (clientKey === null))
    throw new UsageError("--client-cert and --client-key go together (a certificate and its key)", usage);
  return {
    addr,
    // The CA the server's certificate is checked against (none: the system's roots).
    serverCa: flag("--server-ca") ?? grpc?.serverCa ?? grpc?.tlsCert ?? null,
    clientCert,
    clientKey,
    tlsCert: null,
    tlsKey: null,
    clientCa: null,
    allowUnauthenticatedAdmin: false,
    adminClients: null,
  };
}

export function client(o: Opts): AdminClient {
  return new AdminClient(o.admin);
}

export function print(json: boolean, value: unknown, human: () => string): void {
  console.log(json ? JSON.stringify(value, null, 2) : human());
}

/**
 * --listener, or the only listener with routes of its own, as the running
 * server names it (ListRoutes): the file is not read for it.
 */
export async function listenerOf(o: Opts, usage: string, c: AdminClient): Promise<string> {
  if (o.listener !== null) return o.listener;
  const r = await c.call<ListRoutesReply>("ListRoutes", { listener: "" });
  if (r.listeners.length === 1) return r.listeners[0]!.listener;
  throw new UsageError(
    `--listener ADDR is required: the server has ${r.listeners.length} listeners (${r.listeners.map((l) => l.listener).join(", ")})`,
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
