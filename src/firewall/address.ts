// Firewall rule values: the IP, CIDR and country rule parsers of the config,
// the admin API and etcd, trusted-proxy entries, and the rate limiter's IPv6
// network key. Addresses themselves are src/net/ip.ts's; the per-connection
// lookups use the precomputed tables in address_table.ts.

import ipaddr from "ipaddr.js";
import { type Parsed, fail, ok } from "../config/parsed";
import { canonical, parseIpText, parseIpv4Text } from "../net/ip";

export interface Cidr {
  address: string;
  prefix: number;
  family: "ipv4" | "ipv6";
}

/** Parse an IP rule value: the canonical address. */
export function parseIpRule(text: string): Parsed<string> {
  const ip = parseIpText(text);
  if (ip === null)
    return fail(
      `"${text}" is not an IPv4 or IPv6 address${text.includes("%") ? " (zone ids such as %eth0 are not allowed)" : ""}`,
    );
  return ok(ip);
}

/**
 * Parse "address/prefix". The address must be the network address (host bits
 * zero): "10.0.0.1/8" is refused rather than silently widened, since the
 * operator may have meant 10.0.0.1/32. The prefix is decimal without a
 * leading zero. An IPv4-mapped block (`::ffff:10.0.0.0/104`) is the IPv4
 * block it maps (`10.0.0.0/8`), because clients are matched in that form.
 */
export function parseCidrRule(text: string): Parsed<Cidr> {
  const slash = text.indexOf("/");
  if (slash < 0) return fail(`"${text}" is not a CIDR block (expected address/prefix)`);
  const addrText = text.slice(0, slash);
  const prefixText = text.slice(slash + 1);
  const v6 = addrText.includes(":");
  const addr = v6
    ? addrText.includes("%") || !ipaddr.IPv6.isValid(addrText)
      ? null
      : ipaddr.IPv6.parse(addrText)
    : parseIpv4Text(addrText) === null
      ? null
      : ipaddr.IPv4.parse(addrText);
  if (addr === null)
    return fail(
      `"${text}": "${addrText}" is not an IPv4 or IPv6 address${addrText.includes("%") ? " (zone ids are not allowed)" : ""}`,
    );
  const max = v6 ? 128 : 32;
  if (!/^(0|[1-9]\d{0,2})$/.test(prefixText) || Number(prefixText) > max) {
    return fail(`"${text}": prefix length must be 0-${max}, written without a leading zero`);
  }
  let prefix = Number(prefixText);
  let net: ipaddr.IPv4 | ipaddr.IPv6 = addr;
  if (v6 && (addr as ipaddr.IPv6).isIPv4MappedAddress()) {
    if (prefix < 96)
      return fail(`"${text}": an IPv4-mapped block needs a prefix of 96 or more (write the IPv4 block instead)`);
    net = (addr as ipaddr.IPv6).toIPv4Address();
    prefix -= 96;
  }
  const network = ipaddr.fromByteArray(maskBytes(net.toByteArray(), prefix));
  if (network.toString() !== net.toString()) {
    return fail(
      `"${text}" is not canonical: host bits are set (the network address is ${canonical(network)}/${prefix})`,
    );
  }
  return ok({ address: canonical(net), prefix, family: net.kind() === "ipv4" ? "ipv4" : "ipv6" });
}

/**
 * Parse a list entry that may be an address or a CIDR block (trusted_proxies,
 * a route's allow and deny): the canonical "address/prefix" (a bare address
 * gets /32 or /128).
 */
export function parseAddressOrCidr(text: string): Parsed<string> {
  if (text.includes("/")) {
    const c = parseCidrRule(text);
    return c.ok ? ok(`${c.value.address}/${c.value.prefix}`) : c;
  }
  const ip = parseIpRule(text);
  if (!ip.ok) return ip;
  return ok(`${ip.value}/${ip.value.includes(":") ? 128 : 32}`);
}

function maskBytes(bytes: number[], prefix: number): number[] {
  return bytes.map((b, i) => {
    const bits = Math.max(0, Math.min(8, prefix - i * 8));
    return b & ((0xff << (8 - bits)) & 0xff);
  });
}

export function parseCountryRule(text: string): Parsed<string> {
  if (!/^[A-Z]{2}$/.test(text))
    return fail(`"${text}" is not an ISO 3166-1 alpha-2 country code (two upper-case letters, e.g. "KP")`);
  return ok(text);
}

/**
 * The rate limiter's key for an IPv6 client: its /prefix network, as hex.
 * One customer or cloud instance gets a whole /64 (2^64 addresses), so
 * counting per address would never limit it. `ip` is a normalised
 * IPv6 address; an unparsable one is its own key.
 */
export function ipv6PrefixKey(ip: string, prefix: number): string {
  let bytes: number[];
  try {
    bytes = ipaddr.IPv6.parse(ip).toByteArray();
  } catch {
    return ip;
  }
  let key = "";
  for (let bit = 0; bit < prefix; bit += 8) {
    const keep = Math.min(8, prefix - bit);
    const b = bytes[bit >> 3]! & ((0xff << (8 - keep)) & 0xff);
    key += (b < 16 ? "0" : "") + b.toString(16);
  }
  return `${key}/${prefix}`;
}
