// The one interface the admin plane writes through: SQLite, the
// embedded default, or etcd for a fleet. A store is also responsible for the
// data plane reaching what it committed: SQLite applies each change right
// after its transaction; etcd applies what its watch delivers — the writing
// instance's own changes included — and a write returns once the local
// tables hold it.

import type { FirewallRules } from "../firewall/firewall";
import type { BackendState } from "../routing/backend_table";
import type { Route } from "../routing/pool";
import type { DataPlane, ListenerView } from "../server/data_plane";
import type { Store, StoredRule } from "./store";

export interface ConfigStore {
  upsertRoute(listener: string, route: Route): Promise<{ replaced: boolean }>;
  /** False when there was no such route. */
  removeRoute(listener: string, hostname: string): Promise<boolean>;
  /** False when the rule was already there. */
  addRule(rule: StoredRule): Promise<boolean>;
  /** False when there was no such rule. */
  removeRule(rule: StoredRule): Promise<boolean>;
  setMaxConnections(listener: string, n: number): Promise<void>;
  /** False when the route has no such backend. */
  setBackendState(listener: string, hostname: string, addr: string, state: BackendState): Promise<boolean>;
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

export function rulesFromStore(rules: readonly StoredRule[]): FirewallRules {
  return {
    blockedIps: rules.filter((r) => r.type === "ip").map((r) => r.value),
    blockedCidrs: rules.filter((r) => r.type === "cidr").map((r) => r.value),
    blockedCountries: rules.filter((r) => r.type === "country").map((r) => r.value),
  };
}

/** The SQLite store: synchronous transactions, applied to the data plane as each commits. */
export class SqliteConfigStore implements ConfigStore {
  private current: StoredRule[];
  readonly stale = false;
  readonly invalidValues = 0;

  constructor(
    private readonly store: Store,
    private readonly plane: DataPlane,
  ) {
    this.current = store.rules();
  }

  private view(listener: string): ListenerView {
    return this.plane.listener(listener)!;
  }

  async upsertRoute(listener: string, route: Route): Promise<{ replaced: boolean }> {
    const after = this.store.upsertRoute(listener, route);
    await this.plane.applyRoutes(this.view(listener), after.routes);
    return { replaced: after.changed };
  }

  async removeRoute(listener: string, hostname: string): Promise<boolean> {
    const after = this.store.removeRoute(listener, hostname);
    if (after.changed) await this.plane.applyRoutes(this.view(listener), after.routes);
    return after.changed;
  }

  async addRule(rule: StoredRule): Promise<boolean> {
    const after = this.store.addRule(rule);
    this.current = after.rules;
    await this.plane.applyRules(rulesFromStore(after.rules));
    return after.changed;
  }

  async removeRule(rule: StoredRule): Promise<boolean> {
    const after = this.store.removeRule(rule);
    this.current = after.rules;
    if (after.changed) await this.plane.applyRules(rulesFromStore(after.rules));
    return after.changed;
  }

  async setMaxConnections(listener: string, n: number): Promise<void> {
    this.store.setMaxConnections(listener, n);
    this.plane.applyMaxConnections(this.view(listener), n);
  }

  async setBackendState(listener: string, hostname: string, addr: string, state: BackendState): Promise<boolean> {
    const after = this.store.setBackendState(listener, hostname, addr, state);
    if (!after.changed) return false;
    await this.plane.applyRoutes(this.view(listener), after.routes);
    setSlotState(this.plane, listener, hostname, addr, state);
    return true;
  }

  rules(): StoredRule[] {
    return this.current;
  }

  describe(): string {
    return `sqlite ${this.store.path}`;
  }

  close(): void {}
}

/** Put a backend's operator state into the shared table the data plane reads (immediate for every worker). */
export function setSlotState(plane: DataPlane, listener: string, hostname: string, addr: string, state: BackendState): void {
  const route = plane
    .listener(listener)
    ?.table.routes()
    .find((r) => r.hostname === hostname);
  const i = route?.backends.findIndex((b) => b.addr === addr) ?? -1;
  if (route !== undefined && i >= 0) plane.backends.setState(route.refs[i]!, state);
}
