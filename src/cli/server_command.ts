// `mc-proxy server -c FILE`: start-up, in order — the config, the store
// (SQLite, or etcd with its last-known-good copy), the data plane (the one
// control plane and its loops), the metrics, the admin API, the signals —
// then wait for the drain.
import { readFileSync } from "node:fs";
import { AdminService } from "../admin/admin_service";
import { AdminServer, type PreparedAdmin } from "../admin/grpc_server";
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
import { probeAddress } from "../net/address_probe";
import { bindRetrying } from "../net/bind_retry";
import { notifyReady } from "../server/sd_notify";
import { HandoverServer, Refused, TakeoverSession, controlPath } from "../server/handover";

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
  // A takeover finds the running instance first and prepares the takeover
  // with it (from then on it refuses any other until this one ends): without
  // one, nothing else is touched.
  const control = controlPath(loaded.databasePath);
  let session: TakeoverSession | null = null;
  if (a.switches.has("--takeover")) {
    try {
      session = await TakeoverSession.open(control);
    } catch (e) {
      if (e instanceof Refused) throw new Error(`--takeover: the running mc-proxy refused: ${e.message}`);
      throw new Error(
        `--takeover: no running mc-proxy answers on ${control} (${(e as Error).message}). A release before takeovers has no such socket: restart it once with this release (systemctl restart mc-proxy); from then on reload takes over. With nothing running, start without --takeover.`,
      );
    }
    const from = session.incumbent;
    logger.info("taking over", { from_pid: from.pid, from_version: from.version, from_generation: from.generation });
  }
  try {
    return await start(file, loaded, logger, control, session);
  } finally {
    session?.close();
  }
}

async function start(file: string, loaded: Config, logger: Logger, control: string, session: TakeoverSession | null): Promise<number> {
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
        return await serve(file, effectiveConfig(loaded, etcd.current()), logger, db, { control, session }, (plane) => {
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
    return await serve(file, effectiveConfig(loaded, db.state()), logger, db, { control, session }, (plane) => new SqliteConfigStore(db, plane));
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

/** Who this process succeeds, if anyone. */
interface Succession {
  /** The takeover socket's path (handover.ts). */
  control: string;
  /** The takeover prepared with the running process; null for a plain start. */
  session: TakeoverSession | null;
}

/** How long the admin API, metrics and takeover socket addresses are retried while the old process lets go of them. */
const REBIND_MS = 3000;

/**
 * Run the data plane, then the store (made by `openStore` once the data
 * plane exists, since it applies changes to it), the metrics and the admin
 * API. A takeover has one point of no return, the handover: every step that
 * can fail comes before it (docs/ARCHITECTURE.md "Takeover").
 */
async function serve(file: string, cfg: Config, logger: Logger, db: SqliteDatabase, succession: Succession, openStore: (plane: DataPlane) => ConfigStore): Promise<number> {
  const { control, session } = succession;
  const incumbent = session?.incumbent ?? null;
  const generation = session?.generation ?? 1;
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
  /** What this process binds besides its listeners, as it binds them. */
  const up: { control: HandoverServer | null; admin: AdminServer | null; metrics: MetricsServer | null } = { control: null, admin: null, metrics: null };
  const startedAt = Date.now();
  /** What failed after this process's handover (it serves its listeners without them). */
  const degraded: string[] = [];
  let handOver: (pid: number) => Promise<{ active: number }> = async () => {
    throw new Error("still starting");
  };
  const hooks = {
    self: () => ({ pid: process.pid, version: VERSION, generation, startedAt, previous: incumbent === null ? null : { pid: incumbent.pid, generation: incumbent.generation }, degraded }),
    handover: (pid: number) => handOver(pid),
    logger,
  };
  // A plain start claims the takeover socket first: a live one is another instance.
  if (session === null) up.control = await HandoverServer.start(control, hooks);
  let plane: ControlPlane;
  let preparedAdmin: PreparedAdmin | null = null;
  try {
    // Everything the admin API and metrics need, before anything binds: the
    // TLS files loaded and matched, every address free — or, in a takeover,
    // held by the running process, which lets go of it at the handover.
    preparedAdmin = cfg.grpc === null ? null : AdminServer.prepare(cfg.grpc);
    await probeAddresses(cfg, incumbent?.pid ?? null);
    // Every listener is bound with SO_REUSEPORT, so that a takeover can bind
    // beside this process. A plain start would then silently share the ports
    // with a running instance: bind each address once without it first, so
    // that one already served by another process fails here, naming it.
    if (session === null) probeListeners(cfg);
    plane = await ControlPlane.start(cfg, logger, { loops: workers, histograms, connectionCap: cap, generation, takeover: session !== null });
  } catch (e) {
    up.control?.close();
    throw e;
  }
  for (const l of plane.listeners) logger.info("listening", { listener: l.addr, routes: l.table.size, max_connections: l.maxConnections, workers });
  // Serving: from here a write never waits inside SQLite for another process's lock.
  db.serving();
  const store = openStore(plane);
  const metrics = cfg.metrics === null ? null : new Metrics(plane, store, generation);
  let started = false;
  if (session !== null) {
    // Ready (routes, rules, GeoIP loaded; listeners bound beside the old
    // process; the admin API's TLS loaded; every address probed): now it
    // checks that this process listens, closes its listeners, admin API,
    // metrics and takeover socket, and drains. The point of no return.
    const t0 = performance.now();
    const health = await plane.primeHealth();
    if (health.checked > 0) logger.info("health checks primed", { backends: health.checked, down: health.down, ms: Math.round(performance.now() - t0) });
    try {
      const r = await session.handover(cfg.listeners.map((l) => l.addr));
      logger.info("took over", { from_pid: incumbent!.pid, from_generation: incumbent!.generation, generation, old_active: r.active, handover_ms: Math.round(performance.now() - t0) });
    } catch (e) {
      logger.error("takeover failed: the running process did not hand over; stopping this one", { error: (e as Error).message, pid: incumbent!.pid });
      plane.shutdown();
      await plane.done;
      throw new Error(`--takeover: the running process (pid ${incumbent!.pid}) did not hand over: ${(e as Error).message}`);
    }
  }
  // Bind the admin API, metrics and takeover socket. Before a handover a
  // failure stops this process (nothing was handed over); after it, this
  // process serves its listeners whatever fails here: each failure is
  // logged, and told to the next reload (hello's "degraded").
  const retryMs = session !== null ? REBIND_MS : 0;
  const bindAll = async (what: string, bind: () => Promise<void>) => {
    try {
      await bind();
    } catch (e) {
      if (session === null) throw e;
      degraded.push(`${what}: ${(e as Error).message}`);
      logger.error(`${what} could not bind after the handover; this process serves its listeners without it`, { error: (e as Error).message });
    }
  };
  try {
    if (cfg.metrics !== null) {
      const readiness = { notReady: () => (plane.isDraining ? "draining" : started ? null : "starting"), note: () => (store.stale ? `store: ${store.describe()}` : null) };
      await bindAll("metrics", async () => {
        up.metrics = await bindRetrying(retryMs, () => MetricsServer.start(cfg.metrics!, metrics!, readiness, logger));
      });
    }
    if (preparedAdmin !== null) {
      const service = new AdminService(plane, store, logger, { unauthenticatedAdmin: cfg.grpc!.allowUnauthenticatedAdmin, generation, pid: process.pid });
      const prepared = preparedAdmin;
      await bindAll("admin API", async () => {
        up.admin = await bindRetrying(retryMs, () => AdminServer.start(prepared, service, logger, (method, code) => metrics?.adminRequests.labels(method, code).inc()));
      });
    }
    if (up.control === null)
      await bindAll("takeover socket", async () => {
        up.control = await bindRetrying(REBIND_MS, () => HandoverServer.start(control, hooks));
      });
  } catch (e) {
    plane.shutdown();
    up.metrics?.stop();
    up.admin?.stop();
    up.control?.close();
    throw e;
  }
  started = true;
  // Asked by the next process (handover.ts), once it listens: stop
  // accepting, let it bind the admin API, metrics and takeover socket, drain,
  // exit 0.
  handOver = async (pid: number) => {
    logger.info("handing over: closing listeners, admin API and metrics; draining", { generation, requester_pid: pid, active: plane.counters.total() });
    up.admin?.stop();
    up.admin = null;
    plane.shutdown();
    up.metrics?.stop();
    up.metrics = null;
    up.control?.close();
    return { active: plane.counters.total() };
  };
  logger.info("started", { version: VERSION, pid: process.pid, config: file, workers, generation, ...(degraded.length > 0 ? { degraded: degraded.join("; ") } : {}) });
  await notifyReady(logger, `serving, generation ${generation}${degraded.length > 0 ? ` (degraded: ${degraded.join("; ")})` : ""}`);
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
    up.admin?.stop();
    plane.shutdown();
  };
  process.on("SIGINT", () => onStop("SIGINT"));
  process.on("SIGTERM", () => onStop("SIGTERM"));
  process.on("SIGHUP", () => {
    void plane.reloadGeoIp().then((result) => {
      if (result !== null) metrics?.geoipReloads.labels(result).inc();
    });
  });
  // SIGUSR2: `mc-proxy reload` of this config (a takeover by the binary now
  // at the path this process was started from).
  // Fault injection for the tests only: with MC_PROXY_TEST_WORKER_CRASH=FILE,
  // SIGUSR2 instead makes the worker whose id FILE holds throw an uncaught error.
  const crashFile = process.env.MC_PROXY_TEST_WORKER_CRASH;
  if (crashFile !== undefined) process.on("SIGUSR2", () => plane.crash(Number(readFileSync(crashFile, "utf8").trim())));
  else process.on("SIGUSR2", () => reloadBySignal(file, logger, () => plane.isDraining));
  const code = await plane.done;
  up.admin?.stop();
  up.control?.close();
  const s = await plane.snapshot().catch(() => null);
  const total = s === null ? null : s.listeners.reduce((n, l) => n + l.closed.reduce((a, b) => a + b, 0), 0);
  // The metrics listener closes last: through the drain it is how a balancer learns we are going.
  up.metrics?.stop();
  // Last line: every access record (from every worker) is written before it.
  logger.info("stopped", { connections_total: total, exit_code: code, generation });
  return code;
}

/**
 * SIGUSR2: run `mc-proxy reload -c FILE` with the binary at the path this
 * process was started from (an upgrade renames a new file over it). A
 * failure — the binary cannot start, or the reload fails — is one log line;
 * this process keeps serving unless it handed over (`handedOver`).
 */
function reloadBySignal(file: string, logger: Logger, handedOver: () => boolean): void {
  const cmd = [...selfCommand(), "reload", "-c", file];
  logger.info("signal received: reloading by a takeover", { signal: "SIGUSR2", command: cmd[0] });
  const failed = (fields: Record<string, string | number>) => {
    if (handedOver()) logger.error("SIGUSR2 reload failed after this process handed over; it drains (the reload's output says who serves)", { command: cmd[0]!, ...fields });
    else logger.error("SIGUSR2 reload failed; this process keeps serving", { command: cmd[0]!, ...fields });
  };
  let p: ReturnType<typeof Bun.spawn>;
  try {
    p = Bun.spawn(cmd, { stdin: "ignore", stdout: "inherit", stderr: "inherit" });
  } catch (e) {
    return failed({ error: (e as Error).message });
  }
  void p.exited.then((code) => {
    if (code !== 0) failed({ exit_code: code });
  });
}

/**
 * Probe every address this process binds besides its TCP listeners (those
 * bind with SO_REUSEPORT beside the running process): the metrics and
 * admin API addresses and the QUIC listeners' UDP addresses must be free,
 * or held by `incumbent` (the pid being taken over).
 */
async function probeAddresses(cfg: Config, incumbent: number | null): Promise<void> {
  if (cfg.metrics !== null) await probeAddress("metrics.addr", cfg.metrics.addr, "tcp", incumbent);
  if (cfg.grpc !== null) await probeAddress("grpc.addr", cfg.grpc.addr, "tcp", incumbent);
  for (const [i, q] of cfg.quicListeners.entries()) await probeAddress(`quic listener ${i} (${q.name}) addr`, q.addr, "udp", incumbent);
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
