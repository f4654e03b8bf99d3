import { routeName } from "../routing/route";
import { type RoutedConfig as Config, loadRoutedConfig } from "../routing/route_config";
import { formatDuration } from "../config/duration";
import {
  BACKEND_STATE_ENUM,
  BALANCE_ENUM,
  HEALTH_CHECK_ENUM,
  RULE_TYPE_ENUM,
  SEND_PROXY_ENUM,
  type ShortRuleType,
  fromEnum,
  shortRuleType,
  shortSendProxy,
} from "../admin/protos";
import { AdminClient } from "./admin_client";
import { help, parseArgs, UsageError } from "./args";
import { MAX_FINGERPRINTS } from "../admin/admin_service";
import { routeOwners } from "../config/listeners";
import { maxConnectionsError } from "../config/ranges";
import type { BackendMsg, FingerprintsReply, ListRoutesReply, RouteMsg, StatusReply } from "../admin/messages";

export const STATUS_USAGE = `Usage: mc-proxy status -c FILE [--json]

Shows the running instance's version, uptime, connection counters and
listeners, through the admin API named in FILE's [grpc] section.`;

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

export const FIREWALL_USAGE = `Usage:
  mc-proxy firewall list   -c FILE [--json]
  mc-proxy firewall add    -c FILE TYPE VALUE [--json]
  mc-proxy firewall remove -c FILE TYPE VALUE

TYPE is ip, cidr, country or ja4; e.g. "firewall add -c FILE cidr 198.51.100.0/24",
"firewall add -c FILE ja4 t13d1516h2_8daaf6152771_e5627efa2ab1" (the access
log's ja4 field; a part ending in "*" matches any rest of it: "t13d*_8daaf6152771_*").`;

interface Opts {
  cfg: Config;
  json: boolean;
  listener: string | null;
  /** The command's own flags with values. */
  values: Map<string, string>;
  rest: string[];
}

function options(args: string[], usage: string, allowListener: boolean, values: string[] = []): Opts | null {
  const a = parseArgs(args, usage, {
    values: [...(allowListener ? ["--listener"] : []), ...values],
    switches: ["--json"],
  });
  if (a.help) return null;
  if (a.config === null) throw new UsageError("-c FILE is required", usage);
  return {
    cfg: loadRoutedConfig(a.config),
    json: a.switches.has("--json"),
    listener: a.flags.get("--listener") ?? null,
    values: a.flags,
    rest: a.rest,
  };
}

function client(cfg: Config): AdminClient {
  if (cfg.grpc === null) throw new Error(`${cfg.file}: no [grpc] section: the admin API is not configured`);
  return new AdminClient(cfg.grpc);
}

function print(json: boolean, value: unknown, human: () => string): void {
  console.log(json ? JSON.stringify(value, null, 2) : human());
}

/** --listener, or the only listener with routes of its own in the config (config/listeners.ts routeOwners). */
function listenerOf(o: Opts, usage: string): string {
  if (o.listener !== null) return o.listener;
  const owners = routeOwners(o.cfg);
  // A TCP listener by its addr, as before; a QUIC one by its name (its addr in the admin API is "ADDR/quic").
  if (owners.length === 1) return owners[0]!.protocol === "tcp" ? owners[0]!.addr : owners[0]!.name;
  throw new UsageError(
    `--listener ADDR is required: the config has ${owners.length} listeners (${owners.map((l) => l.addr).join(", ")})`,
    usage,
  );
}

export async function status(args: string[]): Promise<number> {
  const o = options(args, STATUS_USAGE, false);
  if (o === null) return help(STATUS_USAGE);
  noArgs(o, STATUS_USAGE);
  const c = client(o.cfg);
  try {
    const s = await c.call<StatusReply>("GetStatus");
    print(o.json, s, () => {
      const lines = [
        `mc-proxy ${s.version}, up ${formatDuration(s.uptime_seconds * 1000)} (since ${new Date(s.started_at_unix_seconds * 1000).toISOString()})`,
        `connections: ${s.total_connections} total, ${s.active_connections} active, cap ${s.connection_cap === 0 ? "none" : s.connection_cap} (from the open-file limit)`,
        ...(s.unauthenticated_admin
          ? ["WARNING: the admin API accepts any TLS client (grpc.allow_unauthenticated_admin)"]
          : []),
        `outcomes: ${s.outcomes.length === 0 ? "none yet" : s.outcomes.map((x) => `${x.outcome}=${x.count}`).join(" ")}`,
        "listeners:",
        ...s.listeners.map(
          (l) =>
            `  ${l.addr}  routes=${l.route_count}  active=${l.active_connections}  max=${l.max_connections === 0 ? "unlimited" : l.max_connections}` +
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

export const FINGERPRINTS_USAGE = `Usage: mc-proxy fingerprints -c FILE [--limit N] [--json]

Lists the JA4 client fingerprints seen most over the last [fingerprints]
window, summed over every worker: connections, how many a ja4 rule refused,
and how many client networks (/24, /48) they came from. Block one with
"mc-proxy firewall add -c FILE ja4 FINGERPRINT". --limit: entries (default 20).`;

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
  const c = client(o.cfg);
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

/**
 * "app.example.com  ->  10.0.0.5:8443" (plus "  (send-proxy v2)"), or for a
 * pool "app.example.com  ->  pool of 3 (round_robin, tls check)".
 */
function routeLine(r: RouteMsg): string {
  const pp = shortSendProxy(r.send_proxy_protocol) ?? r.send_proxy_protocol;
  const target =
    r.backends.length <= 1
      ? r.backend
      : `pool of ${r.backends.length} (${fromEnum(BALANCE_ENUM, r.balance, "round_robin")}, ${fromEnum(HEALTH_CHECK_ENUM, r.health_check, null) ?? "default"} check)`;
  const alpn = r.alpn ?? [];
  const shown = (l: string[]) => (l.length <= 3 ? l.join(",") : `${l.length} sources`);
  const extras = [
    ...(r.allow?.length ? [`allow=${shown(r.allow)}`] : []),
    ...(r.deny?.length ? [`deny=${shown(r.deny)}`] : []),
    `active=${r.active_connections ?? 0}${r.max_connections ? `/${r.max_connections}` : ""}`,
  ];
  // The route's name as the access log and metrics give it ("app.example.com+acme-tls/1").
  const name = routeName({ hostname: r.hostname, alpn });
  return `${name}  ->  ${target}${pp === "off" ? "" : `  (send-proxy ${pp})`}  ${extras.join("  ")}`;
}

/** A comma-separated option value as a list ("" or absent: none). */
function list(v: string | undefined): string[] {
  return v === undefined || v === "" ? [] : v.split(",");
}

/**
 * --alpn's protocols (absent: none, the plain route). An empty protocol id
 * is invalid (RFC 7301 §3.1: each is 1-255 bytes), so "--alpn ''" or a
 * stray "," is refused rather than read as the plain route.
 */
function alpnList(v: string | undefined, usage: string): string[] {
  if (v === undefined) return [];
  const l = v.split(",");
  if (l.includes(""))
    throw new UsageError(
      `--alpn ${JSON.stringify(v)}: an empty protocol name (RFC 7301 §3.1: each is 1-255 bytes); leave --alpn out for the plain route`,
      usage,
    );
  return l;
}

/** One backend: "10.0.0.5:8443  weight=1  enabled  up  active=3  last check ok". */
function backendLine(b: BackendMsg): string {
  const state = fromEnum(BACKEND_STATE_ENUM, b.state, "enabled");
  const h = b.health;
  return `${b.addr}  weight=${b.weight}${b.backup ? "  backup" : ""}  ${String(state)}  ${h?.up ? "up" : "down"}  active=${b.active_connections}  last check ${h?.last_check ?? "none"}${h !== null && h.consecutive_failures > 0 ? `  failures=${h.consecutive_failures}` : ""}`;
}

export const BACKENDS_USAGE = `Usage:
  mc-proxy backends list    -c FILE [--listener ADDR] [HOSTNAME] [--json]
  mc-proxy backends drain   -c FILE [--listener ADDR] [--alpn P[,P...]] HOSTNAME ADDR
  mc-proxy backends enable  -c FILE [--listener ADDR] [--alpn P[,P...]] HOSTNAME ADDR
  mc-proxy backends disable -c FILE [--listener ADDR] [--alpn P[,P...]] [--reset] HOSTNAME ADDR

drain: no new connections go to ADDR; open ones continue (watch "active"
fall to 0 in "backends list", restart the backend, then enable it).
disable: no new connections either; --reset also resets the open ones.
--alpn names an ALPN route of HOSTNAME (its protocols, any order).`;

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
  const c = client(o.cfg);
  try {
    if (sub === "list") {
      if (pos.length > 1) throw new UsageError(`unexpected argument ${pos[1]}`, BACKENDS_USAGE);
      const r = await c.call<ListRoutesReply>("ListRoutes", { listener: o.listener ?? "" });
      const routes = r.listeners.flatMap((l) =>
        l.routes
          .filter((x) => pos[0] === undefined || x.hostname === pos[0])
          .map((x) => ({ listener: l.listener, route: x })),
      );
      if (pos[0] !== undefined && routes.length === 0) throw new Error(`no route ${pos[0]}`);
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
    const listener = listenerOf(o, BACKENDS_USAGE);
    const state = { drain: "BACKEND_STATE_DRAIN", enable: "BACKEND_STATE_ENABLED", disable: "BACKEND_STATE_DISABLED" }[
      sub
    ];
    const alpn = alpnList(o.values.get("--alpn"), BACKENDS_USAGE);
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

const shortType = (t: string) => shortRuleType(t) ?? t;

export async function firewall(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === "--help" || sub === "-h") return help(FIREWALL_USAGE);
  if (sub !== "list" && sub !== "add" && sub !== "remove")
    throw new UsageError(
      sub === undefined ? "firewall needs list, add or remove" : `unknown firewall command "${sub}"`,
      FIREWALL_USAGE,
    );
  const o = options(rest, FIREWALL_USAGE, false);
  if (o === null) return help(FIREWALL_USAGE);
  const pos = o.rest;
  const c = client(o.cfg);
  try {
    if (sub === "list") {
      if (pos.length > 0) throw new UsageError(`unexpected argument ${pos[0]}`, FIREWALL_USAGE);
      const r = await c.call<{ rules: { type: string; value: string }[] }>("GetFirewallRules");
      print(o.json, r, () =>
        r.rules.length === 0 ? "(no rules)" : r.rules.map((x) => `${shortType(x.type).padEnd(8)}${x.value}`).join("\n"),
      );
      return 0;
    }
    if (pos.length !== 2) throw new UsageError(`firewall ${sub} needs TYPE and VALUE`, FIREWALL_USAGE);
    const type = Object.hasOwn(RULE_TYPE_ENUM, pos[0]!) ? RULE_TYPE_ENUM[pos[0] as ShortRuleType] : undefined;
    if (type === undefined)
      throw new UsageError(`TYPE must be ip, cidr, country or ja4, not "${pos[0]}"`, FIREWALL_USAGE);
    const rule = { type, value: pos[1] };
    if (sub === "add") {
      const r = await c.call<{ rule: { type: string; value: string }; added: boolean }>("AddFirewallRule", { rule });
      print(o.json, r, () => `${r.added ? "added" : "already present"}: ${shortType(r.rule.type)} ${r.rule.value}`);
    } else {
      await c.call("RemoveFirewallRule", { rule });
      print(o.json, { rule, removed: true }, () => `removed: ${pos[0]} ${pos[1]}`);
    }
    return 0;
  } finally {
    c.close();
  }
}

function noArgs(o: Opts, usage: string): void {
  if (o.rest.length > 0) throw new UsageError(`unexpected argument ${o.rest[0]}`, usage);
}
