// Numbers and names for people (docs/DASHBOARD.md "Views"): 1,234; 1.2 MB; 3 h 4 m.

export const int = (n) => Math.round(n).toLocaleString("en-US");

/** A per-second rate: one decimal below 10 unless whole, "12.3 k" past 10,000. */
export function rate(n) {
  if (n >= 10_000) return `${(n / 1000).toFixed(n >= 100_000 ? 0 : 1)} k`;
  return n >= 10 || Number.isInteger(n) ? int(n) : n.toFixed(1);
}

/** Bytes in SI units (1 kB = 1000 B), one decimal below 10. */
export function bytes(n) {
  const units = ["B", "kB", "MB", "GB", "TB", "PB"];
  let i = 0;
  for (; n >= 1000 && i < units.length - 1; i++) n /= 1000;
  return `${i === 0 || n >= 10 ? Math.round(n) : n.toFixed(1)} ${units[i]}`;
}

/** Seconds as the two largest units: "45 s", "4 m 5 s", "3 h 4 m", "2 d 3 h". */
export function duration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d > 0) return `${d} d ${h} h`;
  if (h > 0) return `${h} h ${m} m`;
  if (m > 0) return s % 60 > 0 ? `${m} m ${s % 60} s` : `${m} m`;
  return `${s} s`;
}

/** How long ago a time (ms since the epoch) was; 0 is "never". */
export const ago = (ms) => (ms > 0 ? `${duration((Date.now() - ms) / 1000)} ago` : "never");

/** A time of day, 24-hour, local. */
export const clock = (ms) => new Date(ms).toLocaleTimeString("en-GB");

/** An admin API enum's name without its prefix: "BACKEND_STATE_DRAIN" → "drain". */
export const enumText = (v, prefix) => String(v).replace(prefix, "").toLowerCase();

export const count = (n, one, many) => `${int(n)} ${n === 1 ? one : many}`;

/** A route's list (ALPN, allow): "any" when empty. */
export const list = (a) => (a.length === 0 ? "any" : a.join(", "));

/** A route's name on its listener, as logs and metrics name it (src/routing/route.ts routeName). */
export const routeName = (r) => (r.alpn.length === 0 ? r.hostname : `${r.hostname}+${[...r.alpn].sort().join(",")}`);
