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
 * RFC 4193 unique local). IPv4-mapped IPv6 addresses are checked as the IPv4
 * address they map (net/ip.ts canonical), NAT64's well-known prefix
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
  "::/128",
  "::1/128",
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

  constructor(readonly spec: GuardSpec) {
    this.allow = spec.allow.length === 0 ? null : new AddressTable(spec.allow);
    this.deny = spec.deny.length === 0 ? null : new AddressTable(spec.deny);
    for (const o of spec.own) {
      const ip = guardedForm(o.ip);
      if (ip === null) continue;
      if (ip === "0.0.0.0" || ip === "::") {
        this.own.add(`${ip} ${o.port}`);
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
    if (this.allow?.has(g)) return true;
    return !BUILT_IN.has(g);
  }
}
