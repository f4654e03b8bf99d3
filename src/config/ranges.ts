// The ranges numbers may take, from every source (config file, admin API,
// etcd values): each check returns a problem naming the key and the range,
// or null. README "Configuration" has the table.

/**
 * The longest duration any setting takes: 24 days (576h). Bun's timers hold
 * a signed 32-bit millisecond count; a longer one fires after 1 ms
 * (measured), so 600h would turn a shutdown grace period into an instant.
 */
export const MAX_DURATION_MS = 576 * 3_600_000;
export const MAX_DURATION_TEXT = "576h";
/** Counts kept in 32-bit shared counters (max_connections, rate_limit). */
export const MAX_COUNT = 2_147_483_647;

export function showValue(v: unknown): string {
  const s = typeof v === "string" ? JSON.stringify(v) : v === undefined ? "nothing" : (JSON.stringify(v) ?? String(v));
  return s.length > 80 ? `${s.slice(0, 80)}…` : s;
}

export const isInt = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v);

/** A whole number in [min, max], or a problem naming `field` and the range. */
export function intError(v: unknown, field: string, min: number, max: number): string | null {
  if (!isInt(v) || v < min || v > max) return `${field}: ${showValue(v)} must be a whole number from ${min} to ${max}`;
  return null;
}

/** A duration in milliseconds within (0 or 1) … MAX_DURATION_MS. */
export function durationError(ms: unknown, field: string, allowZero = false): string | null {
  if (!isInt(ms)) return `${field}: ${showValue(ms)} is not a duration`;
  if (ms === 0 && !allowZero) return `${field}: must be greater than zero`;
  if (ms < 0 || ms > MAX_DURATION_MS) return `${field}: ${ms} ms is out of range ${allowZero ? 0 : 1} ms-${MAX_DURATION_TEXT}`;
  return null;
}

/** listeners.max_connections, SetListenerMaxConnections and etcd's listener values. */
export function maxConnectionsError(n: unknown, field: string): string | null {
  if (!isInt(n) || n < 0 || n > MAX_COUNT) return `${field}: ${showValue(n)} must be 0 (unlimited) to ${MAX_COUNT}`;
  return null;
}
