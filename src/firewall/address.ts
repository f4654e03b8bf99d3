// IP address text: client address normalisation, the rule and
// trusted-proxy parsers of the config and the admin API, and the byte forms
// the PROXY protocol carries. Parsing is ipaddr.js's (the well-kept parser);
// the per-connection lookups use the precomputed tables in address_table.ts.
//
// Not ip-cidr (the design card's package): measured 4.0.2 rejects
// `64:ff9b::1.2.3.4/128` (NAT64 with an embedded IPv4 address, valid),
// accepts `10.0.0.0/08` (a prefix with a leading zero), and turns
// `::ffff:10.0.0.0/104` into an IPv4 range without saying so.

import ipaddr from "ipaddr.js";

const MAPPED_V4 = /^::ffff:(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})$/i;

/** An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is the IPv4 address it maps. */
export function normaliseIp(ip: string): string {
  // Cheap test first: only a "::ffff:" prefix can be a mapped address.
  if (ip.length > 7 && ip.charCodeAt(0) === 0x3a && ip.charCodeAt(1) === 0x3a) {
    const m = MAPPED_V4.exec(ip);
    if (m !== null) return m[1]!;
  }
  return ip;
}

/**
 * Strict dotted-quad IPv4: four decimal numbers 0–255 without leading zeros
 * (PROXY v1 §2.1 forbids them: they read as octal elsewhere). The text itself, or null.
 */
export function parseIpv4Text(text: string): string | null {
  return ipaddr.IPv4.isValidFourPartDecimal(text) && text.split(".").every((o) => o === "0" || !o.startsWith("0")) ? text : null;
}

/**
 * IPv6 text (with or without an embedded dotted quad), no zone id. Returns
 * the RFC 5952 form, or the IPv4 address for an IPv4-mapped one; null when
 * not IPv6.
 */
export function parseIpv6Text(text: string): string | null {
  if (text.includes("%") || !ipaddr.IPv6.isValid(text)) return null;
  return canonical(ipaddr.IPv6.parse(text));
}

/** Any address text → its canonical form (see parseIpv6Text); null when neither family. */
export function parseIpText(text: string): string | null {
  return text.includes(":") ? parseIpv6Text(text) : parseIpv4Text(text);
}

function canonical(a: ipaddr.IPv4 | ipaddr.IPv6): string {
  if (a.kind() === "ipv6") {
    const v6 = a as ipaddr.IPv6;
    return v6.isIPv4MappedAddress() ? v6.toIPv4Address().toString() : v6.toRFC5952String();
  }
  return a.toString();
}

/** 4 or 16 address bytes → canonical text (an IPv4-mapped IPv6 address becomes IPv4). */
export function ipFromBytes(bytes: Uint8Array): string {
  return canonical(ipaddr.fromByteArray(Array.from(bytes)));
}

/** Canonical address text → its bytes (4 for IPv4, 16 for IPv6). */
export function ipToBytes(ip: string): number[] {
  return ipaddr.parse(ip).toByteArray();
}

export interface Cidr {
  address: string;
  prefix: number;
  family: "ipv4" | "ipv6";
}

/** Parse an IP rule value; returns the canonical address or an error message. */
export function parseIpRule(text: string): string | { error: string } {
  const ip = parseIpText(text);
  if (ip === null) return { error: `"${text}" is not an IPv4 or IPv6 address${text.includes("%") ? " (zone ids such as %eth0 are not allowed)" : ""}` };
  return ip;
}

/**
 * Parse "address/prefix". The address must be the network address (host bits
 * zero): "10.0.0.1/8" is refused rather than silently widened, since the
 * operator may have meant 10.0.0.1/32. The prefix is decimal without a
 * leading zero. An IPv4-mapped block (`::ffff:10.0.0.0/104`) is the IPv4
 * block it maps (`10.0.0.0/8`), because clients are matched in that form.
 */
export function parseCidrRule(text: string): Cidr | { error: string } {
  const slash = text.indexOf("/");
  if (slash < 0) return { error: `"${text}" is not a CIDR block (expected address/prefix)` };
  const addrText = text.slice(0, slash);
  const prefixText = text.slice(slash + 1);
  const v6 = addrText.includes(":");
  const addr = v6 ? (addrText.includes("%") || !ipaddr.IPv6.isValid(addrText) ? null : ipaddr.IPv6.parse(addrText)) : parseIpv4Text(addrText) === null ? null : ipaddr.IPv4.parse(addrText);
  if (addr === null) return { error: `"${text}": "${addrText}" is not an IPv4 or IPv6 address${addrText.includes("%") ? " (zone ids are not allowed)" : ""}` };
  const max = v6 ? 128 : 32;
  if (!/^(0|[1-9]\d{0,2})$/.test(prefixText) || Number(prefixText) > max) {
    return { error: `"${text}": prefix length must be 0-${max}, written without a leading zero` };
  }
  let prefix = Number(prefixText);
  let net: ipaddr.IPv4 | ipaddr.IPv6 = addr;
  if (v6 && (addr as ipaddr.IPv6).isIPv4MappedAddress()) {
    if (prefix < 96) return { error: `"${text}": an IPv4-mapped block needs a prefix of 96 or more (write the IPv4 block instead)` };
    net = (addr as ipaddr.IPv6).toIPv4Address();
    prefix -= 96;
  }
  const network = ipaddr.fromByteArray(maskBytes(net.toByteArray(), prefix));
  if (network.toString() !== net.toString()) {
    return { error: `"${text}" is not canonical: host bits are set (the network address is ${canonical(network)}/${prefix})` };
  }
  return { address: canonical(net), prefix, family: net.kind() === "ipv4" ? "ipv4" : "ipv6" };
}

/**
 * Parse a list entry that may be an address or a CIDR block (trusted_proxies);
 * returns the canonical "address/prefix" (a bare address gets /32 or /128).
 */
export function parseAddressOrCidr(text: string): string | { error: string } {
  if (text.includes("/")) {
    const c = parseCidrRule(text);
    return "error" in c ? c : `${c.address}/${c.prefix}`;
  }
  const ip = parseIpRule(text);
  if (typeof ip !== "string") return ip;
  return `${ip}/${ip.includes(":") ? 128 : 32}`;
}

function maskBytes(bytes: number[], prefix: number): number[] {
  return bytes.map((b, i) => {
    const bits = Math.max(0, Math.min(8, prefix - i * 8));
    return b & ((0xff << (8 - bits)) & 0xff);
  });
}

export function parseCountryRule(text: string): string | { error: string } {
  if (!/^[A-Z]{2}$/.test(text)) return { error: `"${text}" is not an ISO 3166-1 alpha-2 country code (two upper-case letters, e.g. "KP")` };
  return text;
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
