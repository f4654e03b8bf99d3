// Start-up's signals phase (docs/COMMAND_LINE.md "Signals"; RUNBOOK §3): SIGINT and
// SIGTERM drain and stop (a second one exits at once), SIGHUP reloads the
// GeoIP database, SIGUSR2 runs `mc-proxy reload` of this config — a
// takeover by the binary now at the path this process was started from.

import { readFileSync } from "node:fs";
import type { Logger } from "../../log/logger";
import type { Metrics } from "../../metrics/metrics";
import type { ControlPlane } from "../../server/control_plane";
import { selfCommand } from "../reload_command";
import type { Exposed } from "./expose";

export function installSignals(
  file: string,
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
  else process.on("SIGUSR2", () => reloadBySignal(file, logger, () => plane.isDraining));
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
    if (handedOver())
      logger.error(
        "SIGUSR2 reload failed after this process handed over; it drains (the reload's output says who serves)",
        { command: cmd[0]!, ...fields },
      );
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
