// The audit line of a mutating admin call (docs/ADMIN_API.md, `msg=admin`):
// every field of the request, nested lists included, strings clipped; the
// listener by its one name (docs/METRICS_AND_LOGS.md "Metrics"), as the
// access log and the metrics name it, whichever way the caller named it.

import type { Fields } from "../log/logger";

/** Fields of one audit line at most (a route of 31 backends has 96). */
const MAX_AUDIT_FIELDS = 200;

/**
 * Every field of the request for the audit line ("route.backends[1].addr"),
 * strings cut to 64 characters; nested messages and lists walked whole, up
 * to MAX_AUDIT_FIELDS (then "truncated" says how many more there were).
 * A `listener` the caller named by its addr is written by its name
 * (`listenerName`), and `listener_given` keeps what the caller wrote.
 */
export function auditFields(
  req: unknown,
  listenerName: (given: string) => string | undefined = () => undefined,
): Fields {
  const out: Fields = {};
  let n = 0;
  let dropped = 0;
  const put = (k: string, v: string | number | boolean) => {
    if (n++ < MAX_AUDIT_FIELDS) out[k] = v;
    else dropped++;
  };
  const walk = (o: unknown, prefix: string, depth: number) => {
    if (typeof o !== "object" || o === null || depth > 4) return;
    const entries: [string, unknown][] = Array.isArray(o)
      ? o.map((v, i) => [`${prefix.slice(0, -1)}[${i}].`, v])
      : Object.entries(o).map(([k, v]) => [`${prefix}${k}`, v]);
    for (const [k, v] of entries) {
      const key = Array.isArray(o) ? k.slice(0, -1) : k;
      if (typeof v === "string") put(key, v.length > 64 ? `${v.slice(0, 64)}…(${Buffer.byteLength(v)} bytes)` : v);
      else if (typeof v === "number" || typeof v === "boolean") put(key, v);
      else walk(v, `${key}.`, depth + 1);
    }
  };
  walk(req, "", 0);
  if (dropped > 0) out.truncated = dropped;
  const given = (req as { listener?: unknown } | null)?.listener;
  const name = typeof given === "string" && given !== "" ? listenerName(given) : undefined;
  if (name !== undefined && name !== given) {
    out.listener = name;
    out.listener_given = out.listener_given ?? (given as string).slice(0, 64);
  }
  return out;
}
