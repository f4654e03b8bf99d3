// Client Initial packets made here, for the QUIC reader's tests: frames,
// protected as RFC 9001 §5 says (the inverse of src/quic/packet.ts), so
// split, coalesced, reordered and repeated hellos can be built at will.
import { createCipheriv } from "node:crypto";
import { QUIC_V2, clientInitialKeys } from "../../src/quic/initial_keys";

/** A variable-length integer (RFC 9000 §16), 1, 2 or 4 bytes. */
export function varintBytes(v: number): number[] {
  if (v < 64) return [v];
  if (v < 16384) return [0x40 | (v >> 8), v & 0xff];
  return [0x80 | (v >>> 24), (v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff];
}

/** A CRYPTO frame carrying `data` at `offset`. */
export function cryptoFrame(offset: number, data: Uint8Array): Uint8Array {
  return Uint8Array.from([0x06, ...varintBytes(offset), ...varintBytes(data.length), ...data]);
}

/** A protected client Initial: header fields, packet number (4 bytes), frames padded to `payloadSize`. */
export function sealInitial(opts: {
  version?: number;
  dcid: Uint8Array;
  scid?: Uint8Array;
  pn: number;
  frames: Uint8Array;
  payloadSize?: number;
}): Uint8Array {
  const version = opts.version ?? 1;
  const keys = clientInitialKeys(version, opts.dcid)!;
  const payload = new Uint8Array(Math.max(opts.payloadSize ?? 0, opts.frames.length, 20));
  payload.set(opts.frames);
  const scid = opts.scid ?? new Uint8Array(0);
  const typeBits = version === QUIC_V2 ? 1 : 0;
  const length = 4 + payload.length + 16;
  const header = Uint8Array.from([
    0xc0 | (typeBits << 4) | 0x03,
    version >>> 24,
    (version >> 16) & 0xff,
    (version >> 8) & 0xff,
    version & 0xff,
    opts.dcid.length,
    ...opts.dcid,
    scid.length,
    ...scid,
    0, // token length
    ...[0x40 | (length >> 8), length & 0xff],
    (opts.pn >>> 24) & 0xff,
    (opts.pn >> 16) & 0xff,
    (opts.pn >> 8) & 0xff,
    opts.pn & 0xff,
  ]);
  const nonce = Buffer.from(keys.iv);
  for (let i = 0; i < 4; i++) nonce[8 + i]! ^= header[header.length - 4 + i]!;
  const gcm = createCipheriv("aes-128-gcm", keys.key, nonce);
  gcm.setAAD(header);
  const sealed = Buffer.concat([gcm.update(payload), gcm.final(), gcm.getAuthTag()]);
  const pnOffset = header.length - 4;
  const mask = createCipheriv("aes-128-ecb", keys.hp, null).update(sealed.subarray(0, 16));
  const out = new Uint8Array(header.length + sealed.length);
  out.set(header);
  out.set(sealed, header.length);
  out[0]! ^= mask[0]! & 0x0f;
  for (let i = 0; i < 4; i++) out[pnOffset + i]! ^= mask[1 + i]!;
  return out;
}

/** Pad a datagram to `size` bytes (zeros after the last packet: RFC 9000 §14.1 allows it). */
export function padDatagram(d: Uint8Array, size = 1200): Uint8Array {
  if (d.length >= size) return d;
  const out = new Uint8Array(size);
  out.set(d);
  return out;
}
