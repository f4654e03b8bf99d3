// The fleet's writes as etcd transactions on the keys of etcd_layout.ts
// (docs/FLEET.md): each call bounded by dial_timeout (etcd_client.ts), each
// resolving with the revision it committed at — or null when its condition
// failed, and nothing changed. Waiting for the change to come back through
// this instance's watch is the store's part (etcd_store.ts).

import type { Etcd3 } from "etcd3";
import type { EtcdConfig } from "../config/config";
import type { BackendState } from "../routing/backend_table";
import { type Route, routeName } from "../routing/route";
import { type RouteKey, StoreError, type StoredRule } from "./config_store";
import { bounded } from "./etcd_client";
import { keys, listenerValue, parseEntry, ruleValue } from "./etcd_layout";
import { encodeRoute, keepStates } from "./route_codec";

export class FleetWrites {
  constructor(
    private readonly client: Etcd3,
    private readonly cfg: EtcdConfig,
  ) {}

  /** Add or replace a route under a listener that exists; throws when the key kept changing (5 tries). */
  async upsertRoute(listener: string, route: Route): Promise<{ revision: number; replaced: boolean }> {
    const p = this.cfg.prefix;
    const key = keys.route(p, listener, route);
    // Backends that stay keep their operator state (read-modify-write on the key's revision).
    for (let attempt = 0; attempt < 5; attempt++) {
      const prev = await bounded(this.cfg.dialTimeoutMs, "read route", () => this.client.get(key).exec());
      const kv = prev.kvs[0];
      const old = kv === undefined ? undefined : parseEntry(p, key, kv.value.toString());
      const oldRoute = old?.kind === "route" ? old.route : undefined;
      const merged = keepStates(route, oldRoute);
      const cmp =
        kv === undefined
          ? this.client.if(key, "Create", "==", 0)
          : this.client.if(key, "Mod", "==", Number(kv.mod_revision));
      const r = await bounded(this.cfg.dialTimeoutMs, "add route", () =>
        cmp
          .and(keys.listener(p, listener), "Create", ">", 0)
          .then(this.client.put(key).value(encodeRoute(merged)))
          .commit(),
      );
      if (r.succeeded) return { revision: Number(r.header.revision), replaced: kv !== undefined };
    }
    throw new StoreError(`add route: ${routeName(route)} kept changing under us (5 tries); retry`);
  }

  /** null when the route is not there. */
  async removeRoute(listener: string, route: RouteKey): Promise<number | null> {
    const key = keys.route(this.cfg.prefix, listener, route);
    const r = await bounded(this.cfg.dialTimeoutMs, "remove route", () =>
      this.client.if(key, "Create", ">", 0).then(this.client.delete().key(key)).commit(),
    );
    return r.succeeded ? Number(r.header.revision) : null;
  }

  /** null when the rule is there already. */
  async addRule(rule: StoredRule, keepEstablished: boolean): Promise<number | null> {
    const key = keys.rule(this.cfg.prefix, rule);
    const r = await bounded(this.cfg.dialTimeoutMs, "add rule", () =>
      this.client
        .if(key, "Create", "==", 0)
        .then(this.client.put(key).value(ruleValue(keepEstablished)))
        .commit(),
    );
    return r.succeeded ? Number(r.header.revision) : null;
  }

  /** null when the rule is not there. */
  async removeRule(rule: StoredRule): Promise<number | null> {
    const key = keys.rule(this.cfg.prefix, rule);
    const r = await bounded(this.cfg.dialTimeoutMs, "remove rule", () =>
      this.client.if(key, "Create", ">", 0).then(this.client.delete().key(key)).commit(),
    );
    return r.succeeded ? Number(r.header.revision) : null;
  }

  async setMaxConnections(listener: string, n: number): Promise<number> {
    const key = keys.listener(this.cfg.prefix, listener);
    const r = await bounded(this.cfg.dialTimeoutMs, "set max_connections", () =>
      this.client.put(key).value(listenerValue(n)).exec(),
    );
    return Number(r.header.revision);
  }

  /** null when the route or the backend is not there; throws when the key kept changing (5 tries). */
  async setBackendState(listener: string, rk: RouteKey, addr: string, state: BackendState): Promise<number | null> {
    const p = this.cfg.prefix;
    const key = keys.route(p, listener, rk);
    for (let attempt = 0; attempt < 5; attempt++) {
      const prev = await bounded(this.cfg.dialTimeoutMs, "read route", () => this.client.get(key).exec());
      const kv = prev.kvs[0];
      if (kv === undefined) return null;
      const e = parseEntry(p, key, kv.value.toString());
      if (e?.kind !== "route" || !e.route.backends.some((b) => b.addr === addr)) return null;
      const route: Route = {
        ...e.route,
        backends: e.route.backends.map((b) => (b.addr === addr ? { ...b, state } : b)),
      };
      const r = await bounded(this.cfg.dialTimeoutMs, "set backend state", () =>
        this.client
          .if(key, "Mod", "==", Number(kv.mod_revision))
          .then(this.client.put(key).value(encodeRoute(route)))
          .commit(),
      );
      if (r.succeeded) return Number(r.header.revision);
    }
    throw new StoreError(`set backend state: ${routeName(rk)} kept changing under us (5 tries); retry`);
  }
}
