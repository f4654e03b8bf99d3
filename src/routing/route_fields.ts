// A route's options — everything but its key (hostname, ALPN) and its pool —
// as one table. Each row names the option in the config file, in the stored
// JSON value (SQLite and etcd: route_codec.ts), in the admin API
// (proto/mc_proxy/v1/admin.proto), its value when unset, and its rule.
// route_config.ts reads the TOML by it, route_codec.ts stores by it, the
// admin API maps by it and routeProblems checks by it: a new route option is
// one row here plus the code that uses it (docs/ARCHITECTURE.md
// "Adding a route option").

import { LIMITS, MAX_DURATION_MS } from "../config/limits";
import { durationText } from "../config/duration";
import { type Parsed, fail, ok } from "../config/parsed";
import { durationError, intError, maxConnectionsError, showValue as show } from "../config/ranges";
import type { Kind } from "../config/toml";
import type { CheckSettings, SendProxy } from "../config/types";
import { parseAddressOrCidr } from "../firewall/address";

export type Balance = "round_robin" | "least_connections" | "source_hash";
export type HealthCheckKind = "off" | "tcp" | "tls";

/** A route's options as the model holds them: per-route settings are null where the [proxy] default applies. */
export interface RouteOptions {
  /** Client sources allowed ("address/prefix", canonical); empty: every source the firewall let through. */
  readonly allow: readonly string[];
  /** Client sources refused ("address/prefix", canonical); checked after allow. */
  readonly deny: readonly string[];
  /** Connections open at once through this route, over every event loop; 0: no limit. */
  readonly maxConnections: number;
  readonly balance: Balance;
  /** null: "tcp" for two backends or more, "off" for one. */
  readonly healthCheck: HealthCheckKind | null;
  readonly check: Partial<CheckSettings>;
  readonly retries: number | null;
  /** null: [proxy] connect_timeout. */
  readonly connectTimeoutMs: number | null;
  readonly sendProxyProtocol: SendProxy;
  /** Backend addresses let through the destination guard's built-in refusals (docs/SECURITY.md "Destination guard"); absent: none. */
  readonly allowDestinations?: readonly string[];
  /** Backend addresses never connected to, checked first (docs/SECURITY.md "Destination guard"); absent: none. */
  readonly denyDestinations?: readonly string[];
  /** How long connections left on a drained or removed backend stay open (docs/POOLS.md "Drains end"); 0 never, unset: [proxy] drain_timeout. */
  readonly drainTimeoutMs?: number;
  /** A connection older than this is ended (docs/POOLS.md "Drains end"); 0 never, unset: its listener's. */
  readonly maxConnectionLifetimeMs?: number;
}

export const BALANCES: readonly Balance[] = ["round_robin", "least_connections", "source_hash"];
export const HEALTH_CHECKS: readonly HealthCheckKind[] = ["off", "tcp", "tls"];
export const SEND_PROXY: readonly SendProxy[] = ["off", "v1", "v2"];

/** A route being built from a source (TOML, a stored value, a request): any value, checked by routeProblems. */
export type RouteDraft = { -readonly [K in keyof RouteOptions]?: unknown } & { check: Record<string, unknown> };

/**
 * An allow or deny list: addresses or CIDR blocks (the firewall's parser),
 * in canonical "address/prefix" form, or a problem naming the entry.
 */
export function sourceList(list: unknown, field: string): Parsed<string[]> {
  if (!Array.isArray(list)) return fail(`${field}: ${show(list)} must be a list of addresses or CIDR blocks`);
  const max = LIMITS["routes.allow"].max;
  if (list.length > max) return fail(`${field}: ${list.length} entries; at most ${max} per route`);
  const out: string[] = [];
  for (const [i, e] of list.entries()) {
    if (typeof e !== "string") return fail(`${field}[${i}]: ${show(e)} must be an address or a CIDR block`);
    const c = parseAddressOrCidr(e);
    if (!c.ok) return fail(`${field}[${i}]: ${c.error}`);
    out.push(c.value);
  }
  return ok(out);
}

export interface OptionRow {
  /**
   * The [[listeners.routes]] key and how its value is read: a TOML type
   * (config/toml.ts), "send_proxy" (true, false, "v1", "v2"), or "given"
   * (taken as written; the rule names what it may be).
   */
  readonly toml: string;
  readonly kind: Kind | "send_proxy" | "given";
  /** Where the stored JSON value keeps it: [key] or [object, key]. */
  readonly stored: readonly [string] | readonly [string, string];
  /**
   * The stored value version that first has it: a value setting it (to
   * other than `unset`) carries at least this version, which older
   * releases refuse rather than route without it.
   */
  readonly since: number;
  /**
   * The admin API's Route field and, for an enum, its names' prefix and the
   * values (BALANCE_ + "least_connections" upper-cased; UNSPECIFIED is
   * `unset`); null: set in the config file only (AddRoute keeps the route's own).
   */
  readonly proto: {
    readonly field: string;
    readonly enumPrefix?: string;
    readonly values?: readonly string[];
    /** The model's value from the API's form, when they differ (a duration's text → ms), or a problem. */
    readonly fromApi?: (v: unknown, field: string) => Parsed<unknown>;
  } | null;
  /** Its value when the source does not set it (in the model; stored values leave it out). */
  readonly unset: unknown;
  /** The rule every source shares: a problem naming `field`, or null. */
  readonly rule: (v: unknown, field: string) => string | null;
  /** Canonical form of a value given by an operator (TOML, AddRoute), or a problem; absent: taken as given. */
  readonly canonical?: (v: unknown, field: string) => Parsed<unknown>;
  readonly get: (r: RouteOptions) => unknown;
  readonly put: (r: RouteDraft, v: unknown) => void;
}

const oneOf = (values: readonly unknown[], nullable: boolean) => (v: unknown, field: string) =>
  (nullable && v === null) || values.includes(v) ? null : `${field}: ${show(v)} must be one of ${values.join(", ")}`;

/** allow / deny: canonical "address/prefix" entries (the firewall's parser). */
function sources(k: "allow" | "deny"): OptionRow {
  return {
    toml: k,
    kind: "given",
    stored: [k],
    since: 2,
    proto: { field: k },
    unset: [],
    rule: (v, field) => {
      const l = sourceList(v, field);
      if (!l.ok) return l.error;
      if (l.value.some((e, i) => e !== (v as string[])[i]))
        return `${field}: entries must be in canonical form (${JSON.stringify(l.value.slice(0, 4))}…)`;
      return null;
    },
    canonical: sourceList,
    get: (r) => r[k],
    put: (r, v) => {
      r[k] = v;
    },
  };
}

/** allow_destinations / deny_destinations: entries like allow / deny's, about the backend's resolved address. */
function destinations(toml: "allow_destinations" | "deny_destinations"): OptionRow {
  const key = toml === "allow_destinations" ? "allowDestinations" : "denyDestinations";
  return {
    ...sources("allow"),
    toml,
    stored: [toml],
    since: 3,
    proto: { field: toml },
    get: (r) => r[key] ?? [],
    // Absent when empty: routes from before the guard compare equal to what they were.
    put: (r, v) => {
      if (Array.isArray(v) && v.length === 0) delete r[key];
      else r[key] = v;
    },
  };
}

/**
 * A per-route override of a [proxy] default: null (unset) or a value in
 * range. `api`: the admin API carries it under its TOML key, a duration as
 * its text ("5s") and a count as a number, the proto3 zero ("", 0) unset.
 */
function override(
  toml: string,
  kind: "int" | "duration",
  stored: OptionRow["stored"],
  key: "retries" | "connectTimeoutMs" | "drainTimeoutMs" | "maxConnectionLifetimeMs" | keyof CheckSettings,
  rule: OptionRow["rule"],
  api = false,
  since = 1,
): OptionRow {
  const inCheck = stored.length === 2;
  // Options newer than the first value version are absent from the model when unset, as from the values before them.
  const unset = inCheck || since > 1 ? undefined : null;
  return {
    toml,
    kind,
    stored,
    since,
    proto: api ? { field: toml, fromApi: (v, field) => apiValue(kind, v, field, unset) } : null,
    unset,
    rule: (v, field) => (v === null || v === undefined ? null : rule(v, field)),
    get: (r) => (inCheck ? r.check[key as keyof CheckSettings] : r[key as "retries"]),
    put: (r, v) => {
      if (!inCheck && v === undefined) delete r[key as "retries"];
      else if (!inCheck) r[key as "retries"] = v;
      else if (v === undefined) delete r.check[key];
      else r.check[key] = v;
    },
  };
}

/** An override as the admin API sends it: "" or 0 unset, a duration's text parsed (config/duration.ts). */
function apiValue(kind: "int" | "duration", v: unknown, field: string, unset: unknown): Parsed<unknown> {
  if (v === "" || v === 0) return ok(unset);
  if (kind === "int") return ok(v);
  if (typeof v !== "string") return fail(`${field}: ${show(v)} must be a duration such as "5s"`);
  const ms = durationText(v, MAX_DURATION_MS);
  return ms.ok ? ok(ms.value) : fail(`${field}: ${show(v)} ${ms.error}`);
}

export const OPTION_ROWS: readonly OptionRow[] = [
  sources("allow"),
  sources("deny"),
  destinations("allow_destinations"),
  destinations("deny_destinations"),
  {
    toml: "max_connections",
    kind: "int",
    stored: ["max_connections"],
    since: 2,
    proto: { field: "max_connections" },
    unset: LIMITS["routes.max_connections"].default,
    rule: maxConnectionsError,
    get: (r) => r.maxConnections,
    put: (r, v) => {
      r.maxConnections = v;
    },
  },
  {
    toml: "balance",
    kind: "given",
    stored: ["balance"],
    since: 1,
    proto: { field: "balance", enumPrefix: "BALANCE", values: BALANCES },
    unset: "round_robin",
    rule: oneOf(BALANCES, false),
    get: (r) => r.balance,
    put: (r, v) => {
      r.balance = v;
    },
  },
  {
    toml: "health_check",
    kind: "given",
    stored: ["health_check"],
    since: 1,
    proto: { field: "health_check", enumPrefix: "HEALTH_CHECK", values: HEALTH_CHECKS },
    unset: null,
    rule: oneOf(HEALTH_CHECKS, true),
    get: (r) => r.healthCheck,
    put: (r, v) => {
      r.healthCheck = v;
    },
  },
  override(
    "health_check_interval",
    "duration",
    ["check", "intervalMs"],
    "intervalMs",
    (v, f) => durationError(v, f, LIMITS["routes.health_check_interval"]),
    true,
  ),
  override(
    "health_check_timeout",
    "duration",
    ["check", "timeoutMs"],
    "timeoutMs",
    (v, f) => durationError(v, f, LIMITS["routes.health_check_timeout"]),
    true,
  ),
  override(
    "health_check_rise",
    "int",
    ["check", "rise"],
    "rise",
    (v, f) => intError(v, f, LIMITS["routes.health_check_rise"]),
    true,
  ),
  override(
    "health_check_fall",
    "int",
    ["check", "fall"],
    "fall",
    (v, f) => intError(v, f, LIMITS["routes.health_check_fall"]),
    true,
  ),
  override("retries", "int", ["retries"], "retries", (v, f) => intError(v, f, LIMITS["routes.retries"])),
  override("connect_timeout", "duration", ["connect_timeout_ms"], "connectTimeoutMs", (v, f) =>
    durationError(v, f, LIMITS["routes.connect_timeout"]),
  ),
  override(
    "drain_timeout",
    "duration",
    ["drain_timeout_ms"],
    "drainTimeoutMs",
    (v, f) => durationError(v, f, LIMITS["routes.drain_timeout"]),
    true,
    3,
  ),
  override(
    "max_connection_lifetime",
    "duration",
    ["max_connection_lifetime_ms"],
    "maxConnectionLifetimeMs",
    (v, f) => durationError(v, f, LIMITS["routes.max_connection_lifetime"]),
    true,
    3,
  ),
  {
    toml: "send_proxy_protocol",
    kind: "send_proxy",
    stored: ["send_proxy_protocol"],
    since: 1,
    proto: { field: "send_proxy_protocol", enumPrefix: "SEND_PROXY_PROTOCOL", values: SEND_PROXY },
    unset: "off",
    rule: oneOf(SEND_PROXY, false),
    get: (r) => r.sendProxyProtocol,
    put: (r, v) => {
      r.sendProxyProtocol = v;
    },
  },
];

/** A draft with every option unset. */
export function emptyDraft(): RouteDraft {
  const d: RouteDraft = { check: {} };
  for (const row of OPTION_ROWS) row.put(d, row.unset);
  return d;
}

/** The stored value's version: the highest `since` of the options it sets. */
export function versionOf(r: RouteOptions): number {
  let v = 1;
  for (const row of OPTION_ROWS)
    if (row.since > v && JSON.stringify(row.get(r)) !== JSON.stringify(row.unset)) v = row.since;
  return v;
}
