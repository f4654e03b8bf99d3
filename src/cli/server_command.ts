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
import { availableCpus, capacityWarning, connectionCap, migrateWarning, needsOf, readFdLimits, reservedFds } from "../server/host_limits";
import { collectStartupGarbage } from "../server/startup_gc";
import { type ConfigStore, type StoreState, rulesFromStore } from "../store/config_store";
import { EtcdConfigStore, type SeedInput } from "../store/etcd_store";
import { SqliteConfigStore } from "../store/sqlite_config_store";
import { SqliteDatabase } from "../store/sqlite_database";
import { VERSION } from "../version";
import { UsageError, help, parseArgs } from "./args";
import { selfCommand } from "./reload_command";
import { bindRetrying } from "../net/bind_retry";
import { notifyReady } from "../server/sd_notify";
import { type Incumbent, HandoverServer, controlPath, hello, requestHandover } from "../server/handover";

export const SERVER_USAGE = `Usage: mc-proxy server -c FILE [--takeover]

Runs the proxy with the config FILE (TOML).
--takeover: start beside the running instance of the same config (found
through the socket beside its database), bind the same listeners, get
ready, then have it close its listeners and drain: no connection refused
(mc-proxy reload does this; see RUNBOOK "Upgrade and rollback").
Signals: SIGINT/SIGTERM drain and stop (a second one exits at once);
SIGHUP reloads the GeoIP database; SIGUSR2 runs "mc-proxy reload" (a takeover).`;

export async function server(args: string[]): Promise<number> {
  const a = parseArgs(args, SERVER_USAGE, { switches: ["--takeover"] });
  if (a.help) return help(SERVER_USAGE);
  if (a.rest.length > 0) throw new UsageError(`unexpected argument ${a.rest[0]}`, SERVER_USAGE);
  if (a.config === null) throw new UsageError("-c FILE is required", SERVER_USAGE);
  const file = a.config;
  const loaded = loadRoutedConfig(file);
  const logger = new Logger(loaded.log.level, loaded.log.format);
  // A takeover finds the running instance first: without one, nothing else is touched.
  const control = controlPath(loaded.databasePath);
  let incumbent: Incumbent | null = null;
  if (a.switches.has("--takeover")) {
    try {
      incumbent = await hello(control);
    } catch (e) {
      throw new Error(
        `--takeover: no running mc-proxy answers on ${control} (${(e as Error).message}). A release before takeovers has no such socket: restart it once with this release (systemctl restart mc-proxy); from then on reload takes over. With nothing running, start without --takeover.`,
      );
    }
    logger.info("taking over", { from_pid: incumbent.pid, from_version: incumbent.version, from_generation: incumbent.generation });
  }
  const warnMigrate = migrateWarning();
  if (warnMigrate !== null) logger.warn(warnMigrate);
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
        return await serve(file, effectiveConfig(loaded, etcd.current()), logger, db, { control, incumbent }, (plane) => {
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
    return await serve(file, effectiveConfig(loaded, db.state()), logger, db, { control, incumbent }, (plane) => new SqliteConfigStore(db, plane));
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
interface Succession {
  /** The takeover socket's path (handover.ts). */
  control: string;
  /** The process being taken over; null for a plain start. */
  incumbent: Incumbent | null;
}

/** How long the admin API and metrics addresses are retried while the old process lets go of them. */
const REBIND_MS = 3000;

async function serve(file: string, cfg: Config, logger: Logger, db: SqliteDatabase, succession: Succession, openStore: (plane: DataPlane) => ConfigStore): Promise<number> {
  const { control, incumbent } = succession;
  const generation = incumbent === null ? 1 : incumbent.generation + 1;
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
  // Every listener is bound with SO_REUSEPORT, so that a takeover can bind
  // beside this process. A plain start would then silently share the ports
  // with a running instance: bind each address once without it first, so
  // that one already served by another process fails here, naming it.
  // The takeover socket is claimed first: a live one is another instance.
  let handoverServer: HandoverServer | null = null;
  let admin: AdminServer | null = null;
  let metricsServer: MetricsServer | null = null;
  const startedAt = Date.now();
  let handOver: () => Promise<{ active: number }> = async () => {
    throw new Error("still starting");
  };
  const self = () => ({ pid: process.pid, version: VERSION, generation, startedAt });
  if (incumbent === null) {
    handoverServer = await HandoverServer.start(control, self, () => handOver());
    try {
      probeListeners(cfg);
    } catch (e) {
      handoverServer.close();
      throw e;
    }
  }
  let plane: ControlPlane;
  try {
    plane = await ControlPlane.start(cfg, logger, { loops: workers, histograms, connectionCap: cap, generation, takeover: incumbent !== null });
  } catch (e) {
    handoverServer?.close();
    throw e;
  }
  for (const l of plane.listeners) logger.info("listening", { listener: l.addr, routes: l.table.size, max_connections: l.maxConnections, workers });
  // Serving: from here a write never waits inside SQLite for another process's lock.
  db.serving();
  const store = openStore(plane);
  const metrics = cfg.metrics === null ? null : new Metrics(plane, store, generation);
  let started = false;
  if (incumbent !== null) {
    // Ready (routes, rules, GeoIP loaded; listeners bound beside the old
    // process): now it closes its listeners, admin API and metrics and drains.
    const t0 = performance.now();
    const health = await plane.primeHealth();
    if (health.checked > 0) logger.info("health checks primed", { backends: health.checked, down: health.down, ms: Math.round(performance.now() - t0) });
    try {
      const r = await requestHandover(control);
      logger.info("took over", { from_pid: incumbent.pid, from_generation: incumbent.generation, generation, old_active: r.active, handover_ms: Math.round(performance.now() - t0) });
    } catch (e) {
      logger.error("takeover failed: the running process did not hand over; stopping this one", { error: (e as Error).message, pid: incumbent.pid });
      plane.shutdown();
      handoverServer?.close();
      await plane.done;
      throw new Error(`--takeover: the running process (pid ${incumbent.pid}) did not hand over: ${(e as Error).message}`);
    }
  }
  try {
    if (cfg.metrics !== null) {
      const readiness = { notReady: () => (plane.isDraining ? "draining" : started ? null : "starting"), note: () => (store.stale ? `store: ${store.describe()}` : null) };
      metricsServer = await bindRetrying(incumbent !== null ? REBIND_MS : 0, () => MetricsServer.start(cfg.metrics!, metrics!, readiness, logger));
    }
    if (cfg.grpc !== null) {
      const service = new AdminService(plane, store, logger, { unauthenticatedAdmin: cfg.grpc.allowUnauthenticatedAdmin, generation, pid: process.pid });
      admin = await bindRetrying(incumbent !== null ? REBIND_MS : 0, () => AdminServer.start(cfg.grpc!, service, logger, (method, code) => metrics?.adminRequests.labels(method, code).inc()));
    }
    if (handoverServer === null) handoverServer = await bindRetrying(REBIND_MS, () => HandoverServer.start(control, self, () => handOver()));
  } catch (e) {
    plane.shutdown();
    metricsServer?.stop();
    handoverServer?.close();
    throw e;
  }
  started = true;
  // Asked by the next process (handover.ts): stop accepting, let the new one
  // bind the admin API, metrics and takeover socket, drain, exit 0.
  handOver = async () => {
    logger.info("handing over: closing listeners, admin API and metrics; draining", { generation, active: plane.counters.total() });
    admin?.stop();
    admin = null;
    plane.shutdown();
    metricsServer?.stop();
    metricsServer = null;
    handoverServer?.close();
    return { active: plane.counters.total() };
  };
  logger.info("started", { version: VERSION, pid: process.pid, config: file, workers, generation });
  await notifyReady(logger, `serving, generation ${generation}`);
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
  // SIGUSR2: `mc-proxy reload` of this config (a takeover by this binary).
  // Fault injection for the tests only: with MC_PROXY_TEST_WORKER_CRASH=FILE,
  // SIGUSR2 instead makes the worker whose id FILE holds throw an uncaught error.
  const crashFile = process.env.MC_PROXY_TEST_WORKER_CRASH;
  if (crashFile !== undefined) process.on("SIGUSR2", () => plane.crash(Number(readFileSync(crashFile, "utf8").trim())));
  else
    process.on("SIGUSR2", () => {
      logger.info("signal received: reloading by a takeover", { signal: "SIGUSR2" });
      const p = Bun.spawn([...selfCommand(), "reload", "-c", file], { stdin: "ignore", stdout: "inherit", stderr: "inherit" });
      void p.exited.then((code) => {
        if (code !== 0) logger.error("SIGUSR2 reload failed; this process keeps serving", { exit_code: code });
      });
    });
  const code = await plane.done;
  admin?.stop();
  handoverServer?.close();
  const s = await plane.snapshot().catch(() => null);
  const total = s === null ? null : s.listeners.reduce((n, l) => n + l.closed.reduce((a, b) => a + b, 0), 0);
  // The metrics listener closes last: through the drain it is how a balancer learns we are going.
  metricsServer?.stop();
  // Last line: every access record (from every worker) is written before it.
  logger.info("stopped", { connections_total: total, exit_code: code, generation });
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
