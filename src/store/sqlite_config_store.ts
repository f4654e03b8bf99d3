// The SQLite ConfigStore: synchronous transactions in the database
// (sqlite_database.ts), each applied to the control plane as it commits.

import type { BackendState } from "../routing/backend_table";
import type { Route } from "../routing/route";
import type { ListenerView, RuntimeChanges } from "../server/runtime_views";
import { ruleSet } from "../firewall/rule_set";
import { type ConfigStore, type RouteKey, type StoreState, type StoredRule, setSlotState } from "./config_store";
import type { SqliteDatabase } from "./sqlite_database";

/** The meta key of what the config file last applied (file_applied.ts). */
export const APPLIED_KEY = "file_applied";

/** The SQLite store: synchronous transactions, applied to the data plane as each commits. */
export class SqliteConfigStore implements ConfigStore {
  private current: StoredRule[];
  readonly stale = false;
  readonly invalidValues = 0;

  constructor(
    private readonly store: SqliteDatabase,
    private readonly plane: RuntimeChanges,
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

  async removeRoute(listener: string, route: RouteKey): Promise<boolean> {
    const after = this.store.removeRoute(listener, route);
    if (after.changed) await this.plane.applyRoutes(this.view(listener), after.routes);
    return after.changed;
  }

  async addRule(rule: StoredRule, keepEstablished = false): Promise<boolean> {
    const after = this.store.addRule(rule);
    this.current = after.rules;
    await this.plane.applyRules(ruleSet(after.rules), keepEstablished ? [rule] : []);
    return after.changed;
  }

  async removeRule(rule: StoredRule): Promise<boolean> {
    const after = this.store.removeRule(rule);
    this.current = after.rules;
    if (after.changed) await this.plane.applyRules(ruleSet(after.rules));
    return after.changed;
  }

  async setMaxConnections(listener: string, n: number): Promise<void> {
    this.store.setMaxConnections(listener, n);
    this.plane.applyMaxConnections(this.view(listener), n);
  }

  async setBackendState(listener: string, route: RouteKey, addr: string, state: BackendState): Promise<boolean> {
    const after = this.store.setBackendState(listener, route, addr, state);
    if (!after.changed) return false;
    await this.plane.applyRoutes(this.view(listener), after.routes);
    setSlotState(this.plane, listener, route, addr, state);
    return true;
  }

  state(): StoreState {
    return this.store.state();
  }

  async readApplied(): Promise<{ text: string | null; token: string | null }> {
    const text = this.store.meta(APPLIED_KEY);
    return { text, token: text };
  }

  async swapApplied(token: string | null, text: string): Promise<string | null> {
    return this.store.swapMeta(APPLIED_KEY, token, text) ? text : null;
  }

  rules(): StoredRule[] {
    return this.current;
  }

  describe(): string {
    return `sqlite ${this.store.path}`;
  }

  close(): void {}
}
