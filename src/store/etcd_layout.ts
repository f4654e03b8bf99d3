// How a fleet's state lives in etcd: one key per listener setting,
// route and firewall rule under the fleet's prefix, JSON values with a
// version field, a schema-version key and the seed marker. Pure: keys and
// values in, state out.
//
//   {prefix}schema                         "1"
//   {prefix}seeded                         {"version":1,"by":"<instance>","at":"<time>"}
//   {prefix}listeners/{name}               {"version":1,"max_connections":N}
//   {prefix}routes/{listener}/{hostname}   the route's stored value (route_codec.ts, as SQLite keeps it)
//   {prefix}routes/{listener}/{hostname}/{alpn}
//                                          an ALPN route: {alpn} its protocols, sorted, joined by ","
//                                          (a four-part key: releases before ALPN routes ignore it)
//   {prefix}rules/{type}/{value}           {"version":1}, or {"version":1,"keep_established":true}:
//                                          the connections it blocks stay open on every member
//                                          (releases before it read version 1 and ignore the field)
//   {prefix}applied                        what the config file last applied (file_applied.ts)
// Names, host names and rule values are URI-encoded in keys (a CIDR has "/"),
// each part exactly as encodeURIComponent writes it, as every release has
// written it: any other spelling of a key (a raw "," or ":", lower-case hex,
// an encoded letter) would name the same route, rule or listener as the
// canonical key, so it is refused as invalid, as is a key with more parts
// than its kind has.

import { parseRule } from "../firewall/rule_set";
import { maxConnectionsError } from "../config/ranges";
import { type Route, type RouteKey, alpnKey, sortRoutes, withoutClashes } from "../routing/route";
import { type RouteOptions, emptyDraft } from "../routing/route_fields";
import { decodeRoute } from "./route_codec";
import type { ListenerState, StoreState, StoredRule } from "./config_store";

export const SCHEMA_VERSION = "1";

export const keys = {
  schema: (p: string) => `${p}schema`,
  seeded: (p: string) => `${p}seeded`,
  applied: (p: string) => `${p}applied`,
  listener: (p: string, name: string) => `${p}listeners/${encodeURIComponent(name)}`,
  route: (p: string, listener: string, r: RouteKey) =>
    `${p}routes/${encodeURIComponent(listener)}/${encodeURIComponent(r.hostname)}${r.alpn.length === 0 ? "" : `/${encodeURIComponent(alpnKey(r.alpn))}`}`,
  rule: (p: string, r: StoredRule) => `${p}rules/${r.type}/${encodeURIComponent(r.value)}`,
};

export function listenerValue(maxConnections: number): string {
  return JSON.stringify({ version: 1, max_connections: maxConnections });
}

export const RULE_VALUE = JSON.stringify({ version: 1 });

/** A rule's value; `keep_established` only when set (docs/SECURITY.md). */
export function ruleValue(keepEstablished: boolean): string {
  return keepEstablished ? JSON.stringify({ version: 1, keep_established: true }) : RULE_VALUE;
}

/**
 * What one key means, or null for a key this version does not know (ignored,
 * so a newer writer does not break older readers). A value that breaks the
 * rules every source shares (routing/route.ts) is "invalid": never
 * applied, never copied into the last-known-good file.
 */
export type Entry =
  | { kind: "listener"; name: string; maxConnections: number }
  | { kind: "route"; listener: string; route: Route }
  /** `keep`: added with keep_established (false for a deletion). */
  | { kind: "rule"; rule: StoredRule; keep: boolean }
  | { kind: "meta" }
  | { kind: "invalid"; key: string; reason: string };

/** One part of a key, decoded; Invalid unless it is the one spelling encodeURIComponent gives. */
function decode(parts: readonly string[], i: number, what: string): string {
  const part = parts[i]!;
  let text: string;
  try {
    text = decodeURIComponent(part);
  } catch {
    throw new Invalid(`the ${what} in the key is not URI-encoded text`);
  }
  const canonical = encodeURIComponent(text);
  if (canonical !== part) {
    const fixed = parts.with(i, canonical).join("/");
    throw new Invalid(
      `the ${what} in the key is not in canonical form: this key is ${JSON.stringify(fixed)} (each part as encodeURIComponent writes it)`,
    );
  }
  return text;
}

/** Invalid: a key under a known folder with the wrong number of parts. */
function shape(form: string): never {
  throw new Invalid(`the key is not of the form ${form}`);
}

class Invalid extends Error {}

/** A JSON object with version 1, or Invalid (listener and rule values; routes are route_codec.ts's). */
function object(value: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(value);
  } catch {
    throw new Invalid("the value is not JSON");
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Invalid("the value is not a JSON object");
  const o = v as Record<string, unknown>;
  if (o.version !== 1) throw new Invalid(`version ${JSON.stringify(o.version)}: this mc-proxy reads version 1`);
  return o;
}

export function parseEntry(prefix: string, key: string, value: string | null): Entry | null {
  if (!key.startsWith(prefix)) return null;
  const rest = key.slice(prefix.length);
  const parts = rest.split("/");
  try {
    if (rest === "schema" || rest === "seeded" || rest === "applied") return { kind: "meta" };
    if (parts[0] === "listeners") {
      if (parts.length !== 2) shape("listeners/{name}");
      const name = decode(parts, 1, "listener name");
      if (value === null) return { kind: "listener", name, maxConnections: 0 };
      const v = object(value);
      const bad = maxConnectionsError(v.max_connections, "max_connections");
      if (bad !== null) throw new Invalid(bad);
      return { kind: "listener", name, maxConnections: v.max_connections as number };
    }
    if (parts[0] === "routes") {
      if (parts.length !== 3 && parts.length !== 4)
        shape("routes/{listener}/{hostname} or routes/{listener}/{hostname}/{alpn}");
      const listener = decode(parts, 1, "listener name");
      const hostname = decode(parts, 2, "hostname");
      const alpn = parts.length === 4 ? decode(parts, 3, "ALPN list").split(",") : [];
      if (value === null)
        return {
          kind: "route",
          listener,
          route: { ...(emptyDraft() as RouteOptions), hostname, alpn, backends: [] },
        };
      if (hostname === "") throw new Invalid("the key names no hostname");
      if (alpnKey(alpn) !== alpn.join(","))
        throw new Invalid("the key's ALPN list is not sorted (write it as keys.route does)");
      const route = decodeRoute({ hostname, alpn }, value);
      if (!route.ok) throw new Invalid(route.error);
      return { kind: "route", listener, route: route.value };
    }
    // A rule type this release does not know (a newer release's) is ignored.
    if (
      parts[0] === "rules" &&
      (parts[1] === "ip" || parts[1] === "cidr" || parts[1] === "country" || parts[1] === "ja4")
    ) {
      const type = parts[1];
      if (parts.length !== 3) shape(`rules/${type}/{value} (the value URI-encoded: "/" is %2F)`);
      const raw = decode(parts, 2, "rule value");
      if (value === null) return { kind: "rule", rule: { type, value: raw }, keep: false };
      const keep = object(value).keep_established === true;
      const r = parseRule(type, raw);
      if (!r.ok) throw new Invalid(`${type} rule ${JSON.stringify(raw.slice(0, 64))}: ${r.error}`);
      if (r.value !== raw)
        throw new Invalid(`${type} rule ${JSON.stringify(raw)} is not in canonical form (${JSON.stringify(r.value)})`);
      return { kind: "rule", rule: { type, value: r.value }, keep };
    }
  } catch (e) {
    if (e instanceof Invalid) return { kind: "invalid", key, reason: e.message };
    return { kind: "invalid", key, reason: `unreadable: ${(e as Error).message}` };
  }
  return null;
}

/** The state held by a set of keys (one consistent range read). */
export function stateFrom(
  prefix: string,
  kvs: readonly { key: string; value: string }[],
  onInvalid: (key: string, reason: string) => void = () => {},
): StoreState {
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
    if (e.kind === "invalid") {
      onInvalid(e.key, e.reason);
      continue;
    }
    if (e.kind === "listener") get(e.name).maxConnections = e.maxConnections;
    else if (e.kind === "route") get(e.listener).routes.push(e.route);
    else rules.push(e.rule);
  }
  // Keys are read in order, so of two keys that claim one (hostname, protocol) the first stands.
  for (const [name, l] of listeners)
    l.routes = sortRoutes(withoutClashes(l.routes, (r, why) => onInvalid(keys.route(prefix, name, r), why)));
  rules.sort((a, b) => (a.type + a.value < b.type + b.value ? -1 : 1));
  return { listeners, rules };
}

/** The valid rules of a set of keys added with keep_established: their connections stay open. */
export function keptRules(prefix: string, kvs: readonly { key: string; value: string }[]): StoredRule[] {
  const out: StoredRule[] = [];
  for (const kv of kvs) {
    if (!kv.key.startsWith(`${prefix}rules/`)) continue;
    const e = parseEntry(prefix, kv.key, kv.value);
    if (e?.kind === "rule" && e.keep) out.push(e.rule);
  }
  return out;
}
