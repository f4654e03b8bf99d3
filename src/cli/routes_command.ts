// `routes list|add|remove`, through the admin API (ListRoutes, AddRoute,
// RemoveRoute).
import type { ListRoutesReply, RouteMsg } from "../admin/messages";
import { SEND_PROXY_ENUM } from "../admin/protos";
import { maxConnectionsError } from "../config/ranges";
import { routeName } from "../routing/route";
import { help, UsageError } from "./args";
import { alpnList, client, listenerOf, options, print } from "./admin_options";
import { routeLine } from "./route_lines";

export const ROUTES_USAGE = `Usage:
  mc-proxy routes list   -c FILE [--listener ADDR] [--json]
  mc-proxy routes add    -c FILE [--listener ADDR] [--send-proxy-protocol v1|v2] [--alpn P[,P...]]
                         [--allow CIDR[,CIDR...]] [--deny CIDR[,CIDR...]] [--max-connections N] HOSTNAME BACKEND [--json]
  mc-proxy routes remove -c FILE [--listener ADDR] [--alpn P[,P...]] HOSTNAME

HOSTNAME is exact or a wildcard ("*.example.com"); BACKEND is host:port.
--listener is the listener's addr as configured; it may be left out when the
config has one listener. "add" replaces an existing route (the same
HOSTNAME and --alpn list) as a whole.
--send-proxy-protocol sends a PROXY protocol header to the backend (v2
carries the SNI and the connection's id); the default is off.
--alpn makes a route for clients offering one of those ALPN protocols
(e.g. acme-tls/1 for TLS-ALPN-01) beside the hostname's plain route;
"remove" takes the same list to name that route.
--allow / --deny: client addresses or CIDR blocks this route admits or
refuses (a reset, outcome route_denied); --max-connections: connections
open at once through the route over every worker (0: no limit).`;

/** A comma-separated option value as a list ("" or absent: none). */
function list(v: string | undefined): string[] {
  return v === undefined || v === "" ? [] : v.split(",");
}

export async function routes(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === "--help" || sub === "-h") return help(ROUTES_USAGE);
  if (sub !== "list" && sub !== "add" && sub !== "remove")
    throw new UsageError(
      sub === undefined ? "routes needs list, add or remove" : `unknown routes command "${sub}"`,
      ROUTES_USAGE,
    );
  const o = options(
    rest,
    ROUTES_USAGE,
    true,
    sub === "add"
      ? ["--send-proxy-protocol", "--alpn", "--allow", "--deny", "--max-connections"]
      : sub === "remove"
        ? ["--alpn"]
        : [],
  );
  if (o === null) return help(ROUTES_USAGE);
  const pos = o.rest;
  const c = client(o.cfg);
  try {
    if (sub === "list") {
      if (pos.length > 0) throw new UsageError(`unexpected argument ${pos[0]}`, ROUTES_USAGE);
      const r = await c.call<ListRoutesReply>("ListRoutes", { listener: o.listener ?? "" });
      print(o.json, r, () =>
        r.listeners
          .map((l) =>
            [
              l.listener,
              ...(l.routes.length === 0 ? ["  (no routes)"] : l.routes.map((x) => `  ${routeLine(x)}`)),
            ].join("\n"),
          )
          .join("\n"),
      );
    } else if (sub === "add") {
      if (pos.length !== 2) throw new UsageError("routes add needs HOSTNAME and BACKEND", ROUTES_USAGE);
      const listener = listenerOf(o, ROUTES_USAGE);
      const pp = o.values.get("--send-proxy-protocol") ?? "off";
      if (pp !== "off" && pp !== "v1" && pp !== "v2")
        throw new UsageError(`--send-proxy-protocol ${pp}: expected v1, v2 or off`, ROUTES_USAGE);
      const raw = o.values.get("--max-connections") ?? "0";
      const max = /^-?\d{1,16}$/.test(raw) ? Number(raw) : raw;
      const badMax = maxConnectionsError(max, "--max-connections");
      if (badMax !== null) throw new UsageError(badMax, ROUTES_USAGE);
      const route = {
        hostname: pos[0],
        backend: pos[1],
        send_proxy_protocol: SEND_PROXY_ENUM[pp],
        alpn: alpnList(o.values.get("--alpn"), ROUTES_USAGE),
        allow: list(o.values.get("--allow")),
        deny: list(o.values.get("--deny")),
        max_connections: max,
      };
      const r = await c.call<{ route: RouteMsg; replaced: boolean }>("AddRoute", { listener, route });
      print(o.json, r, () => `${r.replaced ? "replaced" : "added"}: ${listener}  ${routeLine(r.route)}`);
    } else {
      if (pos.length !== 1) throw new UsageError("routes remove needs HOSTNAME", ROUTES_USAGE);
      const listener = listenerOf(o, ROUTES_USAGE);
      const alpn = alpnList(o.values.get("--alpn"), ROUTES_USAGE);
      await c.call("RemoveRoute", { listener, hostname: pos[0], alpn });
      const name = routeName({ hostname: pos[0]!, alpn });
      print(o.json, { listener, hostname: pos[0], alpn, removed: true }, () => `removed: ${listener}  ${name}`);
    }
    return 0;
  } finally {
    c.close();
  }
}
