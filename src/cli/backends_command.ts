// `backends list|drain|enable|disable`: a route pool's backends
// (docs/POOLS.md), through the admin API (ListRoutes, SetBackendState).
import type { BackendMsg, ListRoutesReply } from "../admin/messages";
import { help, UsageError } from "./args";
import { ADMIN_TARGET_USAGE, alpnList, client, listenerOf, options, print } from "./admin_options";
import { backendLine, routeLine } from "./route_lines";

export const BACKENDS_USAGE = `Usage:
  mc-proxy backends list    (-c FILE | --admin ADDR) [--listener ADDR] [HOSTNAME] [--json]
  mc-proxy backends drain   (-c FILE | --admin ADDR) [--listener ADDR] [--alpn P[,P...]] HOSTNAME ADDR
  mc-proxy backends enable  (-c FILE | --admin ADDR) [--listener ADDR] [--alpn P[,P...]] HOSTNAME ADDR
  mc-proxy backends disable (-c FILE | --admin ADDR) [--listener ADDR] [--alpn P[,P...]] [--reset] HOSTNAME ADDR

drain: no new connections go to ADDR; open ones continue (watch "active"
fall to 0 in "backends list", restart the backend, then enable it), until
the route's drain_timeout ends them ("draining=N closing at TIME").
disable: no new connections either; --reset also resets the open ones.
--alpn names an ALPN route of HOSTNAME (its protocols, any order).

${ADMIN_TARGET_USAGE}`;

export async function backends(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === "--help" || sub === "-h") return help(BACKENDS_USAGE);
  if (sub !== "list" && sub !== "drain" && sub !== "enable" && sub !== "disable") {
    throw new UsageError(
      sub === undefined ? "backends needs list, drain, enable or disable" : `unknown backends command "${sub}"`,
      BACKENDS_USAGE,
    );
  }
  const reset = rest.includes("--reset");
  if (reset && sub !== "disable") throw new UsageError("--reset goes with disable", BACKENDS_USAGE);
  const o = options(
    rest.filter((a) => a !== "--reset"),
    BACKENDS_USAGE,
    true,
    sub === "list" ? [] : ["--alpn"],
  );
  if (o === null) return help(BACKENDS_USAGE);
  const pos = o.rest;
  const c = client(o);
  try {
    if (sub === "list") {
      if (pos.length > 1) throw new UsageError(`unexpected argument ${pos[1]}`, BACKENDS_USAGE);
      const r = await c.call<ListRoutesReply>("ListRoutes", { listener: o.listener ?? "" });
      const routes = r.listeners.flatMap((l) =>
        l.routes
          .filter((x) => pos[0] === undefined || x.hostname === pos[0])
          .map((x) => ({ listener: l.listener, route: x })),
      );
      if (pos[0] !== undefined && routes.length === 0)
        throw new Error(
          `no route ${pos[0]} on ${o.listener ? `listener ${o.listener}` : `any listener (${r.listeners.map((l) => l.listener).join(", ")})`}`,
        );
      print(o.json, routes, () =>
        routes
          .map(({ listener, route }) =>
            [`${listener}  ${routeLine(route)}`, ...route.backends.map((b) => `  ${backendLine(b)}`)].join("\n"),
          )
          .join("\n"),
      );
      return 0;
    }
    if (pos.length !== 2) throw new UsageError(`backends ${sub} needs HOSTNAME and ADDR`, BACKENDS_USAGE);
    const state = { drain: "BACKEND_STATE_DRAIN", enable: "BACKEND_STATE_ENABLED", disable: "BACKEND_STATE_DISABLED" }[
      sub
    ];
    const alpn = alpnList(o.values.get("--alpn"), BACKENDS_USAGE);
    const listener = await listenerOf(o, BACKENDS_USAGE, c);
    const r = await c.call<{ backend: BackendMsg; connections_reset: number }>("SetBackendState", {
      listener,
      hostname: pos[0],
      alpn,
      addr: pos[1],
      state,
      reset_connections: reset,
    });
    print(
      o.json,
      r,
      () => `${pos[0]}  ${backendLine(r.backend)}${reset ? `  (${r.connections_reset} connection(s) reset)` : ""}`,
    );
    return 0;
  } finally {
    c.close();
  }
}
