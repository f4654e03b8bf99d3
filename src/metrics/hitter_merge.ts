// The top-fingerprints tables of several event loops (heavy_hitters.ts), one
// report each, summed into one ranking. Synchronous and socket-free.

import type { HitterReport } from "./heavy_hitters";
import { SKETCH_WORDS, prefixEstimate } from "./prefix_sketch";

/** A merged key: the sums over tables, the sketch OR-ed, and whether the prefix estimate is a lower bound. */
export interface MergedHitter {
  key: string;
  count: number;
  blocked: number;
  error: number;
  clientPrefixes: number;
  clientPrefixesSaturated: boolean;
  firstSeen: number;
  lastSeen: number;
}

/** Higher count first; of equal counts, the key first in code-unit order (JA4s are ASCII). */
function before(ca: number, ka: string, cb: number, kb: string): boolean {
  return ca > cb || (ca === cb && ka < kb);
}

/**
 * Sum several tables' reports (one per event loop) into the top `limit` keys.
 * A key one full table does not hold may have up to that table's floor
 * there: the floor joins its error bound (the merge rule for space-saving
 * summaries: Agarwal et al., "Mergeable summaries", PODS 2012).
 *
 * Cost: one Map insert per reported key (the sum must see every key), then a
 * bounded heap of `limit` (O(keys · log limit)), and the sketches OR-ed and
 * estimated for the `limit` kept only: never a sort of the whole table.
 */
export function mergeHitters(reports: readonly HitterReport[], limit: number): MergedHitter[] {
  let total = 0;
  for (const r of reports) total += r.keys.length;
  // One row per distinct key; its places in the reports chained through `next` (place ids: offset of its report + place).
  const byKey = new Map<string, number>();
  const keys: string[] = [];
  const count = new Float64Array(total);
  const blocked = new Float64Array(total);
  const error = new Float64Array(total);
  const seenFloors = new Float64Array(total);
  const first = new Float64Array(total);
  const last = new Float64Array(total);
  const head = new Int32Array(total);
  const next = new Int32Array(total);
  const sketches: Uint32Array[] = [];
  let offset = 0;
  for (const r of reports) {
    sketches.push(r.sketch);
    for (let i = 0; i < r.keys.length; i++) {
      const key = r.keys[i]!;
      let row = byKey.get(key);
      const place = offset + i;
      if (row === undefined) {
        row = keys.length;
        byKey.set(key, row);
        keys.push(key);
        first[row] = r.firstSeen[i]!;
        last[row] = r.lastSeen[i]!;
        next[place] = -1;
      } else {
        first[row] = Math.min(first[row]!, r.firstSeen[i]!);
        last[row] = Math.max(last[row]!, r.lastSeen[i]!);
        next[place] = head[row]!;
      }
      head[row] = place;
      count[row]! += r.count[i]!;
      blocked[row]! += r.blocked[i]!;
      error[row]! += r.error[i]!;
      seenFloors[row]! += r.floor;
    }
    offset += r.keys.length;
  }
  // The top `limit` rows: a min-heap whose root is the worst kept.
  const k = Math.min(limit, keys.length);
  const heap = new Int32Array(k);
  let size = 0;
  const worse = (a: number, b: number) => before(count[b]!, keys[b]!, count[a]!, keys[a]!);
  const down = (i: number) => {
    for (;;) {
      const l = 2 * i + 1;
      if (l >= size) return;
      const c = l + 1 < size && worse(heap[l + 1]!, heap[l]!) ? l + 1 : l;
      if (!worse(heap[c]!, heap[i]!)) return;
      const t = heap[i]!;
      heap[i] = heap[c]!;
      heap[c] = t;
      i = c;
    }
  };
  for (let row = 0; row < keys.length && k > 0; row++) {
    if (size < k) {
      let i = size++;
      heap[i] = row;
      while (i > 0 && worse(heap[i]!, heap[(i - 1) >> 1]!)) {
        const p = (i - 1) >> 1;
        const t = heap[i]!;
        heap[i] = heap[p]!;
        heap[p] = t;
        i = p;
      }
    } else if (worse(heap[0]!, row)) {
      heap[0] = row;
      down(0);
    }
  }
  const rows = Array.from(heap).sort((a, b) => (before(count[a]!, keys[a]!, count[b]!, keys[b]!) ? -1 : 1));
  // Place id → its report and place there.
  const starts: number[] = [];
  offset = 0;
  for (const r of reports) {
    starts.push(offset);
    offset += r.keys.length;
  }
  const floors = reports.reduce((n, r) => n + r.floor, 0);
  return rows.map((row) => {
    const sketch = [0, 0, 0, 0];
    for (let place = head[row]!; place !== -1; place = next[place]!) {
      let r = starts.length - 1;
      while (starts[r]! > place) r--;
      const at = (place - starts[r]!) * SKETCH_WORDS;
      for (let w = 0; w < SKETCH_WORDS; w++) sketch[w]! |= sketches[r]![at + w]!;
    }
    const est = prefixEstimate(sketch);
    return {
      key: keys[row]!,
      count: count[row]!,
      blocked: blocked[row]!,
      // Tables that did not report the key add their floor (those not full add 0).
      error: error[row]! + floors - seenFloors[row]!,
      clientPrefixes: est.value,
      clientPrefixesSaturated: est.saturated,
      firstSeen: first[row]!,
      lastSeen: last[row]!,
    };
  });
}
