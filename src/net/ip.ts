// IP address text and bytes: the one place addresses are parsed, made
// canonical and turned into the bytes the PROXY protocol carries. Parsing is
// ipaddr.js's (the well-kept parser).
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
  return ipaddr.IPv4.isValidFourPartDecimal(text) && text.split(".").every((o) => o === "0" || !o.startsWith("0"))
    ? text
    : null;
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

export function canonical(a: ipaddr.IPv4 | ipaddr.IPv6): string {
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

/**
 * A 32-bit hash of the client's network — its IPv4 /24 or IPv6 /48, the
 * usual smallest routed blocks — for counting distinct networks; 0 for text
 * that is not an address. FNV-1a over the network's text or bytes.
 */
export function networkHash(ip: string): number {
  let h = 0x811c9dc5;
  const dot = ip.lastIndexOf(".");
  if (dot > 0 && ip.indexOf(":") < 0) {
    for (let i = 0; i < dot; i++) h = Math.imul(h ^ ip.charCodeAt(i), 0x01000193);
    return h >>> 0;
  }
  let bytes: number[];
  try {
    bytes = ipaddr.IPv6.parse(ip).toByteArray();
  } catch {
    return 0;
  }
  for (let i = 0; i < 6; i++) h = Math.imul(h ^ bytes[i]!, 0x01000193);
  return h >>> 0;
}
