// A route as stored: one JSON value, the same in SQLite (routes.value) and
// in etcd (the value of its routes/ key), written and read here only. The
// route's key (hostname, ALPN) is the row's or the key's; the value holds
// its pool, each backend with its operator state, and its options, each
// where its row in routing/route_fields.ts says:
//
//   {"version":1,"backends":[{"addr":…,"weight":…,"backup":…,"state":…}],"balance":…,
//    "health_check":…,"check":{…},"retries":…,"connect_timeout_ms":…,"send_proxy_protocol":…}
//
// A value's version is the highest `since` of the options it sets: 1 for
// what release 0.2.0 reads, 2 with allow, deny or max_connections, which
// older releases refuse as invalid rather than route without the policy.
// Options of version 1 are always written (0.2.0 requires some of them);
// newer ones only when set. Every version up to VALUE_VERSION is read.

import { type Parsed, fail, ok } from "../config/parsed";
import type { BackendState } from "../routing/backend_table";
import { type BackendSpec, type Route, type RouteKey, routeProblems } from "../routing/route";
import { OPTION_ROWS, type OptionRow, emptyDraft, versionOf } from "../routing/route_fields";

/** The newest value version this release reads and writes. */
export const VALUE_VERSION = Math.max(...OPTION_ROWS.map((r) => r.since));

/** The stored value of a route (its key is not in it). */
export function encodeRoute(r: Route): string {
  const o: Record<string, unknown> = { version: versionOf(r) };
  for (const row of OPTION_ROWS) {
    const v = row.get(r);
    if (row.since > 1 && JSON.stringify(v) === JSON.stringify(row.unset)) continue;
    const [k, sub] = row.stored;
    if (sub === undefined) o[k] = v;
    else if (v !== undefined) ((o[k] ??= {}) as Record<string, unknown>)[sub] = v;
    else o[k] ??= {};
  }
  o.backends = r.backends.map((b) => ({
    addr: b.addr,
    weight: b.weight,
    backup: b.backup,
    state: b.state ?? "enabled",
  }));
  return JSON.stringify(o);
}

/**
 * A stored value read back as the route `key` names, or why it may not be
 * used: not a JSON object, a version this release does not read, an option
 * newer than the value's version, or any rule of routing/route.ts broken.
 */
export function decodeRoute(key: RouteKey, value: string): Parsed<Route> {
  let v: unknown;
  try {
    v = JSON.parse(value);
  } catch {
    return fail("the value is not JSON");
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) return fail("the value is not a JSON object");
  const o = v as Record<string, unknown>;
  if (typeof o.version !== "number" || !Number.isInteger(o.version) || o.version < 1 || o.version > VALUE_VERSION)
    return fail(`version ${JSON.stringify(o.version)}: this mc-proxy reads version 1 to ${VALUE_VERSION}`);
  const draft = emptyDraft();
  const tooNew: OptionRow[] = [];
  for (const row of OPTION_ROWS) {
    const [k, sub] = row.stored;
    const outer = o[k];
    if (
      sub !== undefined &&
      outer !== undefined &&
      (typeof outer !== "object" || outer === null || Array.isArray(outer))
    )
      return fail(`route.${k}: ${JSON.stringify(outer).slice(0, 80)} must be an object`);
    const got = sub === undefined ? outer : (outer as Record<string, unknown> | undefined)?.[sub];
    if (got === undefined) continue;
    if (row.since > o.version) tooNew.push(row);
    row.put(draft, got);
  }
  if (tooNew.length > 0) {
    const names = tooNew.map((r) => r.stored.join("."));
    return fail(
      `${names.join(", ")} need version ${Math.max(...tooNew.map((r) => r.since))} (older releases would ignore them)`,
    );
  }
  const candidate = { ...draft, hostname: key.hostname, alpn: key.alpn, backends: o.backends };
  const bad = routeProblems(candidate, "route");
  if (bad.length > 0) return fail(bad.join("; "));
  const backends = (o.backends as BackendSpec[]).map((b) => ({
    addr: b.addr,
    weight: b.weight,
    backup: b.backup,
    state: b.state ?? "enabled",
  }));
  return ok({ ...(candidate as unknown as Route), backends });
}

/** `next` with each backend that was in `prev` keeping its operator state; a new one keeps its own (enabled when absent). */
export function keepStates(next: Route, prev: Route | undefined): Route {
  const state = (b: BackendSpec): BackendState =>
    prev?.backends.find((o) => o.addr === b.addr)?.state ?? b.state ?? "enabled";
  return { ...next, backends: next.backends.map((b) => ({ ...b, state: state(b) })) };
}
