// Client address normalisation and the firewall's rule parsers (SPEC §3 step 2).
import { isIP } from "node:net";
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

export interface Cidr {
  address: string;
  prefix: number;
  family: "ipv4" | "ipv6";
}

/** Parse an IP rule value; returns the normalised address or an error message. */
export function parseIpRule(text: string): string | { error: string } {
  if (isIP(text) === 0) return { error: `"${text}" is not an IPv4 or IPv6 address` };
  return normaliseIp(text.toLowerCase());
}

/**
 * Parse "address/prefix". The address must be the network address (host bits
 * zero): "10.0.0.1/8" is refused rather than silently widened, since the
 * operator may have meant 10.0.0.1/32.
 */
export function parseCidrRule(text: string): Cidr | { error: string } {
  const slash = text.indexOf("/");
  if (slash < 0) return { error: `"${text}" is not a CIDR block (expected address/prefix)` };
  const addr = normaliseIp(text.slice(0, slash).toLowerCase());
  const prefixText = text.slice(slash + 1);
  const fam = isIP(addr);
  if (fam === 0) return { error: `"${text}": "${addr}" is not an IPv4 or IPv6 address` };
  const max = fam === 4 ? 32 : 128;
  if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > max) {
    return { error: `"${text}": prefix length must be 0-${max}` };
  }
  const prefix = Number(prefixText);
  const bytes = fam === 4 ? ipv4Bytes(addr) : ipv6Bytes(addr);
  for (let bit = prefix; bit < max; bit++) {
    if ((bytes[bit >> 3]! >> (7 - (bit & 7))) & 1) {
      return { error: `"${text}" is not canonical: host bits are set (the network address is ${networkOf(bytes, prefix, fam)}/${prefix})` };
    }
  }
  return { address: addr, prefix, family: fam === 4 ? "ipv4" : "ipv6" };
}

function networkOf(bytes: Uint8Array, prefix: number, fam: number): string {
  const b = bytes.slice();
  for (let bit = prefix; bit < b.length * 8; bit++) b[bit >> 3]! &= ~(1 << (7 - (bit & 7)));
  if (fam === 4) return Array.from(b).join(".");
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((b[i]! << 8) | b[i + 1]!).toString(16));
  return groups.join(":").replace(/(^|:)0(:0)+(:|$)/, "::");
}

export function ipv4Bytes(addr: string): Uint8Array {
  return new Uint8Array(addr.split(".").map(Number));
}

export function ipv6Bytes(addr: string): Uint8Array {
  let text = addr;
  const out = new Uint8Array(16);
  // A trailing dotted quad (e.g. ::ffff:1.2.3.4 or 64:ff9b::1.2.3.4).
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  let tail: number[] = [];
  if (v4 !== null) {
    const q = ipv4Bytes(v4[1]!);
    tail = [(q[0]! << 8) | q[1]!, (q[2]! << 8) | q[3]!];
    text = text.slice(0, -v4[1]!.length) + "0:0";
  }
  const [head, rest] = text.split("::") as [string, string | undefined];
  const h = head === "" ? [] : head.split(":").map((g) => parseInt(g, 16));
  const r = rest === undefined || rest === "" ? [] : rest.split(":").map((g) => parseInt(g, 16));
  const groups = rest === undefined ? h : [...h, ...new Array<number>(8 - h.length - r.length).fill(0), ...r];
  if (tail.length === 2) {
    groups[6] = tail[0]!;
    groups[7] = tail[1]!;
  }
  for (let i = 0; i < 8; i++) {
    out[i * 2] = (groups[i]! >> 8) & 0xff;
    out[i * 2 + 1] = groups[i]! & 0xff;
  }
  return out;
}

export function parseCountryRule(text: string): string | { error: string } {
  if (!/^[A-Z]{2}$/.test(text)) return { error: `"${text}" is not an ISO 3166-1 alpha-2 country code (two upper-case letters, e.g. "KP")` };
  return text;
}

/**
 * The rate limiter's key for an IPv6 client: its /prefix network, as hex.
 * One customer or cloud instance gets a whole /64 (2^64 addresses), so
 * counting per address would never limit it (issue 7). `ip` is a normalised
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
