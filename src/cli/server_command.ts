// `mc-proxy server -c FILE`: start-up, in order — the config, the store
// (SQLite, or etcd with its last-known-good copy), the data plane (the one
// control plane and its loops), the metrics, the admin API, the signals —
// then wait for the drain.
import { readFileSync } from "node:fs";
import { AdminService } from "../admin/admin_service";
import { AdminServer } from "../admin/grpc_server";
import { type RoutedConfig as Config, loadRoutedConfig } from "../routing/route_config";
import { Logger } from "../log/logger";
import { MetricsServer } from "../metrics/http";
import { Metrics } from "../metrics/metrics";
import { bindHost } from "../net/host_port";
import { ControlPlane } from "../server/control_plane";
import type { DataPlane } from "../server/data_plane";
import { availableCpus, capacityWarning, connectionCap, needsOf, readFdLimits, reservedFds } from "../server/host_limits";
import { collectStartupGarbage } from "../server/startup_gc";
import { type ConfigStore, type StoreState, rulesFromStore } from "../store/config_store";
import { EtcdConfigStore, type SeedInput } from "../store/etcd_store";
import { SqliteConfigStore } from "../store/sqlite_config_store";
import { SqliteDatabase } from "../store/sqlite_database";
import { VERSION } from "../version";
import { configArg, help } from "./args";

export const SERVER_USAGE = `Usage: mc-proxy server -c FILE

Runs the proxy with the config FILE (TOML).
Signals: SIGINT/SIGTERM drain and stop (a second one exits at once);
SIGHUP reloads the GeoIP database.`;

export async function server(args: string[]): Promise<number> {
  const file = configArg(args, SERVER_USAGE);
  if (file === null) return help(SERVER_USAGE);
  const loaded = loadRoutedConfig(file);
  const logger = new Logger(loaded.log.level, loaded.log.format);
  const seed: SeedInput = {
    listeners: loaded.listeners.map((l) => ({ name: l.name, maxConnections: l.maxConnections, routes: l.routes })),
    rules: [
      ...loaded.firewall.blockedIps.map((value) => ({ type: "ip" as const, value })),
      ...loaded.firewall.blockedCidrs.map((value) => ({ type: "cidr" as const, value })),
      ...loaded.firewall.blockedCountries.map((value) => ({ type: "country" as const, value })),
      ...loaded.firewall.blockedJa4.map((value) => ({ type: "ja4" as const, value })),
    ],
  };
  for (const w of loaded.warnings) logger.warn(w);
  // docs/PERFORMANCE.md "The allocator": freed memory purged after 10 ms is
  // faulted back in on the next reads; the unit and the image keep it.
  const purge = process.env.MIMALLOC_PURGE_DELAY;
  logger.info("memory allocator", {
    purge_delay: purge ?? "default (10 ms)",
    ...(purge === undefined ? { hint: "set MIMALLOC_PURGE_DELAY=-1 (the systemd unit and the image do) to keep freed memory for reuse: about 0.1 s less CPU per relayed GB" } : {}),
  });
  // SQLite is the store itself, or with etcd its last-known-good copy.
  const db = SqliteDatabase.open(loaded.databasePath);
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
function seedForFleet(db: SqliteDatabase, toml: SeedInput, logger: Logger): SeedInput {
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
async function serve(file: string, cfg: Config, logger: Logger, db: SqliteDatabase, openStore: (plane: DataPlane) => ConfigStore): Promise<number> {
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
    firewall: { ...cfg.firewall, blockedIps: [...rules.blockedIps], blockedCidrs: [...rules.blockedCidrs], blockedCountries: [...rules.blockedCountries], blockedJa4: [...rules.blockedJa4] },
  };
}
