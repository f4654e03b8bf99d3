// The command line: dispatch and usage. Usage errors exit 2, configuration
// errors exit 1, a clean stop exits 0. Each command lives in its own file:
// server_command.ts, check_command.ts, reload_command.ts; status_command.ts,
// routes_command.ts, firewall_command.ts, backends_command.ts,
// fingerprints_command.ts (through the admin API); store_commands.ts (offline);
// passwd_command.ts (a dashboard password's hash).
import { ConfigError } from "../config/config";
import { StoreError } from "../store/config_store";
import { VERSION } from "../version";
import { AdminCallError } from "./admin_client";
import { UsageError, help, parseArgs } from "./args";
import { backends } from "./backends_command";
import { check } from "./check_command";
import { fingerprints } from "./fingerprints_command";
import { firewall } from "./firewall_command";
import { passwd } from "./passwd_command";
import { reload } from "./reload_command";
import { routes } from "./routes_command";
import { server } from "./server_command";
import { status } from "./status_command";
import { snapshot, storeCommand } from "./store_commands";

const MAIN_USAGE = `mc-proxy ${VERSION} — Layer 4 TLS SNI router

Usage:
  mc-proxy server -c FILE                run the proxy
  mc-proxy check -c FILE                 validate a config file and exit (0 = valid)
  mc-proxy reload -c FILE                apply FILE by a takeover: no connection refused
  mc-proxy status -c FILE                status of the running instance (admin API)
  mc-proxy routes list|add|remove ...    show or change routes (admin API)
  mc-proxy firewall list|add|remove ...  show or change firewall rules (admin API)
  mc-proxy backends list|drain|enable|disable ...  a route pool's backends (admin API)
  mc-proxy fingerprints -c FILE          the JA4 fingerprints seen most (admin API)
  mc-proxy snapshot -c FILE [-o PATH] [--keep N]  copy the database (or the etcd fleet's state)
  mc-proxy store import -c FILE SNAPSHOT.db       load a snapshot into an empty etcd prefix
  mc-proxy passwd < FILE                 a dashboard password's argon2id hash (stdin: one line)
  mc-proxy version                       print the version
  mc-proxy COMMAND --help                help for a command

Environment: MCPROXY_<SECTION>_<KEY> overrides a config value,
e.g. MCPROXY_PROXY_IDLE_TIMEOUT=10m, MCPROXY_LOG_LEVEL=debug.`;

const VERSION_USAGE = `Usage: mc-proxy version

Prints the version.`;

export async function runCli(argv: string[]): Promise<number> {
  const [cmd, ...args] = argv;
  try {
    switch (cmd) {
      case undefined:
        throw new UsageError("no command given", MAIN_USAGE);
      case "-h":
      case "--help":
      case "help":
        console.log(MAIN_USAGE);
        return 0;
      case "version":
      case "--version": {
        const a = parseArgs(args, VERSION_USAGE);
        if (a.help) return help(VERSION_USAGE);
        if (a.rest.length > 0) throw new UsageError(`unexpected argument ${a.rest[0]}`, VERSION_USAGE);
        console.log(`mc-proxy ${VERSION} (bun ${Bun.version})`);
        return 0;
      }
      case "check":
        return await check(args);
      case "status":
        return await status(args);
      case "routes":
        return await routes(args);
      case "firewall":
        return await firewall(args);
      case "backends":
        return await backends(args);
      case "fingerprints":
        return await fingerprints(args);
      case "snapshot":
        return await snapshot(args);
      case "store":
        return await storeCommand(args);
      case "server":
        return await server(args);
      case "reload":
        return await reload(args);
      case "passwd":
        return await passwd(args);
      default:
        throw new UsageError(`unknown command "${cmd}"`, MAIN_USAGE);
    }
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`mc-proxy: ${e.message}\n\n${e.usage}`);
      return 2;
    }
    if (e instanceof AdminCallError) {
      console.error(`mc-proxy: ${e.message}`);
      return 1;
    }
    if (e instanceof ConfigError || e instanceof StoreError) {
      console.error(e.message);
      return 1;
    }
    console.error(`mc-proxy: ${(e as Error).message}`);
    return 1;
  }
}
