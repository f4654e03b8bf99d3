// What a (re)started event loop is built from (loop_protocol.ts LoopInit):
// the config with the routes, rules and limits the control plane holds now
// (control_plane.ts), and the shared memory every loop of the process
// attaches. Synchronous and socket-free.

import type { FirewallRules } from "../firewall/firewall";
import type { RateLimiter } from "../firewall/rate_limiter";
import type { BackendTable } from "../routing/backend_table";
import type { RoutedConfig as Config } from "../routing/route_config";
import type { Listener } from "./listener_runtime";
import type { LoopInit } from "./loop_protocol";
import type { SharedCounters } from "./shared_counters";

/** The per-process state in force now, as the control plane holds it. */
export interface PlaneState {
  config: Config;
  /** Every listener by index (TCP, then QUIC): its table in force. */
  all: readonly Listener[];
  counters: SharedCounters;
  backends: BackendTable;
  rules: FirewallRules;
  rate: RateLimiter | null;
  geoipData: Uint8Array | null;
}

/** The control plane's options a loop is built with (ControlOptions). */
export interface LoopSettings {
  loops: number;
  histograms: boolean;
  connectionCap: number;
  generation?: number;
  takeover?: boolean;
}

/** Loop `id`'s init: the routes, rules and limits in force now, over the process's shared memory. */
export function loopInitOf(id: number, s: PlaneState, options: LoopSettings): LoopInit {
  const config: Config = {
    ...s.config,
    listeners: s.config.listeners.map((l) => ({
      ...l,
      routes: s.all[l.index]!.table.routes(),
      maxConnections: s.counters.max(l.index),
    })),
    quicListeners: s.config.quicListeners.map((q) => ({
      ...q,
      routes: q.routesFrom === null ? s.all[q.index]!.table.routes() : [],
      maxConnections: s.counters.max(q.index),
    })),
    firewall: {
      ...s.config.firewall,
      blockedIps: [...s.rules.blockedIps],
      blockedCidrs: [...s.rules.blockedCidrs],
      blockedCountries: [...s.rules.blockedCountries],
      blockedJa4: [...s.rules.blockedJa4],
    },
  };
  return {
    id,
    workers: options.loops,
    config,
    counters: s.counters.buffer,
    backends: s.backends.buffer,
    tables: s.all.map((l) => ({ routes: l.table.routes(), defaultRoute: l.table.defaultRoute?.route ?? null })),
    rateBuffer: s.rate?.buffer ?? null,
    geoipData: s.geoipData,
    histograms: options.histograms,
    connectionCap: options.connectionCap,
    generation: options.generation ?? 1,
    takeover: options.takeover === true,
    backendSlots: s.backends.slots,
  };
}
