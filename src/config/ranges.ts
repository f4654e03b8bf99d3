// The problems a number out of its range makes, worded once for every
// source (config file, admin API, etcd values): each check returns a problem
// naming the key and the range, or null (config/parsed.ts). The ranges
// themselves are config/limits.ts's; docs/CONFIGURATION.md has the table.

import { formatDuration } from "./duration";
import { LIMITS, type Limit } from "./limits";

export function showValue(v: unknown): string {
  const s = typeof v === "string" ? JSON.stringify(v) : v === undefined ? "nothing" : (JSON.stringify(v) ?? String(v));
  return s.length > 80 ? `${s.slice(0, 80)}…` : s;
}

export const isInt = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v);

/** A whole number in the setting's range, or a problem naming `field` and the range. */
export function intError(v: unknown, field: string, l: Limit): string | null {
  if (!isInt(v) || v < l.min || v > l.max)
    return `${field}: ${showValue(v)} must be a whole number from ${l.min} to ${l.max}`;
  return null;
}

/** A duration in milliseconds in the setting's range. */
export function durationError(ms: unknown, field: string, l: Limit): string | null {
  if (!isInt(ms)) return `${field}: ${showValue(ms)} is not a duration`;
  if (ms === 0 && l.min > 0) return `${field}: must be greater than zero`;
  if (ms < l.min || ms > l.max) return `${field}: ${ms} ms is out of range ${l.min} ms-${formatDuration(l.max)}`;
  return null;
}

/** listeners.max_connections, a route's, SetListenerMaxConnections and etcd's listener values. */
export function maxConnectionsError(n: unknown, field: string): string | null {
  const l = LIMITS["listeners.max_connections"];
  if (!isInt(n) || n < l.min || n > l.max) return `${field}: ${showValue(n)} must be 0 (${l.zero}) to ${l.max}`;
  return null;
}
