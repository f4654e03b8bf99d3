// Start-up's plane phase: the one control plane and its event loops,
// listeners bound (docs/WORKERS.md; docs/ARCHITECTURE.md "One control
// plane, N event loops"). Before anything binds, every address this process
// binds besides its listeners is probed, and a plain start claims the
// takeover socket: in a takeover all of it can still fail before the
// handover (docs/ARCHITECTURE.md "Takeover").

import type { Logger } from "../../log/logger";
import { probeAddress } from "../../net/address_probe";
import { bindHost } from "../../net/host_port";
import type { RoutedConfig } from "../../routing/route_config";
import { ControlPlane } from "../../server/control_plane";
import {
  availableCpus,
  capacityWarning,
  connectionCap,
  needsOf,
  readFdLimits,
  reservedFds,
} from "../../server/host_limits";
import type { Exposed } from "./expose";
import type { Succession } from "./succession";

/** The control plane started with `workers` event loops, every listener bound. */
export async function startPlane(
  cfg: RoutedConfig,
  succession: Succession,
  exposed: Exposed,
  logger: Logger,
): Promise<{ plane: ControlPlane; workers: number }> {
  const workers = cfg.proxy.workers === "auto" ? availableCpus() : cfg.proxy.workers;
  const limits = readFdLimits();
  const needs = needsOf(cfg, workers);
  const cap = connectionCap(limits, needs);
  const show = (n: number | undefined) => (n === undefined ? null : Number.isFinite(n) ? n : "unlimited");
  const reserved = limits === null || !Number.isFinite(limits.soft) ? null : reservedFds(needs, limits.soft);
  logger.info("file descriptor limit", {
    soft: show(limits?.soft),
    hard: show(limits?.hard),
    connection_cap: cap,
    reserved_fds: reserved,
  });
  const warning = capacityWarning(
    cfg.listeners.map((l) => l.maxConnections),
    limits,
    needs,
  );
  if (warning !== null) logger.warn(warning);
  const takeover = succession.session !== null;
  // A plain start claims the takeover socket first: a live one is another instance.
  await exposed.claimTakeoverSocket();
  let plane: ControlPlane;
  try {
    // Every address the admin API and metrics need free — or, in a
    // takeover, held by the running process, which lets go of it at the
    // handover.
    await probeAddresses(cfg, succession.incumbent?.pid ?? null);
    // Every listener is bound with SO_REUSEPORT, so that a takeover can bind
    // beside this process. A plain start would then silently share the ports
    // with a running instance: bind each address once without it first, so
    // that one already served by another process fails here, naming it.
    if (!takeover) probeListeners(cfg);
    plane = await ControlPlane.start(cfg, logger, {
      loops: workers,
      histograms: cfg.metrics !== null,
      connectionCap: cap,
      generation: succession.generation,
      takeover,
    });
  } catch (e) {
    exposed.stop();
    throw e;
  }
  for (const l of plane.listeners)
    logger.info("listening", {
      listener: l.label,
      addr: l.addr,
      routes: l.table.size,
      max_connections: l.maxConnections,
      workers,
    });
  return { plane, workers };
}

/**
 * Probe every address this process binds besides its TCP listeners (those
 * bind with SO_REUSEPORT beside the running process): the metrics, admin
 * API and dashboard addresses and the QUIC listeners' UDP addresses must be free,
 * or held by `incumbent` (the pid being taken over).
 */
async function probeAddresses(cfg: RoutedConfig, incumbent: number | null): Promise<void> {
  if (cfg.metrics !== null) await probeAddress("metrics.addr", cfg.metrics.addr, "tcp", incumbent);
  if (cfg.grpc !== null) await probeAddress("grpc.addr", cfg.grpc.addr, "tcp", incumbent);
  if (cfg.dashboard !== null) await probeAddress("dashboard.addr", cfg.dashboard.addr, "tcp", incumbent);
  for (const [i, q] of cfg.quicListeners.entries())
    await probeAddress(`quic listener ${i} (${q.name}) addr`, q.addr, "udp", incumbent);
}

/** Bind each listener address once without SO_REUSEPORT and let it go: EADDRINUSE means another process serves it. */
function probeListeners(cfg: RoutedConfig): void {
  cfg.listeners.forEach((l, i) => {
    try {
      const s = Bun.listen({ hostname: bindHost(l.bind.host), port: l.bind.port, socket: { data() {} } });
      s.stop(true);
    } catch (e) {
      throw new Error(
        `listeners[${i}].addr "${l.addr}": cannot listen: ${(e as Error).message} (is another mc-proxy serving it?)`,
      );
    }
  });
}
