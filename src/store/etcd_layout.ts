// How a fleet's state lives in etcd (issue 13): one key per listener setting,
// route and firewall rule under the fleet's prefix, JSON values with a
// version field, a schema-version key and the seed marker. Pure: keys and
// values in, state out.
//
//   {prefix}schema                         "1"
//   {prefix}seeded                         {"version":1,"by":"<instance>","at":"<time>"}
//   {prefix}listeners/{name}               {"version":1,"max_connections":N}
//   {prefix}routes/{listener}/{hostname}   {"version":1,"backends":[…],"balance":…,"health_check":…,"check":{…},"retries":…,"send_proxy_protocol":…}
//   {prefix}rules/{type}/{value}           {"version":1}
// Names, host names and rule values are URI-encoded in keys (a CIDR has "/").

import type { BackendSpec, Route } from "../routing/pool";
import type { ListenerState, StoreState, StoredRule } from "./store";

export const SCHEMA_VERSION = "1";

export const keys = {
  schema: (p: string) => `${p}schema`,
  seeded: (p: string) => `${p}seeded`,
  listener: (p: string, name: string) => `${p}listeners/${encodeURIComponent(name)}`,
  route: (p: string, listener: string, hostname: string) => `${p}routes/${encodeURIComponent(listener)}/${encodeURIComponent(hostname)}`,
  rule: (p: string, r: StoredRule) => `${p}rules/${r.type}/${encodeURIComponent(r.value)}`,
};

export function listenerValue(maxConnections: number): string {
  return JSON.stringify({ version: 1, max_connections: maxConnections });
}

export function routeValue(r: Route): string {
  return JSON.stringify({
    version: 1,
    backends: r.backends.map((b) => ({ addr: b.addr, weight: b.weight, backup: b.backup, state: b.state ?? "enabled" })),
    balance: r.balance,
    health_check: r.healthCheck,
    check: r.check,
    retries: r.retries,
    send_proxy_protocol: r.sendProxyProtocol,
  });
}

export const RULE_VALUE = JSON.stringify({ version: 1 });

/** What one key means, or null for a key this version does not know (ignored, so a newer writer does not break older readers). */
export type Entry =
  | { kind: "listener"; name: string; maxConnections: number }
  | { kind: "route"; listener: string; route: Route }
  | { kind: "rule"; rule: StoredRule }
  | { kind: "meta" };

export function parseEntry(prefix: string, key: string, value: string | null): Entry | null {
  if (!key.startsWith(prefix)) return null;
  const rest = key.slice(prefix.length);
  const parts = rest.split("/");
  try {
    if (rest === "schema" || rest === "seeded") return { kind: "meta" };
    if (parts[0] === "listeners" && parts.length === 2) {
      const v = value === null ? { max_connections: 0 } : (JSON.parse(value) as { max_connections: number });
      return { kind: "listener", name: decodeURIComponent(parts[1]!), maxConnections: v.max_connections };
    }
    if (parts[0] === "routes" && parts.length === 3) {
      const hostname = decodeURIComponent(parts[2]!);
      if (value === null) return { kind: "route", listener: decodeURIComponent(parts[1]!), route: { hostname, backends: [], balance: "round_robin", healthCheck: null, check: {}, retries: null, sendProxyProtocol: "off" } };
      const v = JSON.parse(value) as {
        backends: BackendSpec[];
        balance: Route["balance"];
        health_check: Route["healthCheck"];
        check: Route["check"];
        retries: number | null;
        send_proxy_protocol: Route["sendProxyProtocol"];
      };
      return {
        kind: "route",
        listener: decodeURIComponent(parts[1]!),
        route: { hostname, backends: v.backends, balance: v.balance, healthCheck: v.health_check, check: v.check ?? {}, retries: v.retries ?? null, sendProxyProtocol: v.send_proxy_protocol },
      };
    }
    if (parts[0] === "rules" && parts.length === 3 && (parts[1] === "ip" || parts[1] === "cidr" || parts[1] === "country")) {
      return { kind: "rule", rule: { type: parts[1], value: decodeURIComponent(parts[2]!) } };
    }
  } catch {
    return null;
  }
  return null;
}

/** The state held by a set of keys (one consistent range read). */
export function stateFrom(prefix: string, kvs: readonly { key: string; value: string }[]): StoreState {
  const listeners = new Map<string, ListenerState>();
  const rules: StoredRule[] = [];
  const get = (name: string) => {
    let l = listeners.get(name);
    if (l === undefined) listeners.set(name, (l = { maxConnections: 0, routes: [] }));
    return l;
  };
  for (const kv of kvs) {
    const e = parseEntry(prefix, kv.key, kv.value);
    if (e === null || e.kind === "meta") continue;
    if (e.kind === "listener") get(e.name).maxConnections = e.maxConnections;
    else if (e.kind === "route") get(e.listener).routes.push(e.route);
    else rules.push(e.rule);
  }
  for (const l of listeners.values()) l.routes.sort((a, b) => (a.hostname < b.hostname ? -1 : a.hostname > b.hostname ? 1 : 0));
  rules.sort((a, b) => (a.type + a.value < b.type + b.value ? -1 : 1));
  return { listeners, rules };
}
