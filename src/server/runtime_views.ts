// What the other sides see of the running proxy — the control plane
// (control_plane.ts), whatever the number of event loops — each as much as
// it uses: the tables in force (every side), the changes a ConfigStore
// makes live once it has committed them (RuntimeChanges), and what the admin
// API reads and does without a store (RuntimeStatus). Metrics read snapshots
// only (metrics/metrics.ts).

import type { FirewallRules } from "../firewall/firewall";
import type { Rule } from "../firewall/rule_set";
import type { MergedHitter } from "../metrics/hitter_merge";
import type { BackendTable, SlotRef } from "../routing/backend_table";
import type { Route } from "../routing/route";
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
  /** The configured addr string: where it binds. */
  readonly addr: string;
  /** Its identity in the admin API and the store (default: addr). */
  readonly name: string;
  /** Its one name in logs, metrics and status (listener_runtime.ts listenerLabel): for a listener with routes of its own, its name. */
  readonly label: string;
  /** The table in force (the one the admin API lists). */
  readonly table: RouteTable;
  readonly maxConnections: number;
  readonly proxyProtocol: boolean;
  readonly trustedProxies: readonly string[];
}

/** The tables in force: each listener's routes, and the backend table. */
export interface LiveTables {
  readonly listeners: readonly ListenerView[];
  /** By name, or by addr. */
  listener(nameOrAddr: string): ListenerView | undefined;
  /** Backend health, operator state and connection counts (shared by every loop). */
  readonly backends: BackendTable;
  /** [proxy] drain_timeout (docs/POOLS.md "Drains end"): when a drained backend's connections end; absent: 0, never. */
  readonly drainTimeoutMs?: number;
}

/** Where a ConfigStore's committed changes take effect: on every event loop. */
export interface RuntimeChanges extends LiveTables {
  /** Swap a listener's routes on every event loop; resolves once all have. */
  applyRoutes(l: ListenerView, routes: readonly Route[]): Promise<void>;
  /**
   * The rules in force from now on; the sessions a rule added here blocks
   * are closed on every loop (docs/SECURITY.md), but those of the added
   * rules in `kept` (keep_established). Resolves with how many closed.
   */
  applyRules(rules: FirewallRules, kept?: readonly Rule[]): Promise<number>;
  /** Applies to the next accept everywhere (the limit lives in shared memory). */
  applyMaxConnections(l: ListenerView, n: number): void;
}

/** What the admin API reads of the running proxy, and the one thing it does there without a store. */
export interface RuntimeStatus extends LiveTables {
  /** A GeoIP database is configured (country rules can match). */
  readonly geoipConfigured: boolean;
  snapshot(): Promise<Snapshot>;
  /** The top `limit` fingerprints of the window, summed over every event loop. */
  fingerprints(limit: number): Promise<FingerprintsView>;
  /** Reset every connection on a backend, on every loop (nothing is stored); resolves with how many. */
  applyBackendReset(ref: SlotRef): Promise<number>;
}
