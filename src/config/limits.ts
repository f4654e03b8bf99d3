// Every number a setting may take, in one table: its key as
// docs/CONFIGURATION.md names it, its kind, its range, its default and its
// unit. The config file's sections, the route rules (routing/route.ts,
// routing/route_fields.ts), the admin API and etcd values read their bounds
// and defaults here; config/ranges.ts words the problems. A unit test holds
// docs/CONFIGURATION.md to this table.

/**
 * The longest duration any setting takes: 24 days (576h). Bun's timers hold
 * a signed 32-bit millisecond count; a longer one fires after 1 ms
 * (measured), so 600h would turn a shutdown grace period into an instant.
 */
export const MAX_DURATION_MS = 576 * 3_600_000;
/** Counts kept in 32-bit shared counters (max_connections, rate_limit). */
export const MAX_COUNT = 2_147_483_647;

export interface Limit {
  /** Durations in milliseconds; "integer" a whole number; "count" how many entries a list holds. */
  readonly kind: "duration" | "integer" | "count";
  readonly min: number;
  readonly max: number;
  /**
   * Its value when unset (durations in ms); "auto" for workers; null: none
   * of its own (a route's override of a [proxy] default, or a list).
   */
  readonly default: number | "auto" | null;
  readonly unit: "ms" | "bytes" | "connections" | "bits" | "checks" | "tries" | "entries" | "workers" | "weight";
  /** What 0 means, where 0 is not simply the smallest value. */
  readonly zero?: string;
}

const duration = (defaultMs: number | null, min = 1, max = MAX_DURATION_MS): Limit => ({
  kind: "duration",
  min,
  max,
  default: defaultMs,
  unit: "ms",
});
const connections = (zero: string): Limit => ({
  kind: "integer",
  min: 0,
  max: MAX_COUNT,
  default: 0,
  unit: "connections",
  zero,
});
/** health_check_rise / _fall. */
const riseFall = (d: number | null): Limit => ({ kind: "integer", min: 1, max: 100, default: d, unit: "checks" });
const retries = (d: number | null): Limit => ({ kind: "integer", min: 0, max: 30, default: d, unit: "tries" });

/**
 * Keyed "section.key" as docs/CONFIGURATION.md writes it; "listeners." is a
 * [[listeners]] table's key, "routes." a [[listeners.routes]] table's.
 */
export const LIMITS = {
  "proxy.connect_timeout": duration(5_000),
  "proxy.idle_timeout": duration(300_000),
  // Chromium's and quic-go's default QUIC idle timeout is 30 s: a flow quiet that long is over at both ends.
  "proxy.quic_idle_timeout": duration(30_000),
  "proxy.hello_timeout": duration(10_000),
  "proxy.shutdown_timeout": { ...duration(30_000, 0), zero: "force-close at once" },
  // Connections left on a drained or removed backend (docs/POOLS.md "Drains end"): 0 keeps them, as before.
  "proxy.drain_timeout": { ...duration(0, 0), zero: "never" },
  // A ClientHello is a uint24-length handshake message (RFC 8446 §4); a cap
  // under 512 bytes would refuse real clients (the smallest captured one is 214 bytes).
  "proxy.max_hello_bytes": { kind: "integer", min: 512, max: 16_777_219, default: 65_536, unit: "bytes" },
  "proxy.workers": { kind: "integer", min: 1, max: 1024, default: "auto", unit: "workers" },
  // Health checks every 5 s (HAProxy checks every 2 s; a check per backend
  // per 5 s is enough for a pool), timeout 2 s, rise 2, fall 3 (HAProxy's),
  // and two retries.
  "proxy.health_check_interval": duration(5_000),
  "proxy.health_check_timeout": duration(2_000),
  "proxy.health_check_rise": riseFall(2),
  "proxy.health_check_fall": riseFall(3),
  "proxy.retries": retries(2),
  "firewall.rate_limit": { kind: "integer", min: 0, max: MAX_COUNT, default: 0, unit: "connections", zero: "off" },
  "firewall.rate_window": duration(1_000),
  // IPv6 clients are counted per network of this size: a /64 is one customer.
  "firewall.rate_limit_ipv6_prefix": { kind: "integer", min: 48, max: 128, default: 64, unit: "bits" },
  // At most 10,000 fingerprints per event loop (about 0.45 KB each:
  // docs/PERFORMANCE.md). ListFingerprints reads every loop's whole table and
  // sums them: at 10,000 places a loop's report takes 2-9 ms and the merge of
  // two 4-15 ms (at 100,000: 10-100 ms and 90-150 ms), so the bound keeps
  // the stall of each loop small.
  "fingerprints.top": { kind: "integer", min: 0, max: 10_000, default: 1000, unit: "entries", zero: "off" },
  "fingerprints.window": duration(600_000, 10_000, 86_400_000),
  "etcd.dial_timeout": duration(5_000),
  // The resolver's cache (docs/DNS.md): an answer is kept for its TTL, at least min_ttl (a TTL of 0 would
  // ask the resolver for every connection) and at most max_ttl; a missing name for negative_ttl (RFC 2308);
  // an expired answer may be used for stale_ttl while the resolver fails (RFC 8767); 0 = never stale.
  "dns.min_ttl": duration(1_000, 0, 3_600_000),
  "dns.max_ttl": duration(300_000, 1_000, 86_400_000),
  "dns.negative_ttl": duration(5_000, 0, 3_600_000),
  "dns.stale_ttl": { ...duration(300_000, 0, 86_400_000), zero: "never" },
  "dns.cache_size": { kind: "integer", min: 1, max: 1_000_000, default: 10_000, unit: "entries" },
  "dns.timeout": duration(2_000, 100, 60_000),
  // A dashboard login lasts a working day (8h); at most a week.
  "dashboard.session_ttl": duration(8 * 3_600_000, 60_000, 168 * 3_600_000),
  // A TCP listener's open connections, a QUIC listener's flows.
  "listeners.max_connections": connections("unlimited"),
  // A connection older than this is ended (docs/POOLS.md "Drains end"); a route's own wins.
  "listeners.max_connection_lifetime": { ...duration(0, 0), zero: "never" },
  "routes.max_connections": connections("unlimited"),
  "routes.connect_timeout": duration(null),
  "routes.drain_timeout": { ...duration(null, 0), zero: "never" },
  "routes.max_connection_lifetime": { ...duration(null, 0), zero: "never" },
  "routes.health_check_interval": duration(null),
  "routes.health_check_timeout": duration(null),
  "routes.health_check_rise": riseFall(null),
  "routes.health_check_fall": riseFall(null),
  "routes.retries": retries(null),
  // A connection's tried set is a 32-bit mask.
  "routes.backends": { kind: "count", min: 1, max: 31, default: null, unit: "entries" },
  "routes.weight": { kind: "integer", min: 1, max: 256, default: 1, unit: "weight" },
  // RFC 7301 §3.1 names; none (an empty list) is the hostname's plain route.
  "routes.alpn": { kind: "count", min: 1, max: 16, default: null, unit: "entries" },
  "routes.allow": { kind: "count", min: 0, max: 65_536, default: null, unit: "entries" },
  "routes.deny": { kind: "count", min: 0, max: 65_536, default: null, unit: "entries" },
} as const satisfies Record<string, Limit>;

export type LimitKey = keyof typeof LIMITS;

/** A setting's default in milliseconds (durations) or units; for those that have one. */
export function defaultOf(key: LimitKey): number {
  const d = LIMITS[key].default;
  if (typeof d !== "number") throw new Error(`${key} has no numeric default`);
  return d;
}

/** Whether `v` is outside the setting's range (the caller words the problem: config/ranges.ts). */
export function outOfRange(key: LimitKey, v: number): boolean {
  const l: Limit = LIMITS[key];
  return v < l.min || v > l.max;
}
