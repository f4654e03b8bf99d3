// `mc-proxy check -c FILE`: the server's preflight (startup/preflight.ts) —
// the config and the files it names (the GeoIP database, the admin API's and
// etcd's certificates, each key matching its certificate) — and nothing
// else: every problem with its key, exit 1; or a summary, warnings and what a
// start or reload would apply from the file (check_plan.ts), exit 0.
import { formatDuration } from "../config/duration";
import { routeOwners } from "../config/listeners";
import { availableCpus, capacityWarning, needsOf, readFdLimits } from "../server/host_limits";
import { configArg, help } from "./args";
import { planReport } from "./check_plan";
import { preflight } from "./startup/preflight";

export const CHECK_USAGE = `Usage: mc-proxy check -c FILE

Validates FILE (TOML) and the files it names (GeoIP database, admin API
certificates); prints every problem with its key and exits 1, or prints a
summary and what a start or reload would apply from FILE to the store the
running instance uses (read-only: docs/CONFIGURATION.md "The file and the
API"), and exits 0 — or 1 when the store would refuse that start (a
database of a newer release, a route that clashes with one the API added).`;

export async function check(args: string[]): Promise<number> {
  const file = configArg(args, CHECK_USAGE);
  if (file === null) return help(CHECK_USAGE);
  const { config: cfg, warnings } = preflight(file);
  // The listeners' limits as the file sets them (the server warns again with the store's).
  const capacity = capacityWarning(
    cfg.listeners.map((l) => l.maxConnections),
    readFdLimits(),
    needsOf(cfg, cfg.proxy.workers === "auto" ? availableCpus() : cfg.proxy.workers),
  );
  for (const w of [...(capacity === null ? [] : [capacity]), ...warnings]) console.error(`${file}: warning: ${w}`);
  const routes = routeOwners(cfg).reduce((n, l) => n + l.routes.length, 0);
  const store = cfg.store === "etcd" ? `etcd ${cfg.etcd!.endpoints.join(",")}${cfg.etcd!.prefix}` : "sqlite";
  console.log(
    `${file}: OK — ${cfg.listeners.length + cfg.quicListeners.length} listener(s), ${routes} route(s), ` +
      `connect_timeout=${formatDuration(cfg.proxy.connectTimeoutMs)} idle_timeout=${formatDuration(cfg.proxy.idleTimeoutMs)} ` +
      `hello_timeout=${formatDuration(cfg.proxy.helloTimeoutMs)} store ${store} ` +
      `admin API ${cfg.grpc === null ? "off" : cfg.grpc.addr} metrics ${cfg.metrics === null ? "off" : `${cfg.metrics.addr}${cfg.metrics.path}`}`,
  );
  const plan = await planReport(cfg);
  console.log(`${file}: ${plan.line}`);
  for (const p of plan.problems) console.error(`${file}: ${p}`);
  return plan.problems.length > 0 ? 1 : 0;
}
