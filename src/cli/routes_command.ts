// `routes list|add|remove`, through the admin API (ListRoutes, AddRoute,
// RemoveRoute).
import type { AddRouteReply, ListRoutesReply, RouteInput } from "../admin/messages";
import { SEND_PROXY_ENUM } from "../admin/protos";
import { LIMITS, type LimitKey } from "../config/limits";
import { intError, maxConnectionsError } from "../config/ranges";
import { routeName } from "../routing/route";
import { BALANCES, HEALTH_CHECKS } from "../routing/route_fields";
import { help, UsageError } from "./args";
import { ADMIN_TARGET_USAGE, alpnList, client, listenerOf, options, print } from "./admin_options";
import { routeLine } from "./route_lines";

export const ROUTES_USAGE = `Usage:
  mc-proxy routes list   (-c FILE | --admin ADDR) [--listener ADDR] [--json]
  mc-proxy routes add    (-c FILE | --admin ADDR) [--listener ADDR] [--send-proxy-protocol v1|v2] [--alpn P[,P...]]
                         [--allow CIDR[,CIDR...]] [--deny CIDR[,CIDR...]] [--max-connections N]
                         [--allow-destination CIDR[,CIDR...]] [--deny-destination CIDR[,CIDR...]]
                         (HOSTNAME | --pattern RE) (BACKEND | --backend ADDR[,weight=N][,backup] ...)
                         [--balance round_robin|least_connections|source_hash] [--health-check off|tcp|tls]
                         [--health-check-interval D] [--health-check-timeout D]
                         [--health-check-rise N] [--health-check-fall N]
                         [--drain-timeout D] [--max-connection-lifetime D] [--json]
  mc-proxy routes remove (-c FILE | --admin ADDR) [--listener ADDR] [--alpn P[,P...]] (HOSTNAME | --pattern RE)

HOSTNAME is exact or a wildcard ("*.example.com"); BACKEND is host:port.
--pattern makes a templated route instead (docs/ROUTING.md "Templated
routes"): an anchored RE2 pattern with named captures, whose backends may
use them and {sni}: --pattern '^(?<app>[a-z0-9-]{1,63}).apps.example.com$'
--backend '{app}.internal:443'.
--listener is the listener's name or addr; it may be left out when the
server has one listener. "add" replaces an existing route (the same
HOSTNAME and --alpn list) as a whole, and says what it replaced.
--backend, given once per backend, makes a pool (docs/POOLS.md): each
ADDR may carry ",weight=N" (${LIMITS["routes.weight"].min}-${LIMITS["routes.weight"].max}) and ",backup"; --balance and
--health-check* are the pool's settings (durations such as "5s", rise and
fall ${LIMITS["routes.health_check_rise"].min}-${LIMITS["routes.health_check_rise"].max} checks; unset: the [proxy] defaults).
--send-proxy-protocol sends a PROXY protocol header to the backend (v2
carries the SNI and the connection's id); the default is off.
--alpn makes a route for clients offering one of those ALPN protocols
(e.g. acme-tls/1 for TLS-ALPN-01) beside the hostname's plain route;
"remove" takes the same list to name that route.
--allow / --deny: client addresses or CIDR blocks this route admits or
refuses (a reset, outcome route_denied); --max-connections: connections
open at once through the route over every worker (0: no limit).
--allow-destination / --deny-destination: backend addresses (what a name
resolves to) let through the destination guard's built-in refusals, or
never connected to (a reset, outcome destination_denied; docs/SECURITY.md
"Destination guard").
--drain-timeout: connections left on a drained, disabled or removed backend
end this long after ("0s" never; unset: [proxy] drain_timeout);
--max-connection-lifetime: a connection older than this is ended ("0s"
never; unset: the listener's). Both end with FIN, then RST after a grace
(docs/POOLS.md "Drains end").

${ADMIN_TARGET_USAGE}`;

/** A comma-separated option value as a list ("" or absent: none). */
function list(v: string | undefined): string[] {
  return v === undefined || v === "" ? [] : v.split(",");
}

/** The flags `routes add` takes with a value, besides the repeatable --backend. */
const ADD_FLAGS = [
  "--pattern",
  "--send-proxy-protocol",
  "--alpn",
  "--allow",
  "--deny",
  "--allow-destination",
  "--deny-destination",
  "--max-connections",
  "--balance",
  "--health-check",
  "--health-check-interval",
  "--health-check-timeout",
  "--health-check-rise",
  "--health-check-fall",
  "--drain-timeout",
  "--max-connection-lifetime",
];

/** The repeatable --backend values taken out of `args` (the parser keeps one value a flag), and the rest. */
export function backendFlags(args: readonly string[], usage: string): { specs: string[]; rest: string[] } {
  const specs: string[] = [];
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--") {
      rest.push(...args.slice(i));
      break;
    }
    if (a.startsWith("--backend=")) specs.push(a.slice("--backend=".length));
    else if (a === "--backend") {
      const v = args[i + 1];
      if (v === undefined || v.startsWith("-")) throw new UsageError("--backend needs a value", usage);
      specs.push(v);
      i++;
    } else rest.push(a);
  }
  return { specs, rest };
}

/**
 * "ADDR[,weight=N][,backup]" as AddRoute's backend, each option at most once
 * and the weight in routes.weight's range (config/limits.ts), as the config
 * file has it: the API reads a weight of 0 as unset, so it never gets one.
 */
export function backendSpec(spec: string, usage: string): { addr: string; weight: number; backup: boolean } {
  const [addr = "", ...opts] = spec.split(",");
  const refuse = (why: string) => new UsageError(`--backend ${JSON.stringify(spec)}: ${why}`, usage);
  if (addr === "") throw refuse("no address");
  let weight: number | null = null;
  let backup = false;
  for (const o of opts) {
    if (o.startsWith("weight=")) {
      if (weight !== null) throw refuse("weight= given twice");
      const w = wholeNumber(o.slice("weight=".length));
      const bad = intError(w, "weight", LIMITS["routes.weight"]);
      if (bad !== null) throw refuse(bad);
      weight = w as number;
    } else if (o === "backup") {
      if (backup) throw refuse("backup given twice");
      backup = true;
    } else throw refuse(`${JSON.stringify(o)} is not weight=N or backup`);
  }
  return { addr, weight: weight ?? 0, backup };
}

/** A number as typed, for the range check's wording: digits as their number, anything else as the text. */
function wholeNumber(raw: string): number | string {
  return /^-?\d{1,16}$/.test(raw) ? Number(raw) : raw;
}

/** An enum flag's value as the proto's name: "least_connections" → "BALANCE_LEAST_CONNECTIONS"; absent: unset. */
function enumFlag(v: string | undefined, prefix: string, values: readonly string[], flag: string): string | undefined {
  if (v === undefined) return undefined;
  if (!values.includes(v)) throw new UsageError(`${flag} ${v}: expected ${values.join(", ")}`, ROUTES_USAGE);
  return `${prefix}_${v.toUpperCase()}`;
}

/**
 * --health-check-rise / --health-check-fall: in the route's range
 * (config/limits.ts); absent: 0, which AddRoute reads as unset.
 */
export function countFlag(v: string | undefined, flag: string, key: LimitKey): number {
  if (v === undefined) return 0;
  const n = wholeNumber(v);
  const bad = intError(n, flag, LIMITS[key]);
  if (bad !== null) throw new UsageError(bad, ROUTES_USAGE);
  return n as number;
}

/** --health-check-interval, --health-check-timeout, --drain-timeout, --max-connection-lifetime: the server reads the duration; "" (unset over the API) is refused. */
function durationFlag(v: string | undefined, flag: string): string {
  if (v === "")
    throw new UsageError(`${flag}: "" is not a duration (e.g. "5s"); leave ${flag} out for the default`, ROUTES_USAGE);
  return v ?? "";
}

export async function routes(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === "--help" || sub === "-h") return help(ROUTES_USAGE);
  if (sub !== "list" && sub !== "add" && sub !== "remove")
    throw new UsageError(
      sub === undefined ? "routes needs list, add or remove" : `unknown routes command "${sub}"`,
      ROUTES_USAGE,
    );
  const pool = sub === "add" ? backendFlags(rest, ROUTES_USAGE) : { specs: [], rest };
  const o = options(
    pool.rest,
    ROUTES_USAGE,
    true,
    sub === "add" ? ADD_FLAGS : sub === "remove" ? ["--alpn", "--pattern"] : [],
  );
  if (o === null) return help(ROUTES_USAGE);
  const pos = o.rest;
  const c = client(o);
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
      const route = addedRoute(pos, pool.specs, o.values);
      const listener = await listenerOf(o, ROUTES_USAGE, c);
      const r = await c.call<AddRouteReply>("AddRoute", { listener, route });
      print(o.json, r, () => addedLines(listener, r));
    } else {
      const hostname = routeKeyArg(pos, o.values.get("--pattern"), "routes remove needs HOSTNAME or --pattern RE");
      const alpn = alpnList(o.values.get("--alpn"), ROUTES_USAGE);
      const listener = await listenerOf(o, ROUTES_USAGE, c);
      await c.call("RemoveRoute", { listener, hostname, alpn });
      const name = routeName({ hostname, alpn });
      print(o.json, { listener, hostname, alpn, removed: true }, () => `removed: ${listener}  ${name}`);
    }
    return 0;
  } finally {
    c.close();
  }
}

/** HOSTNAME, or --pattern's text (a pattern route's key), alone. */
function routeKeyArg(pos: string[], pattern: string | undefined, need: string): string {
  if (pattern === undefined) {
    if (pos.length !== 1) throw new UsageError(need, ROUTES_USAGE);
    return pos[0]!;
  }
  if (pos.length !== 0)
    throw new UsageError(`--pattern replaces HOSTNAME; unexpected argument ${pos[0]}`, ROUTES_USAGE);
  return pattern;
}

/** AddRoute's route from `routes add`'s arguments: one BACKEND, or a pool of --backend flags. */
function addedRoute(args: string[], specs: string[], values: Map<string, string>): RouteInput {
  const pattern = values.get("--pattern");
  // With --pattern, HOSTNAME is left out: the pattern takes its place.
  const pos = pattern === undefined ? args : ["", ...args];
  if (specs.length > 0 && pos.length !== 1)
    throw new UsageError(
      pos.length === 0 ? "routes add needs HOSTNAME" : "routes add takes BACKEND or --backend, not both",
      ROUTES_USAGE,
    );
  if (specs.length === 0 && pos.length !== 2)
    throw new UsageError("routes add needs HOSTNAME and BACKEND (or --backend ADDR ...)", ROUTES_USAGE);
  const pp = values.get("--send-proxy-protocol") ?? "off";
  if (pp !== "off" && pp !== "v1" && pp !== "v2")
    throw new UsageError(`--send-proxy-protocol ${pp}: expected v1, v2 or off`, ROUTES_USAGE);
  const max = wholeNumber(values.get("--max-connections") ?? "0");
  const badMax = maxConnectionsError(max, "--max-connections");
  if (badMax !== null) throw new UsageError(badMax, ROUTES_USAGE);
  return {
    ...(pattern === undefined ? { hostname: pos[0] } : { hostname_pattern: pattern }),
    ...(specs.length === 0 ? { backend: pos[1] } : { backends: specs.map((s) => backendSpec(s, ROUTES_USAGE)) }),
    send_proxy_protocol: SEND_PROXY_ENUM[pp],
    alpn: alpnList(values.get("--alpn"), ROUTES_USAGE),
    allow: list(values.get("--allow")),
    deny: list(values.get("--deny")),
    allow_destinations: list(values.get("--allow-destination")),
    deny_destinations: list(values.get("--deny-destination")),
    max_connections: max,
    balance: enumFlag(values.get("--balance"), "BALANCE", BALANCES, "--balance"),
    health_check: enumFlag(values.get("--health-check"), "HEALTH_CHECK", HEALTH_CHECKS, "--health-check"),
    health_check_interval: durationFlag(values.get("--health-check-interval"), "--health-check-interval"),
    health_check_timeout: durationFlag(values.get("--health-check-timeout"), "--health-check-timeout"),
    health_check_rise: countFlag(values.get("--health-check-rise"), "--health-check-rise", "routes.health_check_rise"),
    health_check_fall: countFlag(values.get("--health-check-fall"), "--health-check-fall", "routes.health_check_fall"),
    drain_timeout: durationFlag(values.get("--drain-timeout"), "--drain-timeout"),
    max_connection_lifetime: durationFlag(values.get("--max-connection-lifetime"), "--max-connection-lifetime"),
  };
}

/** "added: L  route", or "replaced: L  route" and what it was — a pool never flattened silently. */
export function addedLines(listener: string, r: AddRouteReply): string {
  const now = `${r.replaced ? "replaced" : "added"}: ${listener}  ${routeLine(r.route)}`;
  if (r.previous === null) return now;
  const was = r.previous.backends.map((b) => b.addr);
  const lost = was.filter((a) => !r.route.backends.some((b) => b.addr === a));
  return [
    now,
    `  was: ${routeLine(r.previous)}${was.length > 1 ? ` [${was.join(", ")}]` : ""}`,
    ...(lost.length > 0 && was.length > 1
      ? [`  no longer in the pool: ${lost.join(", ")} (give every backend with --backend to keep a pool)`]
      : []),
  ].join("\n");
}
