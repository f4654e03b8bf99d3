// The one interface the admin plane writes through: SQLite, the
// embedded default, or etcd for a fleet. A store is also responsible for the
// data plane reaching what it committed: SQLite applies each change right
// after its transaction; etcd applies what its watch delivers — the writing
// instance's own changes included — and a write returns once the local
// tables hold it.

import type { RuleType } from "../firewall/rule_set";
import type { BackendState } from "../routing/backend_table";
import { type Route, type RouteKey, routeName } from "../routing/route";

export type { RouteKey };
import type { LiveTables } from "../server/runtime_views";

/** A route as stored: the pool with each backend's operator state. */
export type StoredRoute = Route;

export interface StoredRule {
  type: RuleType;
  value: string;
}

/** One listener's stored state. */
export interface ListenerState {
  maxConnections: number;
  routes: StoredRoute[];
}

/** Everything a store holds, listeners by name. */
export interface StoreState {
  listeners: Map<string, ListenerState>;
  rules: StoredRule[];
}

export class StoreError extends Error {
  /** SQLITE_BUSY / SQLITE_LOCKED: another process holds the lock; retrying may succeed. */
  readonly busy: boolean;
  /** The store cannot be reached (etcd down): UNAVAILABLE, nothing changed. */
  readonly unavailable: boolean;
  /** Committed to the store but not yet applied here (DEADLINE_EXCEEDED: it will apply). */
  readonly notApplied: boolean;
  constructor(
    message: string,
    options?: { cause?: unknown; busy?: boolean; unavailable?: boolean; notApplied?: boolean },
  ) {
    super(message, options);
    this.name = "StoreError";
    this.busy = options?.busy ?? false;
    this.unavailable = options?.unavailable ?? false;
    this.notApplied = options?.notApplied ?? false;
  }
}

export interface ConfigStore {
  upsertRoute(listener: string, route: Route): Promise<{ replaced: boolean }>;
  /** False when there was no such route. */
  removeRoute(listener: string, route: RouteKey): Promise<boolean>;
  /**
   * False when the rule was already there. The open connections it blocks
   * are closed on every instance unless `keepEstablished` (docs/SECURITY.md).
   */
  addRule(rule: StoredRule, keepEstablished?: boolean): Promise<boolean>;
  /** False when there was no such rule. */
  removeRule(rule: StoredRule): Promise<boolean>;
  setMaxConnections(listener: string, n: number): Promise<void>;
  /** False when the route has no such backend. */
  setBackendState(listener: string, route: RouteKey, addr: string, state: BackendState): Promise<boolean>;
  /** Everything the store holds now (listeners by name, with their routes, and the rules). */
  state(): StoreState;
  /**
   * What the config file last applied (store/file_applied.ts's document; null
   * before the first), and a token for swapApplied.
   */
  readApplied(): Promise<{ text: string | null; token: string | null }>;
  /**
   * Keep `text` as what the file last applied if the stored one is still
   * `token`'s: the new token, or null when another process changed it first.
   */
  swapApplied(token: string | null, text: string): Promise<string | null>;
  /** Every firewall rule in force (from memory). */
  rules(): StoredRule[];
  /** For GetStatus and /readyz: "sqlite", "etcd: synced at revision N", "etcd: stale since …". */
  describe(): string;
  /** True while serving state that may be behind the fleet's (etcd unreachable). */
  readonly stale: boolean;
  /** Values read from the store that broke the rules and were skipped, since start (etcd; 0 for SQLite). */
  readonly invalidValues: number;
  close(): void;
}

/** Put a backend's operator state into the shared table the data plane reads (immediate for every worker). */
export function setSlotState(
  plane: LiveTables,
  listener: string,
  key: RouteKey,
  addr: string,
  state: BackendState,
): void {
  const route = plane.listener(listener)?.table.find(routeName(key));
  const i = route?.backends.findIndex((b) => b.addr === addr) ?? -1;
  if (route !== undefined && i >= 0) plane.backends.setState(route.refs[i]!, state);
}
