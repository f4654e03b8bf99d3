// One QUIC packet of a datagram, read far enough to route: long headers
// (RFC 9000 §17.2; v2 packet types: RFC 9369 §3.2) with their lengths, so
// coalesced packets (RFC 9000 §12.2) are walked one by one, and the client
// Initial opened: header protection removed (RFC 9001 §5.4) and the payload
// decrypted with AEAD_AES_128_GCM (§5.3). Never throws; never reads outside
// the datagram; never changes it (the datagram is forwarded as it came).
import { createCipheriv, createDecipheriv } from "node:crypto";
import { type InitialKeys, QUIC_V2, clientInitialKeys } from "./initial_keys";

export const MAX_CID = 20;

export type LongType = "initial" | "0rtt" | "handshake" | "retry";

export type Packet =
  /** A client Initial, decrypted: its frames, and the keys that opened it. */
  | {
      kind: "initial";
      version: number;
      dcid: Uint8Array;
      scid: Uint8Array;
      payload: Uint8Array;
      end: number;
      keys: InitialKeys;
    }
  /** Another long-header packet (kept and forwarded, not read). */
  | { kind: "long"; type: LongType; version: number; dcid: Uint8Array; scid: Uint8Array; end: number }
  /** A Version Negotiation packet (version 0). */
  | { kind: "version_negotiation"; end: number }
  /** A version whose packets this cannot read. */
  | { kind: "unknown_version"; version: number; dcid: Uint8Array; end: number }
  /** A short header (1-RTT): the rest of the datagram. */
  | { kind: "short"; end: number }
  | { kind: "bad"; reason: string };

/** A variable-length integer (RFC 9000 §16) at p: [value, next offset], or null past `end`. */
export function varint(b: Uint8Array, p: number, end: number): [number, number] | null {
  if (p >= end) return null;
  const first = b[p]!;
  const len = 1 << (first >> 6);
  if (p + len > end) return null;
  let v = first & 0x3f;
  for (let i = 1; i < len; i++) v = v * 256 + b[p + i]!;
  return [v, p + len];
}

function longType(version: number, bits: number): LongType {
  // v1: 0 Initial, 1 0-RTT, 2 Handshake, 3 Retry; v2 rotates them: 1, 2, 3, 0.
  const t = version === QUIC_V2 ? (bits + 3) & 3 : bits;
  return (["initial", "0rtt", "handshake", "retry"] as const)[t]!;
}

/** A long header's version-independent part (RFC 8999 §5.1): read without any key. */
export interface LongHeaderIds {
  version: number;
  dcid: Uint8Array;
  scid: Uint8Array;
  /** Where the version-specific part starts. */
  next: number;
}

/** The version and connection IDs of the long header at `off`, or why they cannot be read. */
export function longHeaderIds(d: Uint8Array, off: number): LongHeaderIds | { bad: string } {
  const end = d.length;
  if (off + 7 > end) return { bad: "truncated long header" };
  const version = ((d[off + 1]! << 24) | (d[off + 2]! << 16) | (d[off + 3]! << 8) | d[off + 4]!) >>> 0;
  let p = off + 5;
  const dcidLen = d[p++]!;
  if (dcidLen > MAX_CID && version !== 0) return { bad: "connection ID longer than 20 bytes" };
  if (p + dcidLen + 1 > end) return { bad: "truncated connection ID" };
  const dcid = d.subarray(p, p + dcidLen);
  p += dcidLen;
  const scidLen = d[p++]!;
  if (scidLen > MAX_CID && version !== 0) return { bad: "connection ID longer than 20 bytes" };
  if (p + scidLen > end) return { bad: "truncated connection ID" };
  return { version, dcid, scid: d.subarray(p, p + scidLen), next: p + scidLen };
}

/**
 * Read the packet at `off`. A client Initial is opened with `keys` when
 * given (the flow's, from its first Initial) or with keys derived from its
 * own Destination Connection ID.
 */
export function readPacket(d: Uint8Array, off: number, keys: InitialKeys | null = null): Packet {
  const end = d.length;
  if (off >= end) return { kind: "bad", reason: "empty" };
  const first = d[off]!;
  if ((first & 0x80) === 0)
    return (first & 0x40) === 0 ? { kind: "bad", reason: "fixed bit clear" } : { kind: "short", end };
  const ids = longHeaderIds(d, off);
  if ("bad" in ids) return { kind: "bad", reason: ids.bad };
  const { version, dcid, scid } = ids;
  let p = ids.next;
  if (version === 0) return { kind: "version_negotiation", end };
  if ((first & 0x40) === 0) return { kind: "bad", reason: "fixed bit clear" };
  if (version !== 1 && version !== QUIC_V2) return { kind: "unknown_version", version, dcid, end };
  const type = longType(version, (first >> 4) & 3);
  if (type === "retry") return { kind: "long", type, version, dcid, scid, end };
  if (type === "initial") {
    const t = varint(d, p, end);
    if (t === null || t[1] + t[0] > end) return { kind: "bad", reason: "truncated token" };
    p = t[1] + t[0];
  }
  const l = varint(d, p, end);
  if (l === null) return { kind: "bad", reason: "truncated length" };
  const pnOffset = l[1];
  const packetEnd = pnOffset + l[0];
  if (packetEnd > end) return { kind: "bad", reason: "length past the datagram" };
  if (type !== "initial") return { kind: "long", type, version, dcid, scid, end: packetEnd };
  const k = keys ?? clientInitialKeys(version, dcid)!;
  const payload = openInitial(d, off, pnOffset, packetEnd, k);
  if (payload === null) return { kind: "bad", reason: "Initial does not decrypt" };
  return { kind: "initial", version, dcid, scid, payload, end: packetEnd, keys: k };
}

/** Remove header protection and decrypt; null when the packet is too short or does not authenticate. */
function openInitial(
  d: Uint8Array,
  off: number,
  pnOffset: number,
  packetEnd: number,
  k: InitialKeys,
): Uint8Array | null {
  // The sample is the 16 bytes after a 4-byte packet number (RFC 9001 §5.4.2).
  if (pnOffset + 4 + 16 > packetEnd) return null;
  const ecb = createCipheriv("aes-128-ecb", k.hp, null);
  const mask = ecb.update(d.subarray(pnOffset + 4, pnOffset + 20));
  const first = d[off]! ^ (mask[0]! & 0x0f);
  const pnLen = (first & 3) + 1;
  if (pnOffset + pnLen + 16 > packetEnd) return null;
  // The header as it was before protection: the associated data (§5.3).
  const header = Buffer.from(d.subarray(off, pnOffset + pnLen));
  header[0] = first;
  const nonce = Buffer.from(k.iv);
  for (let i = 0; i < pnLen; i++) {
    const b = d[pnOffset + i]! ^ mask[1 + i]!;
    header[pnOffset - off + i] = b;
    // An Initial's packet numbers start at 0 (RFC 9000 §12.3): the truncated number is the full one.
    nonce[12 - pnLen + i]! ^= b;
  }
  try {
    const gcm = createDecipheriv("aes-128-gcm", k.key, nonce);
    gcm.setAAD(header);
    gcm.setAuthTag(d.subarray(packetEnd - 16, packetEnd));
    const out = gcm.update(d.subarray(pnOffset + pnLen, packetEnd - 16));
    gcm.final();
    return out;
  } catch {
    return null;
  }
}
