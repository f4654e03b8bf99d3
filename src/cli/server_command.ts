// `mc-proxy server -c FILE`: start-up in named phases, each in startup/ —
// preflight (the config and the files it names, every problem at once; the
// same as `check`) → succession (a plain start, or the takeover prepared
// with the running process) → store (SQLite, or etcd with its last-known-good
// copy) → plane (the one control plane and its loops, listeners bound) →
// handover (a takeover's one point of no return) → expose (metrics, admin
// API, takeover socket) → signals → drain. Every step that can fail comes
// before the handover (docs/ARCHITECTURE.md "Takeover").
import { resolve } from "node:path";
import { Logger } from "../log/logger";
import { Metrics } from "../metrics/metrics";
import { controlPath } from "../server/handover";
import { migrateWarning } from "../server/host_limits";
import { notifyReady } from "../server/sd_notify";
import { collectStartupGarbage } from "../server/startup_gc";
import { VERSION } from "../version";
import { PURGE_DELAY_MS, PURGE_VARIABLE } from "./allocator";
import { UsageError, help, parseArgs } from "./args";
import { applyFile } from "./startup/apply_file";
import { drain } from "./startup/drain";
import { Exposed } from "./startup/expose";
import { startPlane } from "./startup/plane";
import { type Preflight, preflight } from "./startup/preflight";
import { installSignals } from "./startup/signals";
import { type OpenedStore, openStore } from "./startup/store";
import { Succession } from "./startup/succession";

export const SERVER_USAGE = `Usage: mc-proxy server -c FILE [--takeover]

Runs the proxy with the config FILE (TOML).
--takeover: start beside the running instance of the same config (found
through the socket beside its database), bind the same listeners, get
ready, then have it close its listeners and drain: no connection refused
(mc-proxy reload does this; see RUNBOOK "Upgrade and rollback").
Signals: SIGINT/SIGTERM drain and stop (a second one exits at once);
SIGHUP reloads the GeoIP database; SIGUSR2 starts this process's successor
(the binary now on disk, with this process's stdout, stderr and
environment): the same takeover as "mc-proxy reload".`;

export async function server(args: string[]): Promise<number> {
  const a = parseArgs(args, SERVER_USAGE, { switches: ["--takeover"] });
  if (a.help) return help(SERVER_USAGE);
  if (a.rest.length > 0) throw new UsageError(`unexpected argument ${a.rest[0]}`, SERVER_USAGE);
  if (a.config === null) throw new UsageError("-c FILE is required", SERVER_USAGE);
  const file = a.config;
  const pre = preflight(file);
  const logger = new Logger(pre.config.log.level, pre.config.log.format);
  // Without a running instance to take over, nothing else is touched.
  const succession = await Succession.open(
    controlPath(pre.config.databasePath),
    resolve(file),
    a.switches.has("--takeover"),
    logger,
  );
  try {
    for (const w of pre.warnings) logger.warn(w);
    // Said once, by the process that takes over: only a takeover resets what tcp_migrate_req = 0 leaves queued.
    const migrate = a.switches.has("--takeover") ? migrateWarning() : null;
    if (migrate !== null) logger.warn(migrate);
    allocatorNotice(logger);
    const store = await openStore(pre.config, logger);
    try {
      return await serve(file, pre, store, succession, logger);
    } finally {
      logger.flush();
      store.close();
    }
  } finally {
    succession.close();
  }
}

/**
 * docs/PERFORMANCE.md "The allocator": the purge delay in force — "1000" as
 * set by mc-proxy at start (cli/allocator.ts) or by the unit or the image,
 * else the operator's own value. Unset only where the restart could not run.
 */
function allocatorNotice(logger: Logger): void {
  const purge = process.env[PURGE_VARIABLE];
  if (purge !== undefined) return logger.info("memory allocator", { purge_delay: purge });
  logger.warn("memory allocator", {
    purge_delay: "default (10 ms)",
    hint: `could not run itself again with ${PURGE_VARIABLE}=${PURGE_DELAY_MS}; set it in the environment to keep freed memory for reuse while relaying`,
  });
}

/** The phases from the plane on, with the config as the store holds it. */
async function serve(
  file: string,
  pre: Preflight,
  opened: OpenedStore,
  succession: Succession,
  logger: Logger,
): Promise<number> {
  const cfg = opened.config;
  const generation = succession.generation;
  const exposed = new Exposed(succession, logger);
  const { plane, workers } = await startPlane(cfg, succession, exposed, logger);
  const store = opened.attach(plane);
  const metrics = cfg.metrics === null ? null : new Metrics(plane, store, generation);
  await succession.handover(
    plane,
    cfg.listeners.map((l) => l.addr),
    logger,
  );
  // The file's edits since it last applied, through the store as the API writes (before the API opens).
  succession.setApplied(await applyFile(store, plane, opened.file, logger));
  await exposed.bind(cfg, pre.admin, pre.dashboard, plane, store, metrics);
  succession.serveHandovers(async (pid) => exposed.handOver(plane, pid));
  const { degraded } = succession;
  logger.info("started", {
    version: VERSION,
    pid: process.pid,
    config: file,
    workers,
    generation,
    ...(degraded.length > 0 ? { degraded: degraded.join("; ") } : {}),
  });
  await notifyReady(
    logger,
    `serving, generation ${generation}${degraded.length > 0 ? ` (degraded: ${degraded.join("; ")})` : ""}`,
  );
  collectStartupGarbage(logger, "main");
  installSignals(succession, plane, exposed, metrics, logger);
  return drain(plane, exposed, generation, logger);
}
