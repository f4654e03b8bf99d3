// `fingerprints`: the JA4 fingerprints seen most (docs/FINGERPRINTS.md),
// through the admin API (ListFingerprints).
import type { FingerprintsReply } from "../admin/messages";
import { MAX_FINGERPRINTS } from "../admin/request_fields";
import { formatDuration } from "../config/duration";
import { help, UsageError } from "./args";
import { ADMIN_TARGET_USAGE, client, noArgs, options, print } from "./admin_options";

export const FINGERPRINTS_USAGE = `Usage: mc-proxy fingerprints (-c FILE | --admin ADDR) [--limit N] [--json]

Lists the JA4 client fingerprints seen most over the last [fingerprints]
window, summed over every worker: connections, how many a ja4 rule refused,
and how many client networks (/24, /48) they came from. Block one with
"mc-proxy firewall add -c FILE ja4 FINGERPRINT". --limit: entries (default 20).

${ADMIN_TARGET_USAGE}`;

export async function fingerprints(args: string[]): Promise<number> {
  const o = options(args, FINGERPRINTS_USAGE, false, ["--limit"]);
  if (o === null) return help(FINGERPRINTS_USAGE);
  noArgs(o, FINGERPRINTS_USAGE);
  const rawLimit = o.values.get("--limit");
  const limit = rawLimit === undefined ? 0 : Number(rawLimit);
  if (rawLimit !== undefined && (!/^[1-9]\d{0,4}$/.test(rawLimit) || limit > MAX_FINGERPRINTS))
    throw new UsageError(
      `--limit: ${JSON.stringify(rawLimit)} is not a number from 1 to ${MAX_FINGERPRINTS}`,
      FINGERPRINTS_USAGE,
    );
  const c = client(o);
  try {
    const r = await c.call<FingerprintsReply>("ListFingerprints", { limit });
    print(o.json, r, () => {
      if (r.capacity === 0) return "the fingerprint table is off ([fingerprints] top = 0)";
      const head = `top fingerprints over the last ${formatDuration(r.window_seconds * 1000)} (${r.workers} worker${r.workers === 1 ? "" : "s"}, ${r.capacity} places each)`;
      if (r.fingerprints.length === 0) return `${head}\nnone yet`;
      const rows = r.fingerprints.map((f) => [
        f.ja4,
        f.error === 0 ? String(f.connections) : `${f.connections} (±${f.error})`,
        String(f.blocked),
        `${f.client_networks_at_least ? "≥" : ""}${f.client_networks}`,
        new Date(f.last_seen_unix_ms).toISOString(),
      ]);
      return [head, ...table(["JA4", "CONNECTIONS", "BLOCKED", "NETWORKS", "LAST SEEN"], rows)].join("\n");
    });
    return 0;
  } finally {
    c.close();
  }
}

/** Left-aligned columns, two spaces apart. */
function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [header, ...rows].map((r) => r.map((v, i) => (i === r.length - 1 ? v : v.padEnd(widths[i]!))).join("  "));
}
