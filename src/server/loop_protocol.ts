// What the control plane tells an event loop. Each change is applied in one
// place, EventLoop.apply — whether the loop runs in this thread or in a
// worker (worker_main.ts posts the reply back). A data-plane change is one
// control-plane method plus one message here.

import type { RoutedConfig as Config } from "../routing/route_config";
import type { FirewallRules } from "../firewall/firewall";
import type { BoundRoute } from "../routing/pool";
import type { HitterReport } from "../metrics/heavy_hitters";
import type { Snapshot } from "./snapshot";

/** Everything an event loop is built from; shared memory is attached, never copied. */
export interface LoopInit {
  id: number;
  /** Event loops in the process (the shared tables' worker dimension). */
  workers: number;
  /** The effective config: routes, rules and limits as the control plane holds them now. */
  config: Config;
  counters: SharedArrayBuffer;
  /** The backend table (of backendSlots entries), and each listener's routes bound to its slots. */
  backends: SharedArrayBuffer;
  backendSlots: number;
  tables: { routes: BoundRoute[]; defaultRoute: BoundRoute | null }[];
  rateBuffer: SharedArrayBuffer | null;
  geoipData: Uint8Array | null;
  histograms: boolean;
  connectionCap: number;
  /** The process's takeover generation: the access log's `gen`. */
  generation: number;
  /** Started by a takeover: bind UDP (no SO_REUSEPORT in Bun) once the old process lets go of it. */
  takeover: boolean;
}

export type LoopChange =
  | { type: "routes"; listener: number; routes: BoundRoute[] }
  | { type: "reset-backend"; slot: number; gen: number }
  | { type: "rules"; rules: FirewallRules }
  | { type: "geoip"; data: Uint8Array }
  | { type: "snapshot" }
  | { type: "fingerprints" };

export interface LoopReply {
  /** reset-backend: connections reset. */
  count?: number;
  /** snapshot: this loop's counters. */
  snapshot?: Snapshot;
  /** fingerprints: this loop's top table, counted over its window. */
  fingerprints?: HitterReport;
}

/** Main thread → worker thread. */
export type ToWorker = { type: "init"; init: LoopInit } | { type: "change"; seq: number; change: LoopChange } | { type: "drain" } | { type: "crash" };

/** Worker thread → main thread. */
export type FromWorker =
  | { type: "ready"; thread: number }
  | { type: "failed"; error: string }
  | { type: "reply"; seq: number; reply: LoopReply }
  | { type: "log"; text: string }
  /** Drained: its last counters come with it. */
  | { type: "stopped"; snapshot: Snapshot };
