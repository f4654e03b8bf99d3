// `mc-proxy check -c FILE`: validate the config and the files it names (the
// GeoIP database, the admin API's and etcd's certificates, each key matching
// its certificate); every problem with its key, exit 1 — or a summary and
// warnings, exit 0.
import { readFileSync } from "node:fs";
import { AdminServer } from "../admin/grpc_server";
import { ConfigError, readGrpcFile } from "../config/config";
import { loadRoutedConfig } from "../routing/route_config";
import { formatDuration } from "../config/duration";
import { CountryDatabase } from "../firewall/country_database";
import { keyPairError } from "../net/key_pair";
import { controlPath, controlPathError } from "../server/handover";
import { availableCpus, capacityWarning, migrateWarning, needsOf, readFdLimits } from "../server/host_limits";
import { configArg, help } from "./args";

export const CHECK_USAGE = `Usage: mc-proxy check -c FILE

Validates FILE (TOML) and the files it names (GeoIP database, admin API
certificates); prints every problem with its key and exits 1, or prints a
summary and exits 0.`;

export function check(args: string[]): number {
  const file = configArg(args, CHECK_USAGE);
  if (file === null) return help(CHECK_USAGE);
  const cfg = loadRoutedConfig(file);
  if (cfg.firewall.geoipDb !== null) CountryDatabase.open(cfg.firewall.geoipDb);
  // The admin API's certificate files must be readable by the server, and
  // its key the certificate's: the same loading the server does before it
  // binds anything (AdminServer.prepare).
  if (cfg.grpc !== null) {
    const unreadable: string[] = [];
    for (const [key, path] of [
      ["tls_cert", cfg.grpc.tlsCert],
      ["tls_key", cfg.grpc.tlsKey],
      ["client_ca", cfg.grpc.clientCa],
    ] as const) {
      try {
        readGrpcFile(key, path);
      } catch (e) {
        unreadable.push((e as Error).message);
      }
    }
    if (unreadable.length > 0) throw new ConfigError(file, unreadable);
    try {
      AdminServer.prepare(cfg.grpc);
    } catch (e) {
      throw new ConfigError(file, [(e as Error).message]);
    }
  }
  if (cfg.etcd !== null) {
    const unreadable: string[] = [];
    for (const [key, path] of [
      ["ca", cfg.etcd.ca],
      ["cert", cfg.etcd.cert],
      ["key", cfg.etcd.key],
    ] as const) {
      if (path === null) continue;
      try {
        readFileSync(path);
      } catch (e) {
        unreadable.push(`etcd.${key}: cannot read ${path}: ${(e as Error).message}`);
      }
    }
    if (unreadable.length > 0) throw new ConfigError(file, unreadable);
    if (cfg.etcd.cert !== null && cfg.etcd.key !== null) {
      const mismatch = keyPairError(readFileSync(cfg.etcd.cert), readFileSync(cfg.etcd.key), { key: "etcd.cert", path: cfg.etcd.cert }, { key: "etcd.key", path: cfg.etcd.key });
      if (mismatch !== null) throw new ConfigError(file, [mismatch]);
    }
  }
  const limits = readFdLimits();
  const warning = capacityWarning(
    cfg.listeners.map((l) => l.maxConnections),
    limits,
    needsOf(cfg, cfg.proxy.workers === "auto" ? availableCpus() : cfg.proxy.workers),
  );
  if (warning !== null) console.error(`${file}: warning: ${warning}`);
  const migrate = migrateWarning();
  if (migrate !== null) console.error(`${file}: warning: ${migrate}`);
  const control = controlPathError(controlPath(cfg.databasePath));
  if (control !== null) throw new ConfigError(file, [control]);
  for (const w of cfg.warnings) console.error(`${file}: warning: ${w}`);
  const routes = cfg.listeners.reduce((n, l) => n + l.routes.length, 0);
  console.log(
    `${file}: OK — ${cfg.listeners.length} listener(s), ${routes} route(s), ` +
      `connect_timeout=${formatDuration(cfg.proxy.connectTimeoutMs)} idle_timeout=${formatDuration(cfg.proxy.idleTimeoutMs)} ` +
      `hello_timeout=${formatDuration(cfg.proxy.helloTimeoutMs)} store ${cfg.store === "etcd" ? `etcd ${cfg.etcd!.endpoints.join(",")}${cfg.etcd!.prefix}` : "sqlite"} admin API ${cfg.grpc === null ? "off" : cfg.grpc.addr} metrics ${cfg.metrics === null ? "off" : `${cfg.metrics.addr}${cfg.metrics.path}`}`,
  );
  return 0;
}
