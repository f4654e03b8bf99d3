// A route and a backend as one line of `routes list` and `backends list`
// (docs/COMMAND_LINE.md), from the admin API's replies.
import type { BackendMsg, RouteMsg } from "../admin/messages";
import { BACKEND_STATE_ENUM, BALANCE_ENUM, HEALTH_CHECK_ENUM, fromEnum, shortSendProxy } from "../admin/protos";
import { routeName } from "../routing/route";

/**
 * "app.example.com  ->  10.0.0.5:8443" (plus "  (send-proxy v2)"), or for a
 * pool "app.example.com  ->  pool of 3 (round_robin, tls check)"; a pattern
 * route "pattern ^(?<app>…)\.apps\.test$  ->  {app}.svc.test:443"; then its
 * policy: client allow / deny, allow_destinations / deny_destinations,
 * drain_timeout, max_connection_lifetime (each when set), open connections.
 */
export function routeLine(r: RouteMsg): string {
  const pp = shortSendProxy(r.send_proxy_protocol) ?? r.send_proxy_protocol;
  const target =
    r.backends.length <= 1
      ? r.backend
      : `pool of ${r.backends.length} (${fromEnum(BALANCE_ENUM, r.balance, "round_robin")}, ${fromEnum(HEALTH_CHECK_ENUM, r.health_check, null) ?? "default"} check)`;
  const alpn = r.alpn ?? [];
  const shown = (l: string[]) => (l.length <= 3 ? l.join(",") : `${l.length} sources`);
  const listed = (key: string, l: string[] | undefined) => (l?.length ? [`${key}=${shown(l)}`] : []);
  const extras = [
    ...listed("allow", r.allow),
    ...listed("deny", r.deny),
    ...listed("allow_destinations", r.allow_destinations),
    ...listed("deny_destinations", r.deny_destinations),
    ...(r.drain_timeout ? [`drain_timeout=${r.drain_timeout}`] : []),
    ...(r.max_connection_lifetime ? [`max_connection_lifetime=${r.max_connection_lifetime}`] : []),
    `active=${r.active_connections ?? 0}${r.max_connections ? `/${r.max_connections}` : ""}`,
  ];
  // The route's name as the access log and metrics give it ("app.example.com+acme-tls/1"); a pattern route's is its pattern.
  const name = `${r.hostname_pattern ? "pattern " : ""}${routeName({ hostname: r.hostname, alpn })}`;
  return `${name}  ->  ${target}${pp === "off" ? "" : `  (send-proxy ${pp})`}  ${extras.join("  ")}`;
}

/**
 * One backend: "10.0.0.5:8443  weight=1  enabled  up  active=3  last check ok"; drained with connections open,
 * "…  active=3  draining=3 closing at 2026-01-01T00:00:02.000Z  …".
 */
export function backendLine(b: BackendMsg): string {
  const state = fromEnum(BACKEND_STATE_ENUM, b.state, "enabled");
  const h = b.health;
  return `${b.addr}  weight=${b.weight}${b.backup ? "  backup" : ""}  ${String(state)}  ${h?.up ? "up" : "down"}  active=${b.active_connections}${drainPart(b)}  last check ${h?.last_check ?? "none"}${h !== null && h.consecutive_failures > 0 ? `  failures=${h.consecutive_failures}` : ""}`;
}

/** A drained or disabled backend's open connections and when drain_timeout ends them (docs/POOLS.md "Drains end"). */
function drainPart(b: BackendMsg): string {
  if (!b.draining_connections) return "";
  return `  draining=${b.draining_connections}${b.closes_at ? ` closing at ${b.closes_at}` : " (no drain_timeout)"}`;
}
