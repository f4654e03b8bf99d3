// The config file and the admin API together (docs/CONFIGURATION.md "The
// file and the API"): the store keeps what the file last applied beside the
// state, and each start compares the file with it — three states, like
// `kubectl apply`: what the file last applied (L), the file now (F), the
// store now (S). Only what the file changed (F ≠ L) is applied; what the
// API changed is left alone; a key both changed is the file's, reported as
// a conflict. Pure: states in, a plan and its summary out.
//
// The document (SQLite: meta key file_applied; etcd: {prefix}applied):
//   {"version":1,"listeners":{"<name>":{"max_connections":N,"routes":{"<route name>":"<digest>"}}},
//    "rules":["<type> <value>",…]}
// A route's digest is the first 128 bits of the SHA-256 of its value
// (route_codec.ts's), every backend's operator state left out (the file sets
// none; SetBackendState's stay): 60 bytes or so a route, so 10,000 routes fit
// in etcd's 1.5 MiB request limit with room to spare. Listeners the file no longer
// names keep their entries: their routes are left as they are.

import { type Parsed, fail, ok } from "../config/parsed";
import { RULE_TYPES, type Rule, parseRule } from "../firewall/rule_set";
import { type Route, type RouteKey, isRoute, routeName, routeSetProblems } from "../routing/route";
import type { StoreState } from "./config_store";
import { decodeRoute, encodeRoute } from "./route_codec";

/** One listener as the file sets it: its limit and its routes by name (digests of their values). */
export interface AppliedListener {
  maxConnections: number;
  routes: Map<string, string>;
  /** The values themselves, by name: for the file and the store, not for a stored document. */
  values?: Map<string, string>;
}

/** What a file applies (or last applied): listeners by name, firewall rules as "type value". */
export interface AppliedState {
  listeners: Map<string, AppliedListener>;
  rules: Set<string>;
}

/** A route's value with no operator state: what the file would write, and what two routes are compared by. */
export function fileValue(r: Route): string {
  return encodeRoute({ ...r, backends: r.backends.map(({ state: _, ...b }) => b) });
}

const ruleText = (r: Rule) => `${r.type} ${r.value}`;

/** A value's digest: 128 bits of SHA-256, in hex. */
export function digest(value: string): string {
  return new Bun.CryptoHasher("sha256").update(value).digest("hex").slice(0, 32);
}

/** The state a config file applies: each listener that has routes of its own, and its firewall rules. */
export function fileState(
  listeners: readonly { name: string; maxConnections: number; routes: readonly Route[] }[],
  rules: readonly Rule[],
): AppliedState {
  return {
    listeners: new Map(
      listeners.map((l) => {
        const values = new Map(l.routes.map((r) => [routeName(r), fileValue(r)]));
        const routes = new Map([...values].map(([n, v]) => [n, digest(v)]));
        return [l.name, { maxConnections: l.maxConnections, routes, values }];
      }),
    ),
    rules: new Set(rules.map(ruleText)),
  };
}

/** The store's state in the same form (operator states left out). */
export function storedState(s: StoreState): AppliedState {
  return fileState(
    [...s.listeners].map(([name, l]) => ({ name, ...l })),
    s.rules,
  );
}

export function encodeApplied(a: AppliedState): string {
  const listeners: Record<string, unknown> = {};
  for (const [name, l] of [...a.listeners].sort((x, y) => (x[0] < y[0] ? -1 : 1))) {
    const routes: Record<string, unknown> = {};
    for (const [n, v] of [...l.routes].sort((x, y) => (x[0] < y[0] ? -1 : 1))) routes[n] = v;
    listeners[name] = { max_connections: l.maxConnections, routes };
  }
  return JSON.stringify({ version: 1, listeners, rules: [...a.rules].sort() });
}

/** The key a route name stands for (route.ts routeName: hostname, then "+" and the protocols). */
function keyOf(name: string): RouteKey {
  // A pattern route ("^…$", which may hold "+") has no protocols (routing/route.ts).
  const plus = name.startsWith("^") ? -1 : name.indexOf("+");
  return plus < 0
    ? { hostname: name, alpn: [] }
    : { hostname: name.slice(0, plus), alpn: name.slice(plus + 1).split(",") };
}

const NAME_PROBE = JSON.stringify({ version: 1, backends: [{ addr: "127.0.0.1:1", weight: 1, backup: false }] });

/** A stored document read back; every route and rule passes the validator any other source passes. */
export function decodeApplied(text: string): Parsed<AppliedState> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return fail("not JSON");
  }
  const o = v as { version?: unknown; listeners?: unknown; rules?: unknown } | null;
  if (typeof o !== "object" || o === null || o.version !== 1) return fail("not a version 1 document");
  if (typeof o.listeners !== "object" || o.listeners === null || !Array.isArray(o.rules))
    return fail("listeners or rules missing");
  const listeners = new Map<string, AppliedListener>();
  for (const [name, raw] of Object.entries(o.listeners as Record<string, unknown>)) {
    const l = raw as { max_connections?: unknown; routes?: unknown } | null;
    if (typeof l !== "object" || l === null || typeof l.routes !== "object" || l.routes === null)
      return fail(`listener ${JSON.stringify(name)}: not an object with routes`);
    if (!Number.isSafeInteger(l.max_connections) || (l.max_connections as number) < 0)
      return fail(`listener ${JSON.stringify(name)}: max_connections`);
    const routes = new Map<string, string>();
    for (const [n, d] of Object.entries(l.routes as Record<string, unknown>)) {
      if (typeof d !== "string" || !/^[0-9a-f]{32}$/.test(d)) return fail(`route ${JSON.stringify(n)}: not a digest`);
      // The name passes the validator every route's key passes (a route of one placeholder backend).
      const r = decodeRoute(keyOf(n), NAME_PROBE);
      if (!r.ok || routeName(r.value) !== n)
        return fail(`route ${JSON.stringify(n)}: ${r.ok ? "not canonical" : r.error}`);
      routes.set(n, d);
    }
    listeners.set(name, { maxConnections: l.max_connections as number, routes });
  }
  const rules = new Set<string>();
  for (const t of o.rules) {
    const [type, value] = typeof t === "string" ? t.split(" ", 2) : [];
    if (!RULE_TYPES.includes(type as Rule["type"]) || value === undefined) return fail(`rule ${JSON.stringify(t)}`);
    const p = parseRule(type as Rule["type"], value);
    if (!p.ok) return fail(`rule ${JSON.stringify(t)}: ${p.error}`);
    rules.add(`${type} ${p.value}`);
  }
  return ok({ listeners, rules });
}

export type RouteStep =
  | { op: "add" | "change"; listener: string; name: string; route: Route; fields: string[] }
  | { op: "remove"; listener: string; name: string; key: RouteKey };

/** What a start applies, and what it says about it. */
export interface Plan {
  routes: RouteStep[];
  rulesAdded: Rule[];
  rulesRemoved: Rule[];
  limits: { listener: string; from: number; to: number }[];
  /** Keys the API changed since the file last applied them, that the file changes now: the file's value applies. */
  conflicts: string[];
  /** The document to keep once applied. */
  next: AppliedState;
}

/** The options (stored field names) in which two values differ; none when either is unknown. */
function changedFields(a: string | undefined, b: string | undefined): string[] {
  if (a === undefined || b === undefined) return [];
  const x = JSON.parse(a) as Record<string, unknown>;
  const y = JSON.parse(b) as Record<string, unknown>;
  return [...new Set([...Object.keys(x), ...Object.keys(y)])]
    .filter((k) => k !== "version" && JSON.stringify(x[k]) !== JSON.stringify(y[k]))
    .sort();
}

/** Names listed in a summary line before "and N more". */
const SHOWN = 20;

/** At most SHOWN items joined by `sep`, then how many more. */
export function listed(xs: readonly string[], sep: string): string {
  return xs.length <= SHOWN ? xs.join(sep) : `${xs.slice(0, SHOWN).join(sep)} (and ${xs.length - SHOWN} more)`;
}

const shown = (name: string) => (name === "" ? "_default" : name);

/**
 * The steps that bring the file's changes since `last` into a store holding
 * `current`. `routesOf` gives the file's routes by listener and name (the
 * values carry more than the canonical text: the route itself).
 */
export function planApply(
  last: AppliedState,
  file: AppliedState,
  fileRoutes: ReadonlyMap<string, ReadonlyMap<string, Route>>,
  current: AppliedState,
): Plan {
  const plan: Plan = { routes: [], rulesAdded: [], rulesRemoved: [], limits: [], conflicts: [], next: file };
  const next: AppliedState = { listeners: new Map(last.listeners), rules: file.rules };
  for (const [listener, f] of file.listeners) {
    next.listeners.set(listener, f);
    const l = last.listeners.get(listener);
    const s = current.listeners.get(listener);
    const where = (name: string) => `${shown(name)} on ${listener}`;
    for (const name of new Set([...f.routes.keys(), ...(l?.routes.keys() ?? [])])) {
      const fv = f.routes.get(name);
      const lv = l?.routes.get(name);
      if (fv === lv) continue;
      const sv = s?.routes.get(name);
      if (fv === undefined) {
        plan.routes.push({ op: "remove", listener, name, key: keyOf(name) });
        if (sv !== undefined && sv !== lv)
          plan.conflicts.push(`${where(name)}: changed over the API since the file set it; the file removes it`);
        continue;
      }
      const route = fileRoutes.get(listener)!.get(name)!;
      if (lv === undefined) {
        plan.routes.push({ op: "add", listener, name, route, fields: [] });
        if (sv !== undefined && sv !== fv)
          plan.conflicts.push(`${where(name)}: added over the API with other settings; the file's apply`);
      } else {
        // What this apply changes: the store's value against the file's.
        plan.routes.push({
          op: "change",
          listener,
          name,
          route,
          fields: changedFields(s?.values?.get(name), f.values?.get(name)),
        });
        if (sv !== lv)
          plan.conflicts.push(
            `${where(name)}: ${sv === undefined ? "removed" : "changed"} over the API since the file set it; the file's value applies`,
          );
      }
    }
    if (l !== undefined && l.maxConnections !== f.maxConnections) {
      const from = s?.maxConnections ?? l.maxConnections;
      plan.limits.push({ listener, from, to: f.maxConnections });
      if (s !== undefined && s.maxConnections !== l.maxConnections)
        plan.conflicts.push(
          `${listener} max_connections: set to ${s.maxConnections} over the API since the file set ${l.maxConnections}; the file's ${f.maxConnections} applies`,
        );
    }
  }
  const rule = (t: string): Rule => {
    const [type, value] = t.split(" ", 2) as [Rule["type"], string];
    return { type, value };
  };
  for (const t of file.rules) if (!last.rules.has(t)) plan.rulesAdded.push(rule(t));
  for (const t of last.rules) if (!file.rules.has(t)) plan.rulesRemoved.push(rule(t));
  plan.next = next;
  return plan;
}

/**
 * The plan's route steps that the rules every write obeys would refuse
 * (routing/route.ts: one route per hostname and protocol), by step, when
 * applied in order — removals first, as apply_file.ts runs them — to the
 * store's routes. The admin API refuses the same write (ALREADY_EXISTS).
 */
export function refusedSteps(p: Plan, store: StoreState): Map<RouteStep, string> {
  const routes = new Map([...store.listeners].map(([n, l]) => [n, [...l.routes]]));
  const refused = new Map<RouteStep, string>();
  for (const s of p.routes)
    if (s.op === "remove")
      routes.set(
        s.listener,
        (routes.get(s.listener) ?? []).filter((r) => !isRoute(r, s.key)),
      );
  for (const s of p.routes) {
    if (s.op === "remove") continue;
    const next = [...(routes.get(s.listener) ?? []).filter((r) => !isRoute(r, s.route)), s.route];
    const clash = routeSetProblems(next, "route");
    if (clash.length > 0) refused.set(s, `${clash[0]!}; remove or change that route first`);
    else routes.set(s.listener, next);
  }
  return refused;
}

/** A step as the summary's failures name it. */
export function stepName(s: RouteStep): string {
  return `${s.op} ${shown(s.name)} on ${s.listener}`;
}

export function isEmpty(p: Plan): boolean {
  return p.routes.length + p.rulesAdded.length + p.rulesRemoved.length + p.limits.length === 0;
}

/**
 * One line: `routes: +d.example.test ~b.example.test (backends) -c.example.test;
 * firewall: +1 cidr -1 ip; limits: none; conflicts: none`. Routes are named
 * "name@listener" when the plan touches more than one listener.
 */
export function summarize(p: Plan): string {
  const many = new Set(p.routes.map((s) => s.listener)).size > 1;
  const label = (s: RouteStep) => `${shown(s.name)}${many ? `@${s.listener}` : ""}`;
  const routes = p.routes.map((s) =>
    s.op === "add"
      ? `+${label(s)}`
      : s.op === "remove"
        ? `-${label(s)}`
        : `~${label(s)}${s.fields.length > 0 ? ` (${s.fields.join(", ")})` : ""}`,
  );
  const count = (rules: Rule[], sign: string) =>
    RULE_TYPES.map((t) => [t, rules.filter((r) => r.type === t).length] as const)
      .filter(([, n]) => n > 0)
      .map(([t, n]) => `${sign}${n} ${t}`);
  const firewall = [...count(p.rulesAdded, "+"), ...count(p.rulesRemoved, "-")];
  const limits = p.limits.map((l) => `${l.listener} max_connections ${l.from}→${l.to}`);
  const or = (xs: string[]) => (xs.length === 0 ? "none" : listed(xs, " "));
  return `routes: ${or(routes)}; firewall: ${or(firewall)}; limits: ${or(limits)}; conflicts: ${
    p.conflicts.length === 0 ? "none" : p.conflicts.join("; ")
  }`;
}

/** Where the file and the store differ, for the first start of a store seeded by an earlier release. */
export function differences(file: AppliedState, current: AppliedState): string[] {
  const out: string[] = [];
  for (const [listener, f] of file.listeners) {
    const s = current.listeners.get(listener);
    for (const [name, v] of f.routes) {
      const sv = s?.routes.get(name);
      if (sv !== v) out.push(`${shown(name)} on ${listener}: ${sv === undefined ? "not in the store" : "differs"}`);
    }
    for (const name of s?.routes.keys() ?? [])
      if (!f.routes.has(name)) out.push(`${shown(name)} on ${listener}: not in the file`);
  }
  for (const t of file.rules) if (!current.rules.has(t)) out.push(`rule ${t}: not in the store`);
  for (const t of current.rules) if (!file.rules.has(t)) out.push(`rule ${t}: not in the file`);
  return out;
}
