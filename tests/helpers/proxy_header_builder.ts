// Builds PROXY v2 headers byte by byte for tests, including wrong ones
// (haproxy doc/proxy-protocol.txt §2.2), independently of the writer under test.
import CRC32C from "crc-32/crc32c";
import ipaddr from "ipaddr.js";

const SIG = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];
const FAMILY = { unspec: 0x00, inet: 0x11, inet6: 0x21, unix: 0x31 } as const;
const BLOCK = { unspec: 0, inet: 12, inet6: 36, unix: 216 } as const;

export interface V2Options {
  family: keyof typeof FAMILY;
  command?: "proxy" | "local";
  /** Overrides: the raw command nibble, version nibble, family byte, declared length. */
  commandNibble?: number;
  version?: number;
  familyByte?: number;
  lengthOverride?: number;
  source?: [string, number];
  destination?: [string, number];
  tlvs?: [number, Uint8Array][];
  /** Append a correct CRC32C TLV last. */
  crc?: boolean;
  /** Raw bytes appended after the TLVs (counted in the length). */
  rawTail?: Uint8Array;
}

export function v2Header(o: V2Options): Uint8Array {
  const addr: number[] = new Array(BLOCK[o.family]).fill(0);
  if ((o.family === "inet" || o.family === "inet6") && o.source && o.destination) {
    const b = (ip: string) => {
      const a = ipaddr.parse(ip);
      return o.family === "inet6" && a.kind() === "ipv4"
        ? (a as ipaddr.IPv4).toIPv4MappedAddress().toByteArray()
        : a.toByteArray();
    };
    const s = b(o.source[0]);
    const d = b(o.destination[0]);
    addr.splice(
      0,
      addr.length,
      ...s,
      ...d,
      o.source[1] >> 8,
      o.source[1] & 0xff,
      o.destination[1] >> 8,
      o.destination[1] & 0xff,
    );
  }
  const tlvBytes: number[] = [];
  for (const [t, v] of o.tlvs ?? []) tlvBytes.push(t, v.length >> 8, v.length & 0xff, ...v);
  const tail = [...(o.rawTail ?? [])];
  const crcLen = o.crc ? 7 : 0;
  const bodyLen = addr.length + tlvBytes.length + tail.length + crcLen;
  const declared = o.lengthOverride ?? bodyLen;
  const cmd = o.commandNibble ?? (o.command === "local" ? 0 : 1);
  const out = new Uint8Array(16 + Math.max(declared, bodyLen));
  out.set(SIG, 0);
  out[12] = ((o.version ?? 2) << 4) | cmd;
  out[13] = o.familyByte ?? FAMILY[o.family];
  out[14] = declared >> 8;
  out[15] = declared & 0xff;
  out.set([...addr, ...tlvBytes, ...tail], 16);
  if (o.crc) {
    const at = 16 + addr.length + tlvBytes.length + tail.length;
    out.set([0x03, 0, 4, 0, 0, 0, 0], at);
    const c = CRC32C.buf(out.subarray(0, 16 + bodyLen)) >>> 0;
    out.set([c >>> 24, (c >>> 16) & 0xff, (c >>> 8) & 0xff, c & 0xff], at + 3);
  }
  return out.subarray(0, 16 + (o.lengthOverride === undefined ? bodyLen : Math.max(declared, bodyLen)));
}
