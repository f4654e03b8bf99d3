// `status`: the running instance's version, uptime, pid and generation,
// counters and listeners, through the admin API (GetStatus).
import type { StatusReply } from "../admin/messages";
import { formatDuration } from "../config/duration";
import { help } from "./args";
import { ADMIN_TARGET_USAGE, client, noArgs, options, print } from "./admin_options";

export const STATUS_USAGE = `Usage: mc-proxy status (-c FILE | --admin ADDR) [--json]

Shows the running instance's version, uptime, pid and generation,
connection counters and listeners, through the admin API.

${ADMIN_TARGET_USAGE}`;

export async function status(args: string[]): Promise<number> {
  const o = options(args, STATUS_USAGE, false);
  if (o === null) return help(STATUS_USAGE);
  noArgs(o, STATUS_USAGE);
  const c = client(o);
  try {
    const s = await c.call<StatusReply>("GetStatus");
    print(o.json, s, () => {
      const lines = [
        `mc-proxy ${s.version}, up ${formatDuration(s.uptime_seconds * 1000)} (since ${new Date(s.started_at_unix_seconds * 1000).toISOString()})`,
        `serving: pid ${s.pid}, generation ${s.generation} (1 after a start, one more per reload)`,
        `connections: ${s.total_connections} total, ${s.active_connections} active, cap ${s.connection_cap === 0 ? "none" : s.connection_cap} (from the open-file limit)`,
        ...(s.unauthenticated_admin
          ? ["WARNING: the admin API accepts any TLS client (grpc.allow_unauthenticated_admin)"]
          : []),
        `outcomes: ${s.outcomes.length === 0 ? "none yet" : s.outcomes.map((x) => `${x.outcome}=${x.count}`).join(" ")}`,
        "listeners:",
        ...s.listeners.map(
          (l) =>
            `  ${listenerTitle(l)}  routes=${l.route_count}  active=${l.active_connections}  max=${l.max_connections === 0 ? "unlimited" : l.max_connections}` +
            (l.proxy_protocol ? `  proxy_protocol from ${l.trusted_proxies.join(",")}` : ""),
        ),
      ];
      return lines.join("\n");
    });
    return 0;
  } finally {
    c.close();
  }
}

/** A listener as `status` names it: its label (the name in logs and metrics), and its addr when that differs. */
function listenerTitle(l: { label: string; addr: string }): string {
  // An older server answers no label (""): its addr was the label.
  const label = l.label || l.addr;
  return label === l.addr ? label : `${label} (${l.addr})`;
}
