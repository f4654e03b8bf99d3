// The [[listeners]] tables: where each binds (one endpoint once, however
// written), its name, limits, PROXY protocol settings and default backend;
// its [[listeners.routes]] are read by the RouteReader the loader is given
// (routing/route_config.ts).

import { parseAddressOrCidr } from "../firewall/address";
import { type HostPort, endpointKey, parseHostPort } from "../net/host_port";
import { maxConnectionsError } from "./ranges";
import { type Table, checkKeys, isTable, show, typed } from "./toml";
import type { ListenerConfig, QuicListenerConfig, RouteReader, SendProxy } from "./types";

const LISTENER_KEYS: Record<string, unknown> = {
  addr: "string",
  name: "string",
  max_connections: "int",
  default_backend: "string",
  default_backend_send_proxy_protocol: "send_proxy",
  proxy_protocol: "bool",
  trusted_proxies: "strings",
  routes: "routes",
  protocol: "string",
};

/** What a `protocol = "quic"` listener may set: it routes with the TCP listener of its name. */
const QUIC_KEYS: Record<string, unknown> = { addr: "string", name: "string", protocol: "string", max_connections: "int" };

function isQuic(item: unknown): boolean {
  return isTable(item) && item.protocol === "quic";
}
export function validateListeners<R>(v: unknown, problems: string[], readRoutes: RouteReader<R>): ListenerConfig<R>[] {
  if (v === undefined) {
    problems.push(`listeners: at least one [[listeners]] table is required`);
    return [];
  }
  if (!Array.isArray(v)) {
    problems.push(`listeners: expected [[listeners]] tables, got ${show(v)}`);
    return [];
  }
  if (v.length === 0) problems.push(`listeners: at least one [[listeners]] table is required`);
  const out: ListenerConfig<R>[] = [];
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
    if (item.protocol !== undefined && item.protocol !== "tcp") problems.push(`${where}.protocol: ${show(item.protocol)} must be "tcp" (the default) or "quic"`);
    checkKeys(item, LISTENER_KEYS, `${where}.`, problems);
    const { addr, bind } = readAddr(item, where, i, seenAddr, problems);
    const maxConnections = item.max_connections === undefined ? 0 : ((typed("int", item.max_connections, `${where}.max_connections`, problems) as number | undefined) ?? 0);
    if (maxConnections < 0) problems.push(`${where}.max_connections: ${maxConnections} is negative (0 means unlimited)`);
    else {
      const e = maxConnectionsError(maxConnections, `${where}.max_connections`);
      if (e !== null) problems.push(e);
    }
    let defaultBackend: string | null = null;
    if (item.default_backend !== undefined) {
      const db = typed("string", item.default_backend, `${where}.default_backend`, problems) as string | undefined;
      if (db !== undefined && db !== "") {
        const hp = parseHostPort(db, { allowEmptyHost: false });
        if (typeof hp === "string") problems.push(`${where}.default_backend: ${show(db)}: ${hp}`);
        defaultBackend = db;
      }
    }
    const proxyProtocol = item.proxy_protocol === undefined ? false : typed("bool", item.proxy_protocol, `${where}.proxy_protocol`, problems) === true;
    const trustedProxies: string[] = [];
    if (item.trusted_proxies !== undefined) {
      const list = typed("strings", item.trusted_proxies, `${where}.trusted_proxies`, problems) as string[] | undefined;
      if (list !== undefined && !proxyProtocol) {
        problems.push(`${where}.trusted_proxies: only meaningful with proxy_protocol = true (remove it, or turn PROXY protocol on)`);
      }
      (list ?? []).forEach((t, k) => {
        const r = parseAddressOrCidr(t);
        if (typeof r === "string") trustedProxies.push(r);
        else problems.push(`${where}.trusted_proxies[${k}]: ${r.error}`);
      });
    }
    if (proxyProtocol && item.trusted_proxies === undefined) {
      problems.push(`${where}.trusted_proxies: required when proxy_protocol = true: the addresses or CIDR blocks of the load balancers allowed to send PROXY headers (e.g. ["10.0.0.0/8"])`);
    } else if (proxyProtocol && trustedProxies.length === 0 && Array.isArray(item.trusted_proxies) && item.trusted_proxies.length === 0) {
      problems.push(`${where}.trusted_proxies: must not be empty when proxy_protocol = true`);
    }
    const defaultSend = sendProxy(item.default_backend_send_proxy_protocol, `${where}.default_backend_send_proxy_protocol`, problems);
    if (defaultSend !== "off" && defaultBackend === null) problems.push(`${where}.default_backend_send_proxy_protocol: set without a default_backend`);
    let name = addr ?? "";
    if (item.name !== undefined) {
      const n = typed("string", item.name, `${where}.name`, problems) as string | undefined;
      if (n !== undefined && !/^[A-Za-z0-9][A-Za-z0-9._:[\]-]{0,99}$/.test(n))
        problems.push(`${where}.name: ${show(n)} must be 1-100 characters of A-Z a-z 0-9 . _ : - [ ] (starting with a letter or digit)`);
      else if (n !== undefined) name = n;
    }
    const prevName = seenName.get(name);
    if (prevName !== undefined) problems.push(`${where}.name: ${show(name)} is already the name of listeners[${prevName}]`);
    seenName.set(name, i);
    out.push({
      addr: addr ?? "",
      name,
      bind,
      maxConnections,
      defaultBackend,
      defaultBackendSendProxyProtocol: defaultSend,
      proxyProtocol,
      trustedProxies,
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
 * number of a TCP listener), routing QUIC by the name in its Initial packets
 * with the route table of the TCP listener whose name they share (by
 * default their addr: `:443` UDP beside `:443` TCP).
 */
export function validateQuicListeners(v: unknown, tcp: readonly ListenerConfig[], problems: string[]): QuicListenerConfig[] {
  if (!Array.isArray(v)) return [];
  const out: QuicListenerConfig[] = [];
  const seen = new Map<string, [number, string]>();
  v.forEach((item, i) => {
    if (!isQuic(item)) return;
    const t = item as Table;
    const where = `listeners[${i}]`;
    for (const k of Object.keys(t)) {
      if (!(k in QUIC_KEYS)) problems.push(`${where}.${k}: not for a quic listener (it routes with the TCP listener of its name; set routes there)`);
    }
    const { addr, bind } = readAddr(t, where, i, seen, problems);
    const name = t.name === undefined ? (addr ?? "") : ((typed("string", t.name, `${where}.name`, problems) as string | undefined) ?? "");
    const routesOf = tcp.findIndex((l) => l.name === name);
    if (routesOf < 0) problems.push(`${where}.name: ${show(name)} names no TCP listener: a quic listener routes with the TCP listener of the same name (${tcp.map((l) => show(l.name)).join(", ")})`);
    const maxFlows = t.max_connections === undefined ? 0 : ((typed("int", t.max_connections, `${where}.max_connections`, problems) as number | undefined) ?? 0);
    const e = maxFlows < 0 ? `${where}.max_connections: ${maxFlows} is negative (0 means the default cap)` : maxConnectionsError(maxFlows, `${where}.max_connections`);
    if (e !== null) problems.push(e);
    out.push({ addr: addr ?? "", name, bind, routesOf, maxFlows });
  });
  return out;
}

/**
 * A listener's addr: required, a host:port, and not the same endpoint as an
 * earlier listener of the same protocol (`seen`: endpoint → index), however
 * written (":443", "[::]:443", "0.0.0.0:443").
 */
function readAddr(item: Table, where: string, i: number, seen: Map<string, [number, string]>, problems: string[]): { addr: string | undefined; bind: HostPort } {
  const addr = typed("string", item.addr ?? "", `${where}.addr`, problems) as string | undefined;
  let bind: HostPort = { host: "", port: 0 };
  if (addr === undefined || addr === "") {
    problems.push(`${where}.addr: required (e.g. ":443" or "127.0.0.1:8443")`);
    return { addr, bind };
  }
  const hp = parseHostPort(addr, { allowEmptyHost: true });
  if (typeof hp === "string") {
    problems.push(`${where}.addr: ${show(addr)}: ${hp}`);
    return { addr, bind };
  }
  bind = hp;
  const key = endpointKey(hp);
  const prev = seen.get(key);
  if (prev !== undefined) problems.push(`${where}.addr: ${show(addr)} is the same endpoint as listeners[${prev[0]}].addr ${show(prev[1])}`);
  else seen.set(key, [i, addr]);
  return { addr, bind };
}
