// The PROXY header mc-proxy sends to a backend before the replayed bytes
// (haproxy doc/proxy-protocol.txt): v1 text, or v2 binary with
// PP2_TYPE_AUTHORITY (the SNI, when there is one), PP2_TYPE_UNIQUE_ID (the
// access log's `id`) and PP2_TYPE_CRC32C.

import CRC32C from "crc-32/crc32c";
import ipaddr from "ipaddr.js";
import { ipToBytes } from "../net/ip";
import type { ProxyAddress } from "./proxy_header";
import * as PP from "./proxy_header";

export type SendVersion = "v1" | "v2";

export interface Outgoing {
  source: ProxyAddress;
  destination: ProxyAddress;
  /** The SNI; no AUTHORITY TLV when null. */
  authority: string | null;
  /** ASCII, at most 128 bytes. */
  uniqueId: string;
}

/**
 * When the two addresses are of different families, both go as IPv6 with the
 * IPv4 one mapped (`::ffff:a.b.c.d`), since a header has one family.
 */
function addressBytes(o: Outgoing): { v6: boolean; src: number[]; dst: number[] } {
  const src = ipToBytes(o.source.ip);
  const dst = ipToBytes(o.destination.ip);
  if (src.length === dst.length) return { v6: src.length === 16, src, dst };
  const mapped = (b: number[]) => (b.length === 4 ? [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...b] : b);
  return { v6: true, src: mapped(src), dst: mapped(dst) };
}

function text(b: number[]): string {
  if (b.length === 4) return b.join(".");
  if (b.slice(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff)
    return `::ffff:${b.slice(12).join(".")}`;
  return (ipaddr.fromByteArray(b) as ipaddr.IPv6).toRFC5952String();
}

/** §2.1: "PROXY TCP4|TCP6 src dst sport dport\r\n". */
export function proxyV1(o: Outgoing): Uint8Array {
  const { v6, src, dst } = addressBytes(o);
  return new TextEncoder().encode(
    `PROXY ${v6 ? "TCP6" : "TCP4"} ${text(src)} ${text(dst)} ${o.source.port} ${o.destination.port}\r\n`,
  );
}

/** §2.2: signature, PROXY over STREAM, the address block, then AUTHORITY, UNIQUE_ID and CRC32C TLVs. */
export function proxyV2(o: Outgoing): Uint8Array {
  const { v6, src, dst } = addressBytes(o);
  const enc = new TextEncoder();
  const authority = o.authority === null ? null : enc.encode(o.authority);
  const uniqueId = enc.encode(o.uniqueId).subarray(0, PP.UNIQUE_ID_MAX);
  const addrLen = v6 ? 36 : 12;
  const tlvLen = (authority === null ? 0 : 3 + authority.length) + 3 + uniqueId.length + 3 + 4;
  const out = new Uint8Array(PP.V2_FIXED_LENGTH + addrLen + tlvLen);
  out.set(PP.V2_SIGNATURE, 0);
  out[12] = (PP.V2_VERSION << 4) | PP.V2_CMD_PROXY;
  out[13] = ((v6 ? PP.AF_INET6 : PP.AF_INET) << 4) | PP.PROTO_STREAM;
  const bodyLen = addrLen + tlvLen;
  out[14] = bodyLen >> 8;
  out[15] = bodyLen & 0xff;
  let at = PP.V2_FIXED_LENGTH;
  out.set(src, at);
  out.set(dst, at + src.length);
  at += 2 * src.length;
  out[at++] = o.source.port >> 8;
  out[at++] = o.source.port & 0xff;
  out[at++] = o.destination.port >> 8;
  out[at++] = o.destination.port & 0xff;
  const tlv = (type: number, value: Uint8Array) => {
    out[at++] = type;
    out[at++] = value.length >> 8;
    out[at++] = value.length & 0xff;
    out.set(value, at);
    at += value.length;
  };
  if (authority !== null) tlv(PP.PP2_TYPE_AUTHORITY, authority);
  tlv(PP.PP2_TYPE_UNIQUE_ID, uniqueId);
  // §2.2.3: the CRC32c of the whole header, computed with its own field zero.
  tlv(PP.PP2_TYPE_CRC32C, new Uint8Array(4));
  const crc = CRC32C.buf(out) >>> 0;
  out[at - 4] = crc >>> 24;
  out[at - 3] = (crc >>> 16) & 0xff;
  out[at - 2] = (crc >>> 8) & 0xff;
  out[at - 1] = crc & 0xff;
  return out;
}

/**
 * The header for one proxied connection: `source` the client, `destination`
 * what it dialled; `authority` the SNI (no TLV when null); `uniqueId` the
 * access log's id.
 */
export function headerFor(
  version: SendVersion,
  source: ProxyAddress,
  destination: ProxyAddress,
  authority: string | null,
  uniqueId: string,
): Uint8Array {
  const o: Outgoing = { source, destination, authority, uniqueId };
  return version === "v1" ? proxyV1(o) : proxyV2(o);
}
