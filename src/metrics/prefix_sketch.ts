// The distinct-client-prefix sketch of the top-fingerprints table
// (heavy_hitters.ts): linear counting (Whang, Vander-Zanden, Taylor, ACM TODS
// 1990) over a 128-bit bitmap. Bitmaps of buckets and of event loops merge by
// OR. Synchronous and socket-free.

/** 32-bit words of the distinct-prefix sketch per bucket (128 bits). */
export const SKETCH_WORDS = 4;
const SKETCH_BITS = SKETCH_WORDS * 32;

/** The bit a prefix sets: any 32-bit hash of the client's network, spread over the sketch. */
export function sketchBit(prefix: number): number {
  return mix(prefix) & (SKETCH_BITS - 1);
}

/** A 32-bit integer hash (the MurmurHash3 finaliser): spreads neighbouring prefixes over the sketch. */
function mix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Linear counting: n ≈ −m·ln(zeros/m); with no zero bit left, the estimate for one zero, as a lower bound. */
export function prefixEstimate(sketch: readonly number[]): { value: number; saturated: boolean } {
  let ones = 0;
  for (const w of sketch) ones += popcount(w >>> 0);
  const zeros = SKETCH_BITS - ones;
  if (zeros === 0) return { value: Math.round(SKETCH_BITS * Math.log(SKETCH_BITS)), saturated: true };
  return { value: Math.round(-SKETCH_BITS * Math.log(zeros / SKETCH_BITS)), saturated: false };
}

function popcount(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return (Math.imul((x + (x >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24) & 0xff;
}
