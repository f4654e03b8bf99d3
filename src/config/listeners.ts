// The [[listeners]] tables: where each binds (one endpoint once, however
// written), its name, limits, PROXY protocol settings and default backend;
// its [[listeners.routes]] are read by the RouteReader the loader is given
// (routing/route_config.ts).

import { parseAddressOrCidr } from "../firewall/address";
import { type HostPort, endpointKey, parseHostPort } from "../net/host_port";
import { destinationList } from "./dns";
import { defaultOf } from "./limits";
import { maxConnectionsError } from "./ranges";
import { type Table, checkKeys, isTable, show, typed } from "./toml";
import type { Config, ListenerConfig, QuicListenerConfig, RouteReader, SendProxy, TcpListenerConfig } from "./types";

const LISTENER_KEYS: Record<string, unknown> = {
  addr: "string",
  name: "string",
  max_connections: "int",
  max_connection_lifetime: "duration",
  default_backend: "string",
  default_backend_send_proxy_protocol: "send_proxy",
  proxy_protocol: "bool",
  trusted_proxies: "strings",
  allow_destinations: "strings",
  deny_destinations: "strings",
  routes: "routes",
  protocol: "string",
};

/** What a `protocol = "quic"` listener may set: routes of its own, or none to use the TCP listener's of its name. */
const QUIC_KEYS: Record<string, unknown> = {
  addr: "string",
  name: "string",
  protocol: "string",
  max_connections: "int",
  routes: "routes",
};

/** A QUIC listener's max_connections when unset: routed flows at once (docs/HTTP3.md). */
export const QUIC_DEFAULT_MAX_CONNECTIONS = 10_000;

/** The listener names a name may take: as the admin API and the store key them. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9._:[\]-]{0,99}$/;
const NAME_RULE = "must be 1-100 characters of A-Z a-z 0-9 . _ : - [ ] (starting with a letter or digit)";

function isQuic(item: unknown): boolean {
  return isTable(item) && item.protocol === "quic";
}
export function validateListeners<R>(
  v: unknown,
  problems: string[],
  readRoutes: RouteReader<R>,
): TcpListenerConfig<R>[] {
  if (v === undefined) {
    problems.push(`listeners: at least one [[listeners]] table is required`);
    return [];
  }
  if (!Array.isArray(v)) {
    problems.push(`listeners: expected [[listeners]] tables, got ${show(v)}`);
    return [];
  }
  if (v.length === 0) problems.push(`listeners: at least one [[listeners]] table is required`);
  const out: TcpListenerConfig<R>[] = [];
  const seenAddr = new Map<string, [number, string]>();
  const seenName = new Map<string, number>();
  v.forEach((item, i) => {
    const where = `listeners[${i}]`;
    if (!isTable(item)) {
      problems.push(`${where}: expected a table, got ${show(item)}`);
      return;
    }
    // UDP listeners are read by validateQuicListeners.
    if (isQuic(item)) return;
    if (item.protocol !== undefined && item.protocol !== "tcp")
      problems.push(`${where}.protocol: ${show(item.protocol)} must be "tcp" (the default) or "quic"`);
    checkKeys(item, LISTENER_KEYS, `${where}.`, problems);
    const { addr, bind } = readAddr(item, where, i, seenAddr, problems);
    const maxConnections = readMax(item, where, defaultOf("listeners.max_connections"), problems);
    const maxConnectionLifetimeMs =
      item.max_connection_lifetime === undefined
        ? defaultOf("listeners.max_connection_lifetime")
        : ((typed("duration", item.max_connection_lifetime, `${where}.max_connection_lifetime`, problems) as
            | number
            | undefined) ?? 0);
    let defaultBackend: string | null = null;
    if (item.default_backend !== undefined) {
      const db = typed("string", item.default_backend, `${where}.default_backend`, problems) as string | undefined;
      if (db !== undefined && db !== "") {
        const hp = parseHostPort(db, { allowEmptyHost: false });
        if (!hp.ok) problems.push(`${where}.default_backend: ${show(db)}: ${hp.error}`);
        defaultBackend = db;
      }
    }
    const proxyProtocol =
      item.proxy_protocol === undefined
        ? false
        : typed("bool", item.proxy_protocol, `${where}.proxy_protocol`, problems) === true;
    const trustedProxies: string[] = [];
    if (item.trusted_proxies !== undefined) {
      const list = typed("strings", item.trusted_proxies, `${where}.trusted_proxies`, problems) as string[] | undefined;
      if (list !== undefined && !proxyProtocol) {
        problems.push(
          `${where}.trusted_proxies: only meaningful with proxy_protocol = true (remove it, or turn PROXY protocol on)`,
        );
      }
      (list ?? []).forEach((t, k) => {
        const r = parseAddressOrCidr(t);
        if (r.ok) trustedProxies.push(r.value);
        else problems.push(`${where}.trusted_proxies[${k}]: ${r.error}`);
      });
    }
    if (proxyProtocol && item.trusted_proxies === undefined) {
      problems.push(
        `${where}.trusted_proxies: required when proxy_protocol = true: the addresses or CIDR blocks of the load balancers allowed to send PROXY headers (e.g. ["10.0.0.0/8"])`,
      );
    } else if (
      proxyProtocol &&
      trustedProxies.length === 0 &&
      Array.isArray(item.trusted_proxies) &&
      item.trusted_proxies.length === 0
    ) {
      problems.push(`${where}.trusted_proxies: must not be empty when proxy_protocol = true`);
    }
    const defaultSend = sendProxy(
      item.default_backend_send_proxy_protocol,
      `${where}.default_backend_send_proxy_protocol`,
      problems,
    );
    if (defaultSend !== "off" && defaultBackend === null)
      problems.push(`${where}.default_backend_send_proxy_protocol: set without a default_backend`);
    let name = addr ?? "";
    if (item.name !== undefined) {
      const n = typed("string", item.name, `${where}.name`, problems) as string | undefined;
      if (n !== undefined && !NAME.test(n)) problems.push(`${where}.name: ${show(n)} ${NAME_RULE}`);
      else if (n !== undefined) name = n;
    }
    const prevName = seenName.get(name);
    if (prevName !== undefined)
      problems.push(`${where}.name: ${show(name)} is already the name of listeners[${prevName}]`);
    seenName.set(name, i);
    out.push({
      protocol: "tcp",
      addr: addr ?? "",
      name,
      bind,
      index: out.length,
      maxConnections,
      maxConnectionLifetimeMs,
      defaultBackend,
      defaultBackendSendProxyProtocol: defaultSend,
      proxyProtocol,
      trustedProxies,
      allowDestinations: destinationList(item, "allow_destinations", where, problems),
      denyDestinations: destinationList(item, "deny_destinations", where, problems),
      routes: readRoutes(item.routes, where, problems),
    });
  });
  return out;
}

/**
 * `send_proxy_protocol`: "v1", "v2", or false (off); true means "v2", the
 * boolean form of upstream mc-proxy's config.
 */
export function sendProxy(v: unknown, key: string, problems: string[]): SendProxy {
  if (v === undefined || v === false) return "off";
  if (v === true || v === "v2") return "v2";
  if (v === "v1") return "v1";
  problems.push(`${key}: ${show(v)} must be "v1", "v2" or false (true means "v2")`);
  return "off";
}

/**
 * The `protocol = "quic"` listeners: UDP on their address (usually the port
 * number of a TCP listener), routing QUIC by the name in its Initial
 * packets. One whose name is a TCP listener's (by default both are the
 * addr: `:443` UDP beside `:443` TCP) uses that listener's routes, as in
 * 0.2.0; any other has routes of its own, stored by its name.
 */
export function validateQuicListeners<R>(
  v: unknown,
  tcp: readonly TcpListenerConfig<R>[],
  problems: string[],
  readRoutes: RouteReader<R>,
): QuicListenerConfig<R>[] {
  if (!Array.isArray(v)) return [];
  const out: QuicListenerConfig<R>[] = [];
  const seen = new Map<string, [number, string]>();
  const owners = new Map<string, number>();
  v.forEach((item, i) => {
    if (!isQuic(item)) return;
    const t = item as Table;
    const where = `listeners[${i}]`;
    for (const k of Object.keys(t))
      if (!(k in QUIC_KEYS))
        problems.push(`${where}.${k}: not for a quic listener (it takes addr, name, max_connections and routes)`);
    const { addr, bind } = readAddr(t, where, i, seen, problems);
    let name = addr ?? "";
    if (t.name !== undefined) {
      const n = typed("string", t.name, `${where}.name`, problems) as string | undefined;
      if (n !== undefined && !NAME.test(n)) problems.push(`${where}.name: ${show(n)} ${NAME_RULE}`);
      else if (n !== undefined) name = n;
    }
    const shared = tcp.findIndex((l) => l.name === name);
    const routesFrom = shared < 0 ? null : shared;
    if (routesFrom !== null && t.routes !== undefined)
      problems.push(
        `${where}.routes: this quic listener uses the routes of the TCP listener named ${show(name)}; give it a name of its own to give it routes of its own`,
      );
    if (routesFrom === null) {
      const prev = owners.get(name);
      if (prev !== undefined) problems.push(`${where}.name: ${show(name)} is already the name of listeners[${prev}]`);
      owners.set(name, i);
    }
    const maxConnections = readMax(t, where, QUIC_DEFAULT_MAX_CONNECTIONS, problems);
    const routes = routesFrom === null ? readRoutes(t.routes, where, problems) : [];
    out.push({
      protocol: "quic",
      addr: addr ?? "",
      name,
      bind,
      index: tcp.length + out.length,
      maxConnections,
      routesFrom,
      routes,
    });
  });
  return out;
}

/**
 * The listeners with routes of their own, each stored and changed by its
 * name: every TCP listener, and the QUIC listeners that use no TCP
 * listener's routes.
 */
export function routeOwners<R>(cfg: Pick<Config<R>, "listeners" | "quicListeners">): ListenerConfig<R>[] {
  return [...cfg.listeners, ...cfg.quicListeners.filter((q) => q.routesFrom === null)];
}

/** A listener's max_connections: as written (0 = unlimited, config/limits.ts), or `unset`. */
function readMax(item: Table, where: string, unset: number, problems: string[]): number {
  if (item.max_connections === undefined) return unset;
  const n = (typed("int", item.max_connections, `${where}.max_connections`, problems) as number | undefined) ?? unset;
  const e =
    n < 0
      ? `${where}.max_connections: ${n} is negative (0 means unlimited)`
      : maxConnectionsError(n, `${where}.max_connections`);
  if (e !== null) problems.push(e);
  return n;
}

/**
 * A listener's addr: required, a host:port, and not the same endpoint as an
 * earlier listener of the same protocol (`seen`: endpoint → index), however
 * written (":443", "[::]:443", "0.0.0.0:443").
 */
function readAddr(
  item: Table,
  where: string,
  i: number,
  seen: Map<string, [number, string]>,
  problems: string[],
): { addr: string | undefined; bind: HostPort } {
  const addr = typed("string", item.addr ?? "", `${where}.addr`, problems) as string | undefined;
  let bind: HostPort = { host: "", port: 0 };
  if (addr === undefined || addr === "") {
    problems.push(`${where}.addr: required (e.g. ":443" or "127.0.0.1:8443")`);
    return { addr, bind };
  }
  const hp = parseHostPort(addr, { allowEmptyHost: true });
  if (!hp.ok) {
    problems.push(`${where}.addr: ${show(addr)}: ${hp.error}`);
    return { addr, bind };
  }
  bind = hp.value;
  const key = endpointKey(bind);
  const prev = seen.get(key);
  if (prev !== undefined)
    problems.push(`${where}.addr: ${show(addr)} is the same endpoint as listeners[${prev[0]}].addr ${show(prev[1])}`);
  else seen.set(key, [i, addr]);
  return { addr, bind };
}
