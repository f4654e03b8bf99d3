// What the admin plane, the store and the metrics see of the data plane —
// the control plane (control_plane.ts), whatever the number of event loops:
// the route tables as last applied, ways to apply changes everywhere, and
// snapshots of the counters summed over every loop.

import type { FirewallRules } from "../firewall/firewall";
import type { MergedHitter } from "../metrics/heavy_hitters";
import type { BackendTable, SlotRef } from "../routing/backend_table";
import type { Route } from "../routing/pool";
import type { RouteTable } from "../routing/route_table";
import type { Snapshot } from "./snapshot";

/** The live top-fingerprints table, summed over the event loops that answered. */
export interface FingerprintsView {
  /** Places per event loop; 0 when [fingerprints] top = 0. */
  capacity: number;
  windowMs: number;
  /** Event loops whose tables were read (a replaced worker starts with an empty table). */
  loops: number;
  entries: MergedHitter[];
}

export interface ListenerView {
  /** Position in the config: the listener's slot in the shared counters and backend keys. */
  readonly index: number;
  /** The configured addr string: where it binds; its label in logs and metrics. */
  readonly addr: string;
  /** Its identity in the admin API and the store (default: addr). */
  readonly name: string;
  /** The table in force (the one the admin API lists). */
  readonly table: RouteTable;
  readonly maxConnections: number;
  readonly proxyProtocol: boolean;
  readonly trustedProxies: readonly string[];
}

export interface DataPlane {
  readonly listeners: readonly ListenerView[];
  /** By name, or by addr. */
  listener(nameOrAddr: string): ListenerView | undefined;
  /** A GeoIP database is configured (country rules can match). */
  readonly geoipConfigured: boolean;
  /** Swap a listener's routes on every event loop; resolves once all have. */
  applyRoutes(l: ListenerView, routes: readonly Route[]): Promise<void>;
  applyRules(rules: FirewallRules): Promise<void>;
  /** Applies to the next accept everywhere (the limit lives in shared memory). */
  applyMaxConnections(l: ListenerView, n: number): void;
  /** Backend health, operator state and connection counts (shared by every loop). */
  readonly backends: BackendTable;
  /** Reset every connection on a backend, on every loop; resolves with how many. */
  applyBackendReset(ref: SlotRef): Promise<number>;
  snapshot(): Promise<Snapshot>;
  /** The top `limit` fingerprints of the window, summed over every event loop. */
  fingerprints(limit: number): Promise<FingerprintsView>;
  /** SIGHUP: null when no GeoIP database is configured. */
  reloadGeoIp(): Promise<"ok" | "error" | null>;
  shutdown(): void;
  readonly isDraining: boolean;
  /** Resolves with the exit code once everything has stopped. */
  readonly done: Promise<number>;
}
