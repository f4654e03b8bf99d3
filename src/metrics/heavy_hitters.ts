// The most frequent keys (JA4 fingerprints) of a recent window, in constant
// memory: the space-saving algorithm (Metwally, Agrawal, El Abbadi, "Efficient
// computation of frequent and top-k elements in data streams", ICDT 2005)
// over a ring of time buckets, so what is counted is the last `windowMs`.
//
// - At most `capacity` keys are held. A key not held takes the place of the
//   held key with the smallest count and starts from that count, which is
//   kept as its `error`: its true count is in [count − error, count]. A key
//   counted since it entered, with the table never full, has error 0: exact.
// - Each key counts per bucket (windowMs / BUCKETS). When the clock enters a
//   new bucket, the oldest bucket's counts leave every total; a key left at 0
//   gives its place back.
// - Distinct client prefixes per key: a 128-bit linear-counting sketch
//   (prefix_sketch.ts) per bucket; sketches of buckets and of event loops
//   merge by OR. The tables of several loops merge in hitter_merge.ts.
//
// Memory is fixed at construction: capacity × (STRIDE 4-byte words + 5
// numbers) plus the keys (a JA4 is 36 characters) and a Map of them —
// about 0.4 KB per entry (docs/PERFORMANCE.md measures it). Everything is
// synchronous and socket-free; the clock is passed in.

import { SKETCH_WORDS, sketchBit } from "./prefix_sketch";

/** Buckets per window: a count leaves the window at most windowMs / BUCKETS late. */
export const BUCKETS = 10;
/** Per entry: connections per bucket, blocked per bucket, then the sketches. */
const STRIDE = BUCKETS * 2 + BUCKETS * SKETCH_WORDS;
const BLOCKED = BUCKETS;
const SKETCH = BUCKETS * 2;

/**
 * What a table reports: the keys it holds, in columns (typed arrays, so a
 * worker thread hands them over as a few copies, not an object per key),
 * and the count a key must beat to enter (0 while not full).
 */
export interface HitterReport {
  keys: string[];
  count: Float64Array;
  blocked: Float64Array;
  /** The count may overstate the true one by at most this much. */
  error: Float64Array;
  /** The distinct-prefix sketches: SKETCH_WORDS words per key, OR-able. */
  sketch: Uint32Array;
  /** Unix ms: when this table started counting the key (it may have counted it before an eviction). */
  firstSeen: Float64Array;
  lastSeen: Float64Array;
  floor: number;
}

/** The report of a table that counts nothing ([fingerprints] top = 0). */
export function emptyReport(): HitterReport {
  const none = new Float64Array(0);
  return {
    keys: [],
    count: none,
    blocked: none,
    error: none,
    sketch: new Uint32Array(0),
    firstSeen: none,
    lastSeen: none,
    floor: 0,
  };
}

export class HeavyHitters {
  private readonly slotMs: number;
  private readonly keys: (string | null)[];
  private readonly index = new Map<string, number>();
  private readonly data: Uint32Array;
  private readonly totals: Float64Array;
  private readonly errors: Float64Array;
  private readonly first: Float64Array;
  private readonly last: Float64Array;
  /** Min-heap of entry slots by total; pos[slot] is the slot's place in it. */
  private readonly heap: Int32Array;
  private readonly pos: Int32Array;
  private size = 0;
  private epoch = -1;

  constructor(
    readonly capacity: number,
    readonly windowMs: number,
  ) {
    if (!Number.isInteger(capacity) || capacity < 1)
      throw new RangeError(`capacity ${capacity}: must be a positive integer`);
    if (!(windowMs >= BUCKETS)) throw new RangeError(`window ${windowMs} ms: must be at least ${BUCKETS} ms`);
    this.slotMs = windowMs / BUCKETS;
    this.keys = new Array<string | null>(capacity).fill(null);
    this.data = new Uint32Array(capacity * STRIDE);
    this.totals = new Float64Array(capacity);
    this.errors = new Float64Array(capacity);
    this.first = new Float64Array(capacity);
    this.last = new Float64Array(capacity);
    this.heap = new Int32Array(capacity);
    this.pos = new Int32Array(capacity);
  }

  /** Keys held now. */
  get held(): number {
    return this.size;
  }

  /**
   * Count one connection of `key` at `now` (Unix ms); `blocked` when it was
   * refused for it; `prefix` any 32-bit hash of the client's network.
   */
  record(key: string, now: number, blocked: boolean, prefix: number): void {
    this.roll(now);
    const b = this.epoch % BUCKETS;
    let s = this.index.get(key);
    if (s === undefined) {
      if (this.size < this.capacity) {
        s = this.size;
        this.heap[this.size] = s;
        this.pos[s] = this.size;
        this.size++;
        this.totals[s] = 0;
        this.errors[s] = 0;
        this.siftUp(s);
      } else {
        // Space-saving: take the smallest entry's place and its count.
        s = this.heap[0]!;
        this.index.delete(this.keys[s]!);
        const inherited = this.totals[s]!;
        this.data.fill(0, s * STRIDE, (s + 1) * STRIDE);
        // The inherited count sits in the current bucket, so it leaves with the window.
        this.data[s * STRIDE + b] = inherited;
        this.errors[s] = inherited;
      }
      this.keys[s] = key;
      this.index.set(key, s);
      this.first[s] = now;
    }
    const base = s * STRIDE;
    this.data[base + b]!++;
    if (blocked) this.data[base + BLOCKED + b]!++;
    const bit = sketchBit(prefix);
    this.data[base + SKETCH + b * SKETCH_WORDS + (bit >>> 5)]! |= 1 << (bit & 31);
    this.last[s] = now;
    this.totals[s]!++;
    this.siftDown(this.pos[s]!);
  }

  /** Every key held, counted over the window ending at `now`: O(held), no object per key. */
  report(now: number): HitterReport {
    this.roll(now);
    const n = this.size;
    const blocked = new Float64Array(n);
    const error = new Float64Array(n);
    const sketch = new Uint32Array(n * SKETCH_WORDS);
    const data = this.data;
    for (let s = 0; s < n; s++) {
      const base = s * STRIDE;
      let b = 0;
      for (let i = 0; i < BUCKETS; i++) b += data[base + BLOCKED + i]!;
      blocked[s] = b;
      for (let i = 0; i < BUCKETS; i++)
        for (let w = 0; w < SKETCH_WORDS; w++)
          sketch[s * SKETCH_WORDS + w]! |= data[base + SKETCH + i * SKETCH_WORDS + w]!;
      error[s] = Math.min(this.errors[s]!, this.totals[s]!);
    }
    return {
      keys: this.keys.slice(0, n) as string[],
      count: this.totals.slice(0, n),
      blocked,
      error,
      sketch,
      firstSeen: this.first.slice(0, n),
      lastSeen: this.last.slice(0, n),
      floor: n === this.capacity ? this.totals[this.heap[0]!]! : 0,
    };
  }

  /** Enter the bucket of `now`: buckets that left the window leave every total; emptied keys go. */
  private roll(now: number): void {
    const epoch = Math.floor(now / this.slotMs);
    if (epoch <= this.epoch) return;
    if (this.epoch < 0) {
      this.epoch = epoch;
      return;
    }
    const steps = Math.min(epoch - this.epoch, BUCKETS);
    for (let k = 1; k <= steps; k++) {
      const b = (this.epoch + k) % BUCKETS;
      for (let s = 0; s < this.size; s++) {
        const base = s * STRIDE;
        this.totals[s]! -= this.data[base + b]!;
        this.data[base + b] = 0;
        this.data[base + BLOCKED + b] = 0;
        this.data.fill(0, base + SKETCH + b * SKETCH_WORDS, base + SKETCH + (b + 1) * SKETCH_WORDS);
      }
    }
    this.epoch = epoch;
    this.compact();
  }

  /** Drop keys whose window count reached 0, then rebuild the heap. */
  private compact(): void {
    let n = 0;
    for (let s = 0; s < this.size; s++) {
      if (this.totals[s]! <= 0) {
        this.index.delete(this.keys[s]!);
        continue;
      }
      if (n !== s) {
        this.data.copyWithin(n * STRIDE, s * STRIDE, (s + 1) * STRIDE);
        this.keys[n] = this.keys[s]!;
        this.totals[n] = this.totals[s]!;
        this.errors[n] = this.errors[s]!;
        this.first[n] = this.first[s]!;
        this.last[n] = this.last[s]!;
        this.index.set(this.keys[n]!, n);
      }
      n++;
    }
    for (let s = n; s < this.size; s++) this.keys[s] = null;
    this.size = n;
    for (let i = 0; i < n; i++) {
      this.heap[i] = i;
      this.pos[i] = i;
    }
    for (let i = (n >> 1) - 1; i >= 0; i--) this.siftDown(i);
  }

  /** Move place i up while it is smaller than its parent (a new key enters at 0). */
  private siftUp(i: number): void {
    const heap = this.heap;
    const totals = this.totals;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (totals[heap[p]!]! <= totals[heap[i]!]!) return;
      const a = heap[i]!;
      const d = heap[p]!;
      heap[i] = d;
      heap[p] = a;
      this.pos[d] = i;
      this.pos[a] = p;
      i = p;
    }
  }

  /** Restore the min-heap below place i (a total only grows between rolls, so only down). */
  private siftDown(i: number): void {
    const heap = this.heap;
    const totals = this.totals;
    const n = this.size;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) return;
      const r = l + 1;
      const c = r < n && totals[heap[r]!]! < totals[heap[l]!]! ? r : l;
      if (totals[heap[c]!]! >= totals[heap[i]!]!) return;
      const a = heap[i]!;
      const d = heap[c]!;
      heap[i] = d;
      heap[c] = a;
      this.pos[d] = i;
      this.pos[a] = c;
      i = c;
    }
  }
}
