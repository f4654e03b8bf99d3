// The frames of a decrypted client Initial (RFC 9000 §17.2.2: only PADDING,
// PING, ACK, CRYPTO and CONNECTION_CLOSE may appear) and the CRYPTO stream
// they carry, put back together by offset (§19.6): frames may come in any
// order, split across packets and datagrams, repeated or overlapping.
//
// Anyone can make Initials, so the work one costs is bounded, not only its
// bytes: the stream holds at most `max` bytes in at most MAX_CRYPTO_RANGES
// disjoint ranges (kept sorted: a piece is placed by binary search and merged
// with the ranges it touches, never re-sorted), and a datagram may carry at
// most MAX_FRAMES_PER_DATAGRAM frames other than PADDING (an ACK frame counts
// once plus once per ACK Range). A real client needs far less: its hello is
// 1–3 pieces, or up to 11 CRYPTO frames in random order with a few PINGs
// when Chromium's chaos protection shuffles its first Initial.
import { type Reject, reject } from "../net/reader";
import { varint } from "./packet";

/** Disjoint ranges of CRYPTO data a flow may hold at once. */
export const MAX_CRYPTO_RANGES = 32;
/** Frames other than PADDING one datagram may carry, over all its Initials (ACK Ranges count as frames). */
export const MAX_FRAMES_PER_DATAGRAM = 64;

export type AddResult = "ok" | "past_max" | "too_many_ranges";

/** A refusal of the frames, in the reader contract's shape (net/reader.ts): the QUIC reader hands it on. */
export type FramesRefusal = Reject<"malformed" | "too_large">;

export type FramesResult =
  /** The frames were read; `frames` of the datagram's budget were used. */
  { kind: "ok"; frames: number } | { kind: "connection_close" } | FramesRefusal;

const TOO_MANY_FRAMES = bad(`more than ${MAX_FRAMES_PER_DATAGRAM} frames in a datagram`);
const TRUNCATED_ACK = bad("truncated ACK frame");
const TRUNCATED_CRYPTO = bad("truncated CRYPTO frame");
const TOO_MANY_RANGES = bad(`more than ${MAX_CRYPTO_RANGES} CRYPTO ranges`);

export class CryptoStream {
  /** Grown as data arrives (a hello is 0.3–2 KB; a pending flow should not cost `max` up front). */
  private data = new Uint8Array(0);
  /** Received [start, end) ranges: sorted, disjoint and not touching. */
  private readonly ranges: [number, number][] = [];

  constructor(readonly max: number) {}

  /** Bytes received from offset 0 without a gap. */
  get contiguous(): number {
    const r = this.ranges[0];
    return r !== undefined && r[0] === 0 ? r[1] : 0;
  }

  /** Disjoint ranges held now. */
  get rangeCount(): number {
    return this.ranges.length;
  }

  /** The stream's bytes [0, n) (n ≤ contiguous). */
  prefix(n: number): Uint8Array {
    return this.data.subarray(0, n);
  }

  /**
   * Add one CRYPTO frame's data: refused when it reaches past `max`, or when
   * it would be one range more than MAX_CRYPTO_RANGES (then nothing changes).
   * O(log R + merged ranges), R ≤ MAX_CRYPTO_RANGES.
   */
  add(offset: number, bytes: Uint8Array): AddResult {
    const end = offset + bytes.length;
    if (end > this.max) return "past_max";
    if (bytes.length === 0) return "ok";
    const r = this.ranges;
    // The first range that ends at or after `offset`: it is the first the piece may touch.
    let lo = 0;
    let hi = r.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (r[mid]![1] < offset) lo = mid + 1;
      else hi = mid;
    }
    // Ranges lo..j-1 touch or overlap [offset, end) and merge with it.
    let j = lo;
    while (j < r.length && r[j]![0] <= end) j++;
    if (j === lo && r.length >= MAX_CRYPTO_RANGES) return "too_many_ranges";
    if (end > this.data.length) {
      const grown = new Uint8Array(Math.min(this.max, Math.max(end, this.data.length * 2, 2048)));
      grown.set(this.data);
      this.data = grown;
    }
    this.data.set(bytes, offset);
    const merged: [number, number] =
      j === lo ? [offset, end] : [Math.min(offset, r[lo]![0]), Math.max(end, r[j - 1]![1])];
    r.splice(lo, j - lo, merged);
    return "ok";
  }

  /**
   * Read a decrypted Initial payload's frames into the stream, using at most
   * `budget` frames (what the datagram's earlier Initials left).
   */
  addFrames(payload: Uint8Array, budget = MAX_FRAMES_PER_DATAGRAM): FramesResult {
    const end = payload.length;
    let frames = 0;
    let p = 0;
    while (p < end) {
      const type = payload[p]!;
      p++;
      // PADDING is one byte a frame: bounded by the datagram's length, not counted.
      if (type === 0x00) continue;
      if (++frames > budget) return TOO_MANY_FRAMES;
      switch (type) {
        case 0x01: // PING
          continue;
        case 0x02: // ACK (§19.3): Largest Acknowledged, ACK Delay, ACK Range Count, First ACK Range, ranges
        case 0x03: {
          const at = skipVarints(payload, p, end, 2);
          const count = at < 0 ? null : varint(payload, at, end);
          if (count === null) return TRUNCATED_ACK;
          frames += count[0];
          if (frames > budget) return TOO_MANY_FRAMES;
          // Each range is two varints; ACK_ECN adds three counts (§19.3.2).
          p = skipVarints(payload, count[1], end, 1 + count[0] * 2 + (type === 0x03 ? 3 : 0));
          if (p < 0) return TRUNCATED_ACK;
          continue;
        }
        case 0x06: {
          const o = varint(payload, p, end);
          const l = o === null ? null : varint(payload, o[1], end);
          if (o === null || l === null || l[1] + l[0] > end) return TRUNCATED_CRYPTO;
          const r = this.add(o[0], payload.subarray(l[1], l[1] + l[0]));
          if (r === "past_max") return reject("too_large", `CRYPTO data past ${this.max} bytes`);
          if (r === "too_many_ranges") return TOO_MANY_RANGES;
          p = l[1] + l[0];
          continue;
        }
        case 0x1c:
          return { kind: "connection_close" };
        default:
          // Any other frame in an Initial is a protocol violation (§12.4, Table 3).
          return bad(`frame type 0x${type.toString(16).padStart(2, "0")} in an Initial`);
      }
    }
    return { kind: "ok", frames };
  }
}

function bad(reason: string): FramesRefusal {
  return reject("malformed", reason);
}

/** The offset after `n` varints from p, or -1 when they run past `end` (p < 0 stays -1). */
function skipVarints(b: Uint8Array, p: number, end: number, n: number): number {
  for (let i = 0; i < n && p >= 0; i++) p = varint(b, p, end)?.[1] ?? -1;
  return p;
}
