// The messages between the WorkerPool (main thread) and its workers.
import type { Config } from "../config/config";
import type { FirewallRules } from "../firewall/firewall";
import type { BoundRoute } from "../routing/pool";
import type { Snapshot } from "./data_plane";

export interface WorkerInit {
  type: "init";
  id: number;
  workers: number;
  /** The effective config: routes, rules and limits as the main thread holds them now. */
  config: Config;
  counters: SharedArrayBuffer;
  /** The backend table, and each listener's routes bound to its slots. */
  backends: SharedArrayBuffer;
  tables: { routes: BoundRoute[]; defaultRoute: BoundRoute | null }[];
  rateBuffer: SharedArrayBuffer | null;
  geoipData: Uint8Array | null;
  histograms: boolean;
  connectionCap: number;
}

export type ToWorker =
  | WorkerInit
  | { type: "routes"; seq: number; listener: number; routes: BoundRoute[] }
  | { type: "reset-backend"; seq: number; slot: number; gen: number }
  | { type: "rules"; seq: number; rules: FirewallRules }
  | { type: "geoip"; seq: number; data: Uint8Array }
  | { type: "snapshot"; seq: number }
  | { type: "drain" }
  | { type: "crash" };

export type FromWorker =
  | { type: "ready"; thread: number }
  | { type: "failed"; error: string }
  | { type: "ack"; seq: number; count?: number }
  | { type: "snapshot"; seq: number; snapshot: Snapshot }
  | { type: "log"; text: string }
  /** Drained: its last counters come with it. */
  | { type: "stopped"; snapshot: Snapshot };
