// host:port text — listener, backend, admin and metrics addresses: the one
// validating parser, the one fast splitter for addresses already validated,
// the one formatter, and the one bind rule ("" binds every address).

import { isIP } from "node:net";
import { type Parsed, fail, ok } from "../config/parsed";
import { normaliseHostName } from "../sni/host_name";

export interface HostPort {
  /** IP literal or DNS name; "" means every address (listeners only). */
  host: string;
  port: number;
}

/**
 * Parse "host:port", "[v6]:port" or ":port": the address, or a problem not
 * naming the key (the caller does).
 */
export function parseHostPort(text: string, opts: { allowEmptyHost: boolean }): Parsed<HostPort> {
  let host: string;
  let portText: string;
  if (text.startsWith("[")) {
    const close = text.indexOf("]");
    if (close < 0 || text[close + 1] !== ":") return fail("expected [IPv6]:port");
    host = text.slice(1, close);
    portText = text.slice(close + 2);
    if (isIP(host) !== 6) return fail(`"${host}" is not an IPv6 address`);
  } else {
    const colon = text.lastIndexOf(":");
    if (colon < 0) return fail("expected host:port");
    host = text.slice(0, colon);
    portText = text.slice(colon + 1);
    if (host.includes(":")) return fail("an IPv6 address must be written in brackets, as [::1]:443");
    if (host === "") {
      if (!opts.allowEmptyHost) return fail("the host is missing");
    } else if (isIP(host) === 0 && normaliseHostName(host) === null) {
      return fail(`"${host}" is not a valid host name or IP address`);
    }
  }
  if (!/^\d{1,5}$/.test(portText)) return fail(`port "${portText}" is not a number`);
  const port = Number(portText);
  // A port is 16 bits, and 0 is no port to connect to or to name (RFC 793 §3.1).
  if (port < 1 || port > 65535) return fail(`port ${port} is out of range 1-65535`);
  return ok({ host, port });
}

/** Split an address already validated by parseHostPort: the host without brackets, and the port. */
export function splitHostPort(text: string): HostPort {
  const colon = text.lastIndexOf(":");
  let host = text.slice(0, colon);
  if (host.startsWith("[")) host = host.slice(1, -1);
  return { host, port: Number(text.slice(colon + 1)) };
}

/** "ip:port", or "[v6]:port"; "" for no address. */
export function formatHostPort(ip: string, port: number): string {
  return ip === "" ? "" : ip.includes(":") ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** The host to bind: "" (":443") means every address, IPv6 and IPv4 alike (a dual-stack "::" socket). */
export function bindHost(host: string): string {
  return host === "" ? "::" : host;
}

/**
 * Two listener addresses name the same endpoint however written: ":443",
 * "[::]:443" and "0.0.0.0:443" all bind the wildcard (a "::" socket is
 * dual-stack and takes IPv4 too), and IPv6 literals compare in canonical
 * form. With SO_REUSEPORT two such listeners would both bind and the kernel
 * would split connections between their route tables.
 */
export function endpointKey(hp: HostPort): string {
  let host = hp.host.toLowerCase();
  if (host.includes(":")) {
    // Canonical IPv6 text (RFC 5952) via the URL parser: "::0" is "::".
    try {
      host = new URL(`http://[${host}]/`).hostname.slice(1, -1);
    } catch {}
  }
  if (host === "" || host === "::" || host === "0.0.0.0") host = "*";
  return `${host}|${hp.port}`;
}
