// The destination guard (docs/SECURITY.md "Destination guard"): whether a
// backend connection may go to an address a name resolved to. Pure and
// synchronous; the address checked is the address connected to
// (backend_dial.ts), never resolved again in between.
//
// Order: deny_destinations first (always wins); then, where the built-in
// refusals apply (a templated pool), the proxy's own addresses — listeners,
// admin API, metrics, dashboard (never allowed: a loop through itself, or a
// way in to its control surfaces), allow_destinations, and the built-in
// ranges below.

import { AddressTable } from "../firewall/address_table";
import { parseIpText } from "../net/ip";

/**
 * Refused by default: loopback, unspecified, link-local (cloud metadata at
 * 169.254.169.254), multicast, broadcast (RFC 6890 special-purpose
 * registry), and the private ranges (RFC 1918, RFC 6598 shared space,
 * RFC 4193 unique local), the IETF protocol assignments and benchmarking
 * blocks (192.0.0.0/24, 198.18.0.0/15), and the IPv6 forms that carry or
 * reach an IPv4 address or a retired scope: IPv4-compatible (::/96),
 * IPv4-translated (::ffff:0:0:0/96, RFC 2765), NAT64 local use
 * (64:ff9b:1::/48, RFC 8215), 6to4 (2002::/16, RFC 3056), Teredo
 * (2001::/32, RFC 4380), site-local (fec0::/10, RFC 3879) and discard-only
 * (100::/64, RFC 6666): on a host with a relay or translator they reach
 * what their IPv4 form would. IPv4-mapped IPv6 addresses are checked as the
 * IPv4 address they map (net/ip.ts canonical), NAT64's well-known prefix
 * (RFC 6052 §2.1) as the IPv4 address it embeds.
 */
export const DEFAULT_REFUSED: readonly string[] = [
  "0.0.0.0/8",
  "127.0.0.0/8",
  "169.254.0.0/16",
  "224.0.0.0/4",
  "240.0.0.0/4",
  "255.255.255.255/32",
  "10.0.0.0/8",
  "172.16.0.0/12",
  "192.168.0.0/16",
  "100.64.0.0/10",
  "192.0.0.0/24",
  "198.18.0.0/15",
  "::/96",
  "::1/128",
  "::ffff:0:0:0/96",
  "64:ff9b:1::/48",
  "2002::/16",
  "2001::/32",
  "fec0::/10",
  "100::/64",
  "fe80::/10",
  "ff00::/8",
  "fc00::/7",
];

/** An address the process serves on: ip and port; a wildcard ip (0.0.0.0, ::) stands for every local address. */
export interface OwnAddress {
  readonly ip: string;
  readonly port: number;
}

export interface GuardSpec {
  /** Canonical "address/prefix" entries (firewall/address.ts parseAddressOrCidr): the route's and the listener's. */
  readonly allow: readonly string[];
  readonly deny: readonly string[];
  /** The built-in refusals apply (templated pools); otherwise only the lists. */
  readonly defaults: boolean;
  /** The proxy's own addresses (backend_dial.ts ownAddresses; refused with the defaults). */
  readonly own: readonly OwnAddress[];
  /** This host's addresses, for a wildcard listener (os.networkInterfaces at build time). */
  readonly localIps: readonly string[];
}

const BUILT_IN = new AddressTable(DEFAULT_REFUSED);
/**
 * What a wildcard listener also answers on, beyond the interfaces' own
 * addresses: every loopback address (Linux routes all of 127.0.0.0/8 to
 * the host) and the unspecified address (a connect to 0.0.0.0 or :: reaches
 * the host itself).
 */
const HOST_ITSELF = new AddressTable(["127.0.0.0/8", "::1/128", "0.0.0.0/32", "::/128"]);
const NAT64 = /^64:ff9b::([0-9a-f]{1,4}):([0-9a-f]{1,4})$/;

/** The address a check is made on: canonical, IPv4-mapped and NAT64 forms as their IPv4 address; null when not an IP. */
export function guardedForm(ip: string): string | null {
  const c = parseIpText(ip);
  if (c === null) return null;
  const m = NAT64.exec(c);
  if (m === null) return c;
  const hi = Number.parseInt(m[1]!, 16);
  const lo = Number.parseInt(m[2]!, 16);
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
}

export class DestinationGuard {
  private readonly allow: AddressTable | null;
  private readonly deny: AddressTable | null;
  /** "ip port" of every own listening address, wildcards expanded. */
  private readonly own = new Set<string>();
  /** Ports a wildcard listener holds: on them every address of HOST_ITSELF is its own too. */
  private readonly wildcardPorts = new Set<number>();

  constructor(readonly spec: GuardSpec) {
    this.allow = spec.allow.length === 0 ? null : new AddressTable(spec.allow);
    this.deny = spec.deny.length === 0 ? null : new AddressTable(spec.deny);
    for (const o of spec.own) {
      const ip = guardedForm(o.ip);
      if (ip === null) continue;
      if (ip === "0.0.0.0" || ip === "::") {
        this.wildcardPorts.add(o.port);
        for (const l of spec.localIps) {
          const g = guardedForm(l);
          // "::" covers IPv4 too (a dual-stack socket); "0.0.0.0" only IPv4.
          if (g !== null && (ip === "::" || !g.includes(":"))) this.own.add(`${g} ${o.port}`);
        }
      } else this.own.add(`${ip} ${o.port}`);
    }
  }

  /** Whether the lists say anything: a guard that refuses nothing is skipped. */
  get active(): boolean {
    return this.spec.defaults || this.deny !== null;
  }

  /** Whether a connection to ip:port may be made. */
  permits(ip: string, port: number): boolean {
    const g = guardedForm(ip);
    if (g === null) return false;
    if (this.deny?.has(g)) return false;
    if (!this.spec.defaults) return true;
    if (this.own.has(`${g} ${port}`)) return false;
    if (this.wildcardPorts.has(port) && HOST_ITSELF.has(g)) return false;
    if (this.allow?.has(g)) return true;
    return !BUILT_IN.has(g);
  }
}
