// The fleet's state as one instance holds it — every valid key under the
// prefix — and how it reaches this instance's data plane: a whole state (a
// first read, a resync) or one watch batch at a time. Values that break the
// rules every source shares (routing/route.ts), and routes that would not
// fit the backend table, are refused: treated as absent, logged once per
// key and reason, counted.

import type { IKeyValue } from "etcd3";
import type { Logger } from "../log/logger";
import { canBind } from "../routing/pool";
import { type Route, isRoute, routeSetProblems, sortRoutes } from "../routing/route";
import type { RuntimeChanges } from "../server/runtime_views";
import { ruleSet } from "../firewall/rule_set";
import { type StoreState, type StoredRule, setSlotState } from "./config_store";
import { keptRules, keys, parseEntry, stateFrom } from "./etcd_layout";

export class FleetState {
  /** The data plane, once it exists (changes before then only update the state). */
  plane: RuntimeChanges | null = null;
  /** Keys whose values were refused, with the reason last logged. */
  private readonly invalid = new Map<string, string>();
  /** Values refused since start. */
  invalidValues = 0;
  /** The rules of the last whole state read that were added with keep_established (applyState). */
  private kept: StoredRule[] = [];

  constructor(
    private readonly prefix: string,
    /** The listeners this instance serves (by name). */
    private readonly served: ReadonlySet<string>,
    private readonly logger: Logger,
    public state: StoreState,
  ) {}

  /**
   * A value that breaks the rules (routing/route.ts): skipped, as if
   * the key did not exist; logged once per key and reason, and counted.
   */
  refuse(key: string, reason: string): void {
    if (this.invalid.get(key) === reason) return;
    this.invalid.set(key, reason);
    this.invalidValues++;
    this.logger.warn("etcd: invalid value ignored", { key, reason });
  }

  /** The whole prefix read at once: the state replaced (what it refuses logged). */
  replace(kvs: readonly { key: string; value: string }[]): void {
    const seen = new Set<string>();
    const state = stateFrom(this.prefix, kvs, (key, reason) => {
      seen.add(key);
      this.refuse(key, reason);
    });
    for (const k of this.invalid.keys()) if (!seen.has(k)) this.invalid.delete(k);
    this.dropUnbindable(state);
    this.state = state;
    this.kept = keptRules(this.prefix, kvs);
  }

  /**
   * Routes of served listeners whose backends would not fit the backend
   * table (65,536 slots) are refused like invalid values, newest first.
   */
  private dropUnbindable(state: StoreState): void {
    const plane = this.plane;
    if (plane === null) return;
    for (const name of this.served) {
      const l = state.listeners.get(name);
      const view = plane.listener(name);
      if (l === undefined || view === undefined) continue;
      while (
        l.routes.length > 0 &&
        !canBind(plane.backends, view.index, l.routes, view.table.defaultRoute?.route ?? null)
      ) {
        const r = l.routes.pop()!;
        this.refuse(
          keys.route(this.prefix, name, r),
          `the backend table is full (${plane.backends.slots} route backends in all)`,
        );
      }
    }
  }

  /** Apply a whole state to the data plane: the listeners it serves whose routes or limit changed, and the rules. */
  async applyState(before: StoreState): Promise<void> {
    const plane = this.plane;
    if (plane === null) return;
    for (const name of this.served) {
      const now = this.state.listeners.get(name);
      const was = before.listeners.get(name);
      if (now === undefined) continue;
      if (JSON.stringify(now.routes) !== JSON.stringify(was?.routes)) await this.applyRoutes(name, now.routes);
      if (now.maxConnections !== was?.maxConnections)
        plane.applyMaxConnections(plane.listener(name)!, now.maxConnections);
    }
    // The rules a resync finds added close what they block, but those added with keep_established.
    if (JSON.stringify(this.state.rules) !== JSON.stringify(before.rules))
      await plane.applyRules(ruleSet(this.state.rules), this.kept);
  }

  private async applyRoutes(name: string, routes: Route[]): Promise<void> {
    const plane = this.plane!;
    await plane.applyRoutes(plane.listener(name)!, routes);
    // A backend keeps its slot across changes; its stored state is the fleet's.
    for (const r of routes) for (const b of r.backends) setSlotState(plane, name, r, b.addr, b.state ?? "enabled");
  }

  /** One watch response: every event in it applied together. */
  async applyEvents(events: { type: string; kv: IKeyValue }[]): Promise<void> {
    const p = this.prefix;
    const routesChanged = new Set<string>();
    const maxChanged = new Set<string>();
    let rulesChanged = false;
    /** Rules added in this batch with keep_established: what they block stays open. */
    const kept: StoredRule[] = [];
    const plane = this.plane;
    const get = (name: string) => {
      let l = this.state.listeners.get(name);
      if (l === undefined) this.state.listeners.set(name, (l = { maxConnections: 0, routes: [] }));
      return l;
    };
    for (const ev of events) {
      const del = ev.type === "Delete";
      const key = ev.kv.key.toString();
      const e = parseEntry(p, key, del ? null : ev.kv.value.toString());
      if (e === null || e.kind === "meta") continue;
      if (e.kind === "invalid") {
        // An invalid key deleted: nothing was applied from it, so there is nothing to undo.
        if (del) this.invalid.delete(key);
        else this.refuse(e.key, e.reason);
        continue;
      }
      this.invalid.delete(key);
      if (e.kind === "listener") {
        get(e.name).maxConnections = del ? 0 : e.maxConnections;
        maxChanged.add(e.name);
      } else if (e.kind === "route") {
        const l = get(e.listener);
        const next = l.routes.filter((r) => !isRoute(r, e.route));
        if (!del) {
          // One route per (hostname, protocol): a key that would share one with another key's route is refused.
          const clash = routeSetProblems([...next, e.route], "route");
          if (clash.length > 0) {
            this.refuse(key, clash.join("; "));
            continue;
          }
          next.push(e.route);
        }
        sortRoutes(next);
        const view = this.served.has(e.listener) ? plane?.listener(e.listener) : undefined;
        if (
          !del &&
          plane !== null &&
          view !== undefined &&
          !canBind(plane.backends, view.index, next, view.table.defaultRoute?.route ?? null)
        ) {
          this.refuse(key, `the backend table is full (${plane.backends.slots} route backends in all)`);
          continue;
        }
        l.routes = next;
        routesChanged.add(e.listener);
      } else {
        this.state.rules = this.state.rules.filter((r) => r.type !== e.rule.type || r.value !== e.rule.value);
        if (!del) this.state.rules.push(e.rule);
        if (e.keep) kept.push(e.rule);
        rulesChanged = true;
      }
    }
    if (plane !== null) {
      for (const name of routesChanged)
        if (this.served.has(name)) await this.applyRoutes(name, this.state.listeners.get(name)!.routes);
      for (const name of maxChanged)
        if (this.served.has(name))
          plane.applyMaxConnections(plane.listener(name)!, this.state.listeners.get(name)!.maxConnections);
      if (rulesChanged) await plane.applyRules(ruleSet(this.state.rules), kept);
    }
  }
}
