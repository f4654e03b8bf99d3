// The command line: `mc-proxy server|check|version`. Usage errors exit 2,
// configuration errors exit 1, a clean stop exits 0.
import { readFileSync } from "node:fs";
import { AdminService } from "../admin/admin_service";
import { AdminServer } from "../admin/grpc_server";
import { type Config, ConfigError, loadConfig, readGrpcFile } from "../config/config";
import { formatDuration } from "../config/duration";
import { CountryDatabase } from "../firewall/country_database";
import { Logger } from "../log/logger";
import { availableCpus, capacityWarning, connectionCap, needsOf, readFdLimits, reservedFds } from "../server/host_limits";
import { MetricsServer } from "../metrics/http";
import { Metrics } from "../metrics/metrics";
import type { DataPlane } from "../server/data_plane";
import { ControlPlane } from "../server/control_plane";
import { collectStartupGarbage } from "../server/startup_gc";
import { type ConfigStore, SqliteConfigStore, rulesFromStore } from "../store/config_store";
import { EtcdConfigStore, type SeedInput } from "../store/etcd_store";
import { Store, StoreError, type StoreState } from "../store/store";
import { VERSION } from "../version";
import { AdminCallError } from "./admin_client";
import { backends, firewall, routes, snapshot, status, storeCommand } from "./admin_commands";
import { parseArgs, UsageError } from "./usage_error";
import { bindHost } from "../net/host_port";

const MAIN_USAGE = `mc-proxy ${VERSION} — Layer 4 TLS SNI router

Usage:
  mc-proxy server -c FILE                run the proxy
  mc-proxy check -c FILE                 validate a config file and exit (0 = valid)
  mc-proxy status -c FILE                status of the running instance (admin API)
  mc-proxy routes list|add|remove ...    show or change routes (admin API)
  mc-proxy firewall list|add|remove ...  show or change firewall rules (admin API)
  mc-proxy backends list|drain|enable|disable ...  a route pool's backends (admin API)
  mc-proxy snapshot -c FILE [-o PATH] [--keep N]  copy the database (or the etcd fleet's state)
  mc-proxy store import -c FILE SNAPSHOT.db       load a snapshot into an empty etcd prefix
  mc-proxy version                       print the version
  mc-proxy COMMAND --help                help for a command

Environment: MCPROXY_<SECTION>_<KEY> overrides a config value,
e.g. MCPROXY_PROXY_IDLE_TIMEOUT=10m, MCPROXY_LOG_LEVEL=debug.`;

const SERVER_USAGE = `Usage: mc-proxy server -c FILE

Runs the proxy with the config FILE (TOML).
Signals: SIGINT/SIGTERM drain and stop (a second one exits at once);
SIGHUP reloads the GeoIP database.`;

const CHECK_USAGE = `Usage: mc-proxy check -c FILE

Validates FILE (TOML) and the files it names (GeoIP database, admin API
certificates); prints every problem with its key and exits 1, or prints a
summary and exits 0.`;

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
        return check(args);
      case "status":
        return await status(args);
      case "routes":
        return await routes(args);
      case "firewall":
        return await firewall(args);
      case "backends":
        return await backends(args);
      case "snapshot":
        return await snapshot(args);
      case "store":
        return await storeCommand(args);
      case "server":
        return await server(args);
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

function help(usage: string): number {
  console.log(usage);
  return 0;
}

function configArg(args: string[], usage: string): string | null {
  const a = parseArgs(args, usage);
  if (a.help) return null;
  if (a.rest.length > 0) throw new UsageError(`unexpected argument ${a.rest[0]}`, usage);
  if (a.config === null) throw new UsageError("-c FILE is required", usage);
  return a.config;
}

function check(args: string[]): number {
  const file = configArg(args, CHECK_USAGE);
  if (file === null) return help(CHECK_USAGE);
  const cfg = loadConfig(file);
  if (cfg.firewall.geoipDb !== null) CountryDatabase.open(cfg.firewall.geoipDb);
  // The admin API's certificate files must be readable by the server.
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
  }
  const limits = readFdLimits();
  const warning = capacityWarning(
    cfg.listeners.map((l) => l.maxConnections),
    limits,
    needsOf(cfg, cfg.proxy.workers === "auto" ? availableCpus() : cfg.proxy.workers),
  );
  if (warning !== null) console.error(`${file}: warning: ${warning}`);
  for (const w of cfg.warnings) console.error(`${file}: warning: ${w}`);
  const routes = cfg.listeners.reduce((n, l) => n + l.routes.length, 0);
  console.log(
    `${file}: OK — ${cfg.listeners.length} listener(s), ${routes} route(s), ` +
      `connect_timeout=${formatDuration(cfg.proxy.connectTimeoutMs)} idle_timeout=${formatDuration(cfg.proxy.idleTimeoutMs)} ` +
      `hello_timeout=${formatDuration(cfg.proxy.helloTimeoutMs)} store ${cfg.store === "etcd" ? `etcd ${cfg.etcd!.endpoints.join(",")}${cfg.etcd!.prefix}` : "sqlite"} admin API ${cfg.grpc === null ? "off" : cfg.grpc.addr} metrics ${cfg.metrics === null ? "off" : `${cfg.metrics.addr}${cfg.metrics.path}`}`,
  );
  return 0;
}

async function server(args: string[]): Promise<number> {
  const file = configArg(args, SERVER_USAGE);
  if (file === null) return help(SERVER_USAGE);
  const loaded = loadConfig(file);
  const logger = new Logger(loaded.log.level, loaded.log.format);
  const seed: SeedInput = {
    listeners: loaded.listeners.map((l) => ({ name: l.name, maxConnections: l.maxConnections, routes: l.routes })),
    rules: [
      ...loaded.firewall.blockedIps.map((value) => ({ type: "ip" as const, value })),
      ...loaded.firewall.blockedCidrs.map((value) => ({ type: "cidr" as const, value })),
      ...loaded.firewall.blockedCountries.map((value) => ({ type: "country" as const, value })),
    ],
  };
  for (const w of loaded.warnings) logger.warn(w);
  // SQLite is the store itself, or with etcd its last-known-good copy.
  const db = Store.open(loaded.databasePath);
  try {
    if (loaded.store === "etcd") {
      const fleetSeed = seedForFleet(db, seed, logger);
      const etcd = await EtcdConfigStore.open(loaded.etcd!, db, fleetSeed, logger);
      db.setRole("etcd-cache");
      logger.info("store ready", { store: etcd.describe(), cache: db.path });
      try {
        return await serve(file, effectiveConfig(loaded, etcd.current()), logger, db, (plane) => {
          etcd.attach(plane);
          return etcd;
        });
      } finally {
        etcd.close();
      }
    }
    // The database is the source of truth for routes, rules and limits once
    // seeded; listener addresses always come from the TOML.
    if (db.role() !== "sqlite") db.setRole("sqlite");
    const seeded = db.seed(
      seed.listeners.map((l) => ({ addr: l.name, maxConnections: l.maxConnections, routes: l.routes })),
      seed.rules,
    );
    logger.info("database ready", { path: db.path, created: seeded.created, seeded_listeners: seeded.seededListeners });
    return await serve(file, effectiveConfig(loaded, db.state()), logger, db, (plane) => new SqliteConfigStore(db, plane));
  } finally {
    logger.flush();
    db.close();
  }
}

/**
 * Switching [store] backend from sqlite to etcd: the file at [database] path
 * holds what the admin API made, and from now on it becomes the fleet's
 * last-known-good copy, which etcd's state overwrites. Nothing is lost: the
 * file is first copied beside itself (PATH.sqlite-<time>), and its routes,
 * rules and limits — not the TOML's — seed a fleet that has not been seeded
 * yet, exactly as that SQLite store would have served them. A file already
 * used as an etcd cache (or new) seeds from the TOML, as before.
 */
function seedForFleet(db: Store, toml: SeedInput, logger: Logger): SeedInput {
  const role = db.role();
  if (db.created || role === "etcd-cache" || !db.holdsState) return toml;
  const copy = `${db.path}.sqlite-${new Date().toISOString().replace(/[:.]/g, "-")}`;
  db.snapshot(copy);
  const state = db.state();
  logger.warn("etcd: the database was a SQLite store; it becomes the fleet's last-known-good copy. A copy is kept, and its state seeds the fleet if the fleet is new", {
    database: db.path,
    copy,
    role: role ?? "unknown (schema 3 or older)",
    routes: [...state.listeners.values()].reduce((n, l) => n + l.routes.length, 0),
    rules: state.rules.length,
  });
  // The listeners this config serves, each as the database holds it (a listener new to the TOML from the TOML).
  const listeners = toml.listeners.map((l) => {
    const stored = state.listeners.get(l.name);
    return stored === undefined ? l : { name: l.name, maxConnections: stored.maxConnections, routes: stored.routes };
  });
  return { listeners, rules: state.rules };
}

/**
 * Run the data plane, then the store (made by `openStore` once the data
 * plane exists, since it applies changes to it), the metrics and the admin API.
 */
async function serve(file: string, cfg: Config, logger: Logger, db: Store, openStore: (plane: DataPlane) => ConfigStore): Promise<number> {
  const workers = cfg.proxy.workers === "auto" ? availableCpus() : cfg.proxy.workers;
  const limits = readFdLimits();
  const needs = needsOf(cfg, workers);
  const cap = connectionCap(limits, needs);
  const show = (n: number | undefined) => (n === undefined ? null : Number.isFinite(n) ? n : "unlimited");
  const reserved = limits === null || !Number.isFinite(limits.soft) ? null : reservedFds(needs, limits.soft);
  logger.info("file descriptor limit", { soft: show(limits?.soft), hard: show(limits?.hard), connection_cap: cap, reserved_fds: reserved });
  const warning = capacityWarning(
    cfg.listeners.map((l) => l.maxConnections),
    limits,
    needs,
  );
  if (warning !== null) logger.warn(warning);
  const histograms = cfg.metrics !== null;
  // With SO_REUSEPORT (workers > 1) a second instance would silently share
  // the ports: bind each address once without it first, so that one already
  // served by another process fails here, naming it.
  if (workers > 1) probeListeners(cfg);
  const plane = await ControlPlane.start(cfg, logger, { loops: workers, histograms, connectionCap: cap });
  for (const l of plane.listeners) logger.info("listening", { listener: l.addr, routes: l.table.size, max_connections: l.maxConnections, workers });
  // Serving: from here a write never waits inside SQLite for another process's lock.
  db.serving();
  const store = openStore(plane);
  let admin: AdminServer | null = null;
  let metricsServer: MetricsServer | null = null;
  const metrics = cfg.metrics === null ? null : new Metrics(plane, store);
  let started = false;
  try {
    if (cfg.metrics !== null) {
      const readiness = { notReady: () => (plane.isDraining ? "draining" : started ? null : "starting"), note: () => (store.stale ? `store: ${store.describe()}` : null) };
      metricsServer = MetricsServer.start(cfg.metrics, metrics!, readiness, logger);
    }
    if (cfg.grpc !== null) {
      const service = new AdminService(plane, store, logger, { unauthenticatedAdmin: cfg.grpc.allowUnauthenticatedAdmin });
      admin = await AdminServer.start(cfg.grpc, service, logger, (method, code) => metrics?.adminRequests.labels(method, code).inc());
    }
  } catch (e) {
    plane.shutdown();
    metricsServer?.stop();
    throw e;
  }
  started = true;
  logger.info("started", { version: VERSION, pid: process.pid, config: file, workers });
  collectStartupGarbage(logger, "main");
  let signals = 0;
  const onStop = (sig: string) => {
    signals++;
    if (signals > 1) {
      logger.warn("second signal: exiting now", { signal: sig });
      logger.flush();
      process.exit(0);
    }
    logger.info("signal received", { signal: sig });
    admin?.stop();
    plane.shutdown();
  };
  process.on("SIGINT", () => onStop("SIGINT"));
  process.on("SIGTERM", () => onStop("SIGTERM"));
  process.on("SIGHUP", () => {
    void plane.reloadGeoIp().then((result) => {
      if (result !== null) metrics?.geoipReloads.labels(result).inc();
    });
  });
  // Fault injection for the tests only: with MC_PROXY_TEST_WORKER_CRASH=FILE,
  // SIGUSR2 makes the worker whose id FILE holds throw an uncaught error.
  const crashFile = process.env.MC_PROXY_TEST_WORKER_CRASH;
  if (crashFile !== undefined) process.on("SIGUSR2", () => plane.crash(Number(readFileSync(crashFile, "utf8").trim())));
  const code = await plane.done;
  admin?.stop();
  const s = await plane.snapshot().catch(() => null);
  const total = s === null ? null : s.listeners.reduce((n, l) => n + l.closed.reduce((a, b) => a + b, 0), 0);
  // The metrics listener closes last: through the drain it is how a balancer learns we are going.
  metricsServer?.stop();
  // Last line: every access record (from every worker) is written before it.
  logger.info("stopped", { connections_total: total, exit_code: code });
  return code;
}

/** Bind each listener address once without SO_REUSEPORT and let it go: EADDRINUSE means another process serves it. */
function probeListeners(cfg: Config): void {
  cfg.listeners.forEach((l, i) => {
    try {
      const s = Bun.listen({ hostname: bindHost(l.bind.host), port: l.bind.port, socket: { data() {} } });
      s.stop(true);
    } catch (e) {
      throw new Error(`listeners[${i}].addr "${l.addr}": cannot listen: ${(e as Error).message} (is another mc-proxy serving it?)`);
    }
  });
}

/** The config with routes, firewall rules and connection limits as the store holds them (listeners by name). */
function effectiveConfig(cfg: Config, state: StoreState): Config {
  const rules = rulesFromStore(state.rules);
  return {
    ...cfg,
    listeners: cfg.listeners.map((l) => {
      const stored = state.listeners.get(l.name);
      return stored === undefined ? l : { ...l, maxConnections: stored.maxConnections, routes: stored.routes };
    }),
    firewall: { ...cfg.firewall, blockedIps: [...rules.blockedIps], blockedCidrs: [...rules.blockedCidrs], blockedCountries: [...rules.blockedCountries] },
  };
}
