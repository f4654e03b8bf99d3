// The frames of a decrypted client Initial (RFC 9000 §17.2.2: only PADDING,
// PING, ACK, CRYPTO and CONNECTION_CLOSE may appear) and the CRYPTO stream
// they carry, put back together by offset (§19.6): frames may come in any
// order, split across packets and datagrams, repeated or overlapping. The
// stream is bounded by `max` bytes; what is past it is refused.
import { varint } from "./packet";

export type FramesResult = "ok" | "connection_close" | "bad";

export class CryptoStream {
  /** Grown as data arrives (a hello is 0.3–2 KB; a pending flow should not cost `max` up front). */
  private data = new Uint8Array(0);
  /** Received [start, end) ranges, sorted and merged. */
  private ranges: [number, number][] = [];

  constructor(readonly max: number) {}

  /** Bytes received from offset 0 without a gap. */
  get contiguous(): number {
    const r = this.ranges[0];
    return r !== undefined && r[0] === 0 ? r[1] : 0;
  }

  /** The stream's bytes [0, n) (n ≤ contiguous). */
  prefix(n: number): Uint8Array {
    return this.data.subarray(0, n);
  }

  /** Add one CRYPTO frame's data; false when it reaches past `max`. */
  add(offset: number, bytes: Uint8Array): boolean {
    if (offset + bytes.length > this.max) return false;
    if (bytes.length === 0) return true;
    const need = offset + bytes.length;
    if (need > this.data.length) {
      const grown = new Uint8Array(Math.min(this.max, Math.max(need, this.data.length * 2, 2048)));
      grown.set(this.data);
      this.data = grown;
    }
    this.data.set(bytes, offset);
    const merged: [number, number][] = [];
    let s = offset;
    let e = offset + bytes.length;
    for (const [a, b] of this.ranges) {
      if (b < s || a > e) merged.push([a, b]);
      else {
        s = Math.min(s, a);
        e = Math.max(e, b);
      }
    }
    merged.push([s, e]);
    merged.sort((x, y) => x[0] - y[0]);
    this.ranges = merged;
    return true;
  }

  /** Read a decrypted Initial payload's frames into the stream. */
  addFrames(payload: Uint8Array): FramesResult {
    const end = payload.length;
    let p = 0;
    while (p < end) {
      const type = payload[p]!;
      p++;
      switch (type) {
        case 0x00: // PADDING
        case 0x01: // PING
          continue;
        case 0x02: // ACK
        case 0x03: {
          const fields = [varint(payload, p, end)];
          // largest, delay, range count, first range
          for (let i = 0; i < 3 && fields[i] !== null; i++) fields.push(varint(payload, fields[i]![1], end));
          if (fields.some((f) => f === null)) return "bad";
          p = fields[3]![1];
          const count = fields[2]![0];
          if (count > end) return "bad";
          for (let i = 0; i < count * 2 + (type === 0x03 ? 3 : 0); i++) {
            const v = varint(payload, p, end);
            if (v === null) return "bad";
            p = v[1];
          }
          continue;
        }
        case 0x06: {
          const o = varint(payload, p, end);
          if (o === null) return "bad";
          const l = varint(payload, o[1], end);
          if (l === null || l[1] + l[0] > end) return "bad";
          if (!this.add(o[0], payload.subarray(l[1], l[1] + l[0]))) return "bad";
          p = l[1] + l[0];
          continue;
        }
        case 0x1c:
          return "connection_close";
        default:
          // Any other frame in an Initial is a protocol violation (§12.4, Table 3).
          return "bad";
      }
    }
    return "ok";
  }
}
