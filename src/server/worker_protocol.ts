// The messages between the WorkerPool (main thread) and its workers.
import type { Config } from "../config/config";
import type { FirewallRules } from "../firewall/firewall";
import type { Route } from "../routing/route_table";
import type { Snapshot } from "./data_plane";

export interface WorkerInit {
  type: "init";
  id: number;
  workers: number;
  /** The effective config: routes, rules and limits as the main thread holds them now. */
  config: Config;
  counters: SharedArrayBuffer;
  rateBuffer: SharedArrayBuffer | null;
  geoipData: Uint8Array | null;
  histograms: boolean;
  connectionCap: number;
}

export type ToWorker =
  | WorkerInit
  | { type: "routes"; seq: number; listener: number; routes: Route[] }
  | { type: "rules"; seq: number; rules: FirewallRules }
  | { type: "geoip"; seq: number; data: Uint8Array }
  | { type: "snapshot"; seq: number }
  | { type: "drain" }
  | { type: "crash" };

export type FromWorker =
  | { type: "ready"; thread: number }
  | { type: "failed"; error: string }
  | { type: "ack"; seq: number }
  | { type: "snapshot"; seq: number; snapshot: Snapshot }
  | { type: "log"; text: string }
  /** Drained: its last counters come with it. */
  | { type: "stopped"; snapshot: Snapshot };
