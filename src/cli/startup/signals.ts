// Start-up's signals phase (docs/COMMAND_LINE.md "Signals"; RUNBOOK §3): SIGINT and
// SIGTERM drain and stop (a second one exits at once), SIGHUP reloads the
// GeoIP database, SIGUSR2 starts this process's successor — the same as a
// reload request on the takeover socket (successor_start.ts): a takeover by
// the binary now at the path this process was started from. Once stopping,
// the process starts no successor and hands over to none, by signal or by
// a request on its takeover socket.

import { readFileSync } from "node:fs";
import type { Logger } from "../../log/logger";
import type { Metrics } from "../../metrics/metrics";
import type { ControlPlane } from "../../server/control_plane";
import { selfCommand } from "../reload_command";
import type { Exposed } from "./expose";
import type { Succession } from "./succession";

export function installSignals(
  succession: Succession,
  plane: ControlPlane,
  exposed: Exposed,
  metrics: Metrics | null,
  logger: Logger,
): void {
  let signals = 0;
  const onStop = (sig: string) => {
    signals++;
    if (signals > 1) {
      logger.warn("second signal: exiting now", { signal: sig });
      logger.flush();
      process.exit(0);
    }
    logger.info("signal received", { signal: sig });
    // Stopping: no successor is started or handed over to from here (successor_start.ts, handover.ts).
    succession.successor.stop(sig);
    exposed.stopAdmin();
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
  // SIGUSR2 instead makes the worker whose id FILE holds throw an uncaught error.
  const crashFile = process.env.MC_PROXY_TEST_WORKER_CRASH;
  if (crashFile !== undefined) process.on("SIGUSR2", () => plane.crash(Number(readFileSync(crashFile, "utf8").trim())));
  else process.on("SIGUSR2", () => reloadBySignal(succession, logger, () => plane.isDraining));
}

/**
 * SIGUSR2: start the successor, as a reload request does. A failure — the
 * binary cannot start, one is already starting, or it ends before taking
 * over (logged by successor_start.ts) — is one log line; this process keeps
 * serving. A draining process (stopping, or handed over) starts none.
 */
function reloadBySignal(succession: Succession, logger: Logger, draining: () => boolean): void {
  if (draining()) {
    logger.warn("SIGUSR2 ignored: this process drains; signal the process that serves", { signal: "SIGUSR2" });
    return;
  }
  logger.info("signal received: reloading by a takeover", { signal: "SIGUSR2" });
  try {
    succession.successor.start("SIGUSR2");
  } catch (e) {
    logger.error("SIGUSR2 reload failed; this process keeps serving", {
      command: selfCommand()[0]!,
      error: (e as Error).message,
    });
  }
}
