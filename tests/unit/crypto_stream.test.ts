// The CRYPTO stream of a QUIC Initial, put back together by offset (RFC 9000
// §19.6), fed values: any order, overlaps and repeats read the same; the
// bounds a stranger meets (bytes, disjoint ranges per flow, frames per
// datagram) refuse with a reason (src/quic/crypto_stream.ts).
import { describe, expect, test } from "bun:test";
import { CryptoStream, MAX_CRYPTO_RANGES, MAX_FRAMES_PER_DATAGRAM } from "../../src/quic/crypto_stream";
import { prng, randInt } from "../helpers/prng";
import { cryptoFrame, varintBytes } from "../helpers/quic";

const bytes = (n: number, from = 0) => Uint8Array.from({ length: n }, (_, i) => (from + i) & 0xff);
const cat = (...parts: (Uint8Array | number[])[]) => Uint8Array.from(parts.flatMap((p) => [...p]));

/** The stream as a plain model: which bytes arrived, their runs, the gap-free prefix. */
class Model {
  readonly got: boolean[];
  constructor(readonly max: number) {
    this.got = new Array<boolean>(max).fill(false);
  }
  runsWith(offset: number, len: number): number {
    let runs = 0;
    for (let i = 0; i < this.max; i++) {
      const has = this.got[i] || (i >= offset && i < offset + len);
      const before = i > 0 && (this.got[i - 1] || (i - 1 >= offset && i - 1 < offset + len));
      if (has && !before) runs++;
    }
    return runs;
  }
  add(offset: number, len: number): void {
    for (let i = offset; i < offset + len; i++) this.got[i] = true;
  }
  get contiguous(): number {
    const i = this.got.indexOf(false);
    return i < 0 ? this.max : i;
  }
}

describe("CryptoStream.add", () => {
  test("pieces with overlaps and repeats, in 500 random orders, agree with a plain model after every piece; the stream reads back whole", () => {
    const rnd = prng(7);
    const max = 4096;
    const hello = bytes(3000, 5);
    for (let round = 0; round < 500; round++) {
      // Cut points, then each piece widened at random so neighbours overlap; some pieces twice.
      const cuts = [0, hello.length];
      for (let i = randInt(rnd, 0, 20); i > 0; i--) cuts.push(randInt(rnd, 1, hello.length - 1));
      cuts.sort((a, b) => a - b);
      const pieces: [number, number][] = [];
      for (let i = 0; i + 1 < cuts.length; i++) {
        const s = Math.max(0, cuts[i]! - randInt(rnd, 0, 40));
        const e = Math.min(hello.length, cuts[i + 1]! + randInt(rnd, 0, 40));
        pieces.push([s, e]);
        if (rnd() < 0.2) pieces.push([s, e]);
      }
      for (let i = pieces.length - 1; i > 0; i--) {
        const j = randInt(rnd, 0, i);
        [pieces[i], pieces[j]] = [pieces[j]!, pieces[i]!];
      }
      const s = new CryptoStream(max);
      const m = new Model(max);
      for (const [a, b] of pieces) {
        expect(s.add(a, hello.subarray(a, b))).toBe("ok");
        m.add(a, b - a);
        expect(s.contiguous).toBe(m.contiguous);
        expect(s.rangeCount).toBe(m.runsWith(0, 0));
      }
      expect(s.contiguous).toBe(hello.length);
      expect(s.rangeCount).toBe(1);
      expect(Buffer.from(s.prefix(hello.length)).equals(Buffer.from(hello))).toBe(true);
    }
  });

  test("touching ranges merge; one piece bridging many ranges leaves one; empty pieces change nothing", () => {
    const s = new CryptoStream(1000);
    for (let i = 0; i < 10; i++) expect(s.add(100 + i * 20, bytes(10))).toBe("ok");
    expect(s.rangeCount).toBe(10);
    expect(s.add(110, bytes(10))).toBe("ok"); // touches [100,110) and [120,130)
    expect(s.rangeCount).toBe(9);
    expect(s.add(50, bytes(500))).toBe("ok"); // covers them all
    expect(s.rangeCount).toBe(1);
    expect(s.contiguous).toBe(0);
    expect(s.add(0, new Uint8Array(0))).toBe("ok");
    expect(s.contiguous).toBe(0);
    expect(s.add(0, bytes(50))).toBe("ok"); // touches [50, 550)
    expect(s.contiguous).toBe(550);
    expect(s.rangeCount).toBe(1);
  });

  test(`data past the stream's bound is refused (past_max); up to it is taken`, () => {
    const s = new CryptoStream(100);
    expect(s.add(95, bytes(6))).toBe("past_max");
    expect(s.add(2 ** 40, bytes(1))).toBe("past_max");
    expect(s.add(95, bytes(5))).toBe("ok");
    expect(s.add(100, new Uint8Array(0))).toBe("ok");
  });

  test(`at most ${MAX_CRYPTO_RANGES} disjoint ranges: one more is refused and changes nothing; a piece that joins ranges is still taken`, () => {
    const s = new CryptoStream(16384);
    for (let i = 0; i < MAX_CRYPTO_RANGES; i++) expect(s.add(10 + i * 10, bytes(1))).toBe("ok");
    expect(s.rangeCount).toBe(MAX_CRYPTO_RANGES);
    expect(s.add(5, bytes(1))).toBe("too_many_ranges");
    expect(s.add(1000, bytes(1))).toBe("too_many_ranges");
    expect(s.rangeCount).toBe(MAX_CRYPTO_RANGES);
    expect(s.add(0, bytes(1))).toBe("too_many_ranges");
    expect(s.contiguous).toBe(0); // the refused piece was not written
    expect(s.add(10, bytes(15))).toBe("ok"); // [10, 25) joins the first two
    expect(s.rangeCount).toBe(MAX_CRYPTO_RANGES - 1);
    expect(s.add(0, bytes(1))).toBe("ok");
    expect(s.rangeCount).toBe(MAX_CRYPTO_RANGES);
  });

  test("random pieces against the model with the range bound: refused exactly when the model would pass it", () => {
    const rnd = prng(99);
    const max = 2048;
    let refusals = 0;
    for (let round = 0; round < 100; round++) {
      const s = new CryptoStream(max);
      const m = new Model(max);
      for (let k = 0; k < 80; k++) {
        const a = randInt(rnd, 0, max - 1);
        const len = randInt(rnd, 0, Math.min(30, max - a));
        const r = s.add(a, bytes(len, a));
        const over = len > 0 && m.runsWith(a, len) > MAX_CRYPTO_RANGES;
        expect(r).toBe(over ? "too_many_ranges" : "ok");
        if (over) refusals++;
        else m.add(a, len);
        expect(s.contiguous).toBe(m.contiguous);
        expect(s.rangeCount).toBe(m.runsWith(0, 0));
      }
      expect(Buffer.from(s.prefix(s.contiguous)).equals(Buffer.from(bytes(s.contiguous)))).toBe(true);
    }
    expect(refusals).toBeGreaterThan(0);
  });
});

describe("CryptoStream.addFrames", () => {
  const oneByteFrames = (n: number, gap = 2) =>
    cat(...Array.from({ length: n }, (_, i) => cryptoFrame(1 + i * gap, bytes(1))));

  test(`${MAX_FRAMES_PER_DATAGRAM} frames are read; one more is malformed, with the bound in the reason; PADDING is not counted`, () => {
    const ok = new CryptoStream(16384);
    // Contiguous one-byte frames: one range, so only the frame bound applies.
    expect(
      ok.addFrames(cat(new Uint8Array(900), oneByteFrames(MAX_FRAMES_PER_DATAGRAM, 1), new Uint8Array(100))),
    ).toEqual({ kind: "ok", frames: MAX_FRAMES_PER_DATAGRAM });
    const over = new CryptoStream(16384);
    expect(over.addFrames(oneByteFrames(MAX_FRAMES_PER_DATAGRAM + 1, 1))).toEqual({
      kind: "reject",
      outcome: "malformed",
      reason: `more than ${MAX_FRAMES_PER_DATAGRAM} frames in a datagram`,
    });
    // A budget left over from the datagram's earlier packets.
    expect(new CryptoStream(16384).addFrames(oneByteFrames(3, 1), 2)).toMatchObject({
      kind: "reject",
      outcome: "malformed",
    });
    expect(new CryptoStream(16384).addFrames(Uint8Array.from([1, 1, 0, 0, 1]), 3)).toEqual({ kind: "ok", frames: 3 });
    expect(new CryptoStream(16384).addFrames(new Uint8Array(1000))).toEqual({ kind: "ok", frames: 0 });
  });

  test("200 one-byte CRYPTO frames at gaps in one packet: malformed at the first bound met, never more ranges than the bound", () => {
    const s = new CryptoStream(16384);
    const r = s.addFrames(oneByteFrames(200));
    expect(r).toMatchObject({ kind: "reject", outcome: "malformed" });
    expect(s.rangeCount).toBeLessThanOrEqual(MAX_CRYPTO_RANGES);
  });

  test("gapped frames over several datagrams: refused at the range bound", () => {
    const s = new CryptoStream(16384);
    const per = 11;
    let i = 0;
    let last: unknown;
    for (let d = 0; d * per < MAX_CRYPTO_RANGES; d++) {
      last = s.addFrames(cat(...Array.from({ length: per }, () => cryptoFrame(1 + 2 * i++, bytes(1)))));
      if ((last as { kind: string }).kind !== "ok") break;
    }
    expect(last).toEqual({
      kind: "reject",
      outcome: "malformed",
      reason: `more than ${MAX_CRYPTO_RANGES} CRYPTO ranges`,
    });
  });

  test("ACK ranges count as frames; a range count past the budget is refused before any range is read", () => {
    const ack = (ranges: number) =>
      cat([0x02, ...varintBytes(1000), 0, ...varintBytes(ranges), 0], ...Array.from({ length: ranges }, () => [0, 0]));
    expect(new CryptoStream(100).addFrames(ack(3))).toEqual({ kind: "ok", frames: 4 });
    expect(new CryptoStream(100).addFrames(cat([0x03], ack(2).subarray(1), [0, 0, 0]))).toEqual({
      kind: "ok",
      frames: 3,
    }); // ACK_ECN: three counts
    expect(new CryptoStream(100).addFrames(ack(MAX_FRAMES_PER_DATAGRAM))).toMatchObject({
      kind: "reject",
      outcome: "malformed",
    });
    // A huge count with no ranges behind it.
    expect(new CryptoStream(100).addFrames(Uint8Array.from([0x02, 1, 0, 0x80, 0x10, 0, 0, 0]))).toMatchObject({
      kind: "reject",
      outcome: "malformed",
    });
  });

  test("other refusals: CRYPTO past the bound is too_large; truncated frames and frames an Initial may not carry are malformed; CONNECTION_CLOSE", () => {
    expect(new CryptoStream(100).addFrames(cryptoFrame(90, bytes(11)))).toMatchObject({
      kind: "reject",
      outcome: "too_large",
    });
    expect(new CryptoStream(100).addFrames(cryptoFrame(0, bytes(20)).subarray(0, 10))).toMatchObject({
      kind: "reject",
      outcome: "malformed",
    });
    expect(new CryptoStream(100).addFrames(Uint8Array.from([0x06, 0x40]))).toMatchObject({
      kind: "reject",
      outcome: "malformed",
    });
    expect(new CryptoStream(100).addFrames(Uint8Array.from([0x08, 0, 0]))).toMatchObject({
      kind: "reject",
      outcome: "malformed",
      reason: "frame type 0x08 in an Initial",
    });
    expect(new CryptoStream(100).addFrames(Uint8Array.from([0x1c, 0, 0, 0]))).toEqual({ kind: "connection_close" });
  });
});
