import { describe, expect, test } from "bun:test";
import { BUCKETS, HeavyHitters, type HitterReport } from "../../src/metrics/heavy_hitters";
import { type MergedHitter, mergeHitters } from "../../src/metrics/hitter_merge";
import { prefixEstimate } from "../../src/metrics/prefix_sketch";
import { LIMITS } from "../../src/config/limits";

const MAX_FINGERPRINT_TOP = LIMITS["fingerprints.top"].max;

const T0 = 1_800_000_000_000;
const MIN = 60_000;

/** A random string shaped like a JA4 (36 characters). */
function randomKey(): string {
  const hex = () =>
    Math.floor(Math.random() * 2 ** 48)
      .toString(16)
      .padStart(12, "0");
  return `t13d${String(Math.floor(Math.random() * 100)).padStart(2, "0")}15h2_${hex()}_${hex()}`;
}

/** A report's rows as objects (the report itself is columns). */
function entries(r: HitterReport) {
  return r.keys.map((key, i) => ({
    key,
    count: r.count[i]!,
    blocked: r.blocked[i]!,
    error: r.error[i]!,
    sketch: Array.from(r.sketch.subarray(i * 4, i * 4 + 4)),
    firstSeen: r.firstSeen[i]!,
    lastSeen: r.lastSeen[i]!,
  }));
}

/** The merge done the plain way: every key summed, the whole list sorted, then cut to `limit`. */
function mergeBySort(reports: HitterReport[], limit: number): MergedHitter[] {
  const floors = reports.reduce((n, r) => n + r.floor, 0);
  const by = new Map<
    string,
    {
      count: number;
      blocked: number;
      error: number;
      seen: number;
      sketch: number[];
      firstSeen: number;
      lastSeen: number;
    }
  >();
  for (const r of reports)
    for (const e of entries(r)) {
      const m = by.get(e.key) ?? {
        count: 0,
        blocked: 0,
        error: 0,
        seen: 0,
        sketch: [0, 0, 0, 0],
        firstSeen: Infinity,
        lastSeen: 0,
      };
      m.count += e.count;
      m.blocked += e.blocked;
      m.error += e.error;
      m.seen += r.floor;
      m.sketch = m.sketch.map((w, i) => (w | e.sketch[i]!) >>> 0);
      m.firstSeen = Math.min(m.firstSeen, e.firstSeen);
      m.lastSeen = Math.max(m.lastSeen, e.lastSeen);
      by.set(e.key, m);
    }
  const all = [...by].map(([key, m]) => {
    const est = prefixEstimate(m.sketch);
    return {
      key,
      count: m.count,
      blocked: m.blocked,
      error: m.error + floors - m.seen,
      clientPrefixes: est.value,
      clientPrefixesSaturated: est.saturated,
      firstSeen: m.firstSeen,
      lastSeen: m.lastSeen,
    };
  });
  all.sort((a, b) => b.count - a.count || (a.key < b.key ? -1 : 1));
  return all.slice(0, limit);
}

describe("HeavyHitters (space-saving over a sliding window)", () => {
  test("below capacity every count is exact, with error 0, blocked and first/last seen", () => {
    const t = new HeavyHitters(100, 10 * MIN);
    for (let i = 0; i < 30; i++) t.record("a", T0 + i, false, 1);
    for (let i = 0; i < 7; i++) t.record("b", T0 + 100 + i, i < 3, 2);
    t.record("c", T0 + 200, true, 3);
    const r = t.report(T0 + 300);
    expect(r.floor).toBe(0);
    const by = new Map(entries(r).map((e) => [e.key, e]));
    expect(by.get("a")).toMatchObject({ count: 30, blocked: 0, error: 0, firstSeen: T0, lastSeen: T0 + 29 });
    expect(by.get("b")).toMatchObject({ count: 7, blocked: 3, error: 0, firstSeen: T0 + 100, lastSeen: T0 + 106 });
    expect(by.get("c")).toMatchObject({ count: 1, blocked: 1, error: 0 });
  });

  test("counts leave with the window, one bucket at a time; a key left at 0 gives its place back", () => {
    const t = new HeavyHitters(10, 10 * MIN);
    const slot = (10 * MIN) / BUCKETS;
    // 5 in the first bucket, 3 in the sixth.
    for (let i = 0; i < 5; i++) t.record("old", T0, false, 0);
    for (let i = 0; i < 3; i++) t.record("old", T0 + 5 * slot, false, 0);
    expect(t.report(T0 + 9 * slot).count[0]).toBe(8);
    // The first bucket leaves when the window has moved past it.
    expect(t.report(T0 + 10 * slot).count[0]).toBe(3);
    expect(t.report(T0 + 15 * slot).keys).toEqual([]);
    expect(t.held).toBe(0);
    // A long silence clears everything at once.
    t.record("x", T0 + 20 * slot, false, 0);
    expect(t.report(T0 + 1000 * slot).keys).toEqual([]);
  });

  test("1,000,000 distinct keys through 1,000 places: held stays at 1,000, heavy keys keep exact counts, memory stays bounded", () => {
    const cap = 1000;
    Bun.gc(true);
    const empty = process.memoryUsage().heapUsed;
    const t = new HeavyHitters(cap, 10 * MIN);
    const heavy = [
      "t13d1516h2_8daaf6152771_02713d6af862",
      "t13d1715h2_5b57614c22b0_3d5424432f57",
      "t12d1209h2_d34a8e72043a_b39be8c56a14",
    ];
    const truth = [0, 0, 0];
    // Warm up the heavy keys first so they enter while the table has room.
    heavy.forEach((k, i) => {
      for (let j = 0; j < 2000 * (i + 1); j++) t.record(k, T0, false, j);
      truth[i] = 2000 * (i + 1);
    });
    for (let n = 0; n < cap; n++) t.record(randomKey(), T0, false, n);
    Bun.gc(true);
    const before = process.memoryUsage().heapUsed;
    for (let n = 0; n < 1_000_000; n++) {
      t.record(randomKey(), T0 + 1 + Math.floor(n / 1000), false, n);
      if (n % 997 === 0) {
        const i = n % 3;
        t.record(heavy[i]!, T0 + 1 + Math.floor(n / 1000), false, n);
        truth[i]!++;
      }
    }
    Bun.gc(true);
    const grown = process.memoryUsage().heapUsed - before;
    expect(t.held).toBe(cap);
    const r = t.report(T0 + 2000);
    const by = new Map(entries(r).map((e) => [e.key, e]));
    for (const [i, k] of heavy.entries()) expect(by.get(k)).toMatchObject({ count: truth[i], error: 0 });
    // Every other held key: a space-saving count bounds the true count (1) from above, within its error.
    for (const e of entries(r)) if (!heavy.includes(e.key)) expect(e.count - e.error).toBeLessThanOrEqual(1);
    console.log(
      `HeavyHitters(1000): ${((before - empty) / 1024).toFixed(0)} KiB full; heap grew ${(grown / 1024).toFixed(0)} KiB over 1,000,000 distinct keys; floor ${r.floor}`,
    );
    // The table was fully allocated before; 1,000,000 keys must not add more than the table's own size.
    expect(grown).toBeLessThan(2 * 1024 * 1024);
  }, 60_000);

  test("merging tables sums counts, ORs prefix sketches, and adds a full table's floor to the error of a key it does not hold", () => {
    const a = new HeavyHitters(2, 10 * MIN);
    const b = new HeavyHitters(100, 10 * MIN);
    for (let i = 0; i < 10; i++) a.record("k1", T0, false, i);
    for (let i = 0; i < 4; i++) a.record("k2", T0, i === 0, 100 + i);
    for (let i = 0; i < 6; i++) b.record("k1", T0, true, i);
    for (let i = 0; i < 5; i++) b.record("k3", T0, false, 1);
    const m = mergeHitters([a.report(T0), b.report(T0)], 10);
    expect(m.map((e) => e.key)).toEqual(["k1", "k3", "k2"]);
    expect(m[0]).toMatchObject({ count: 16, blocked: 6, error: 0 });
    expect(m[0]!.clientPrefixes).toBe(10);
    expect(m[2]).toMatchObject({ count: 4, blocked: 1, error: 0 });
    // k3 is not in the full table a, whose floor is 4.
    expect(m[1]).toMatchObject({ count: 5, error: 4, clientPrefixes: 1 });
    expect(mergeHitters([a.report(T0), b.report(T0)], 1).length).toBe(1);
  });

  test("the top `limit` of big full tables, merged: the same answer as summing every key and sorting the whole list", () => {
    // Two full tables of the largest `top` that share half their keys, with many equal counts; seeded.
    let seed = 7;
    const rand = () => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed / 2 ** 32;
    };
    const tables = [0, 1].map(() => new HeavyHitters(MAX_FINGERPRINT_TOP, 10 * MIN));
    for (let n = 0; n < 120_000; n++) {
      const t = tables[n & 1]!;
      const key = `t13d1516h2_${String(Math.floor(rand() ** 3 * 40_000)).padStart(12, "0")}_e5627efa2ab1`;
      t.record(key, T0 + Math.floor(n / 100), rand() < 0.1, Math.floor(rand() * 1000));
    }
    const reports = tables.map((t) => t.report(T0 + 2000));
    expect(reports.map((r) => [r.keys.length, r.floor > 0])).toEqual([
      [MAX_FINGERPRINT_TOP, true],
      [MAX_FINGERPRINT_TOP, true],
    ]);
    for (const limit of [1, 10, 100, 10_000, 50_000]) {
      const got = mergeHitters(reports, limit);
      expect(got.length).toBe(Math.min(limit, new Set(reports.flatMap((r) => r.keys)).size));
      expect(got).toEqual(mergeBySort(reports, limit));
    }
    // Ties on the count are broken by the key, whatever order the tables held them in.
    expect(mergeHitters(reports.slice().reverse(), 100)).toEqual(mergeHitters(reports, 100));
  }, 60_000);

  test("the distinct-prefix estimate is close below ~200 and says when it saturates", () => {
    for (const n of [1, 10, 50, 100, 200]) {
      const t = new HeavyHitters(1, 10 * MIN);
      for (let i = 0; i < n; i++) t.record("k", T0, false, 0x0a000000 + i * 256);
      const est = prefixEstimate(entries(t.report(T0))[0]!.sketch);
      expect(est.saturated).toBe(false);
      expect(Math.abs(est.value - n)).toBeLessThanOrEqual(Math.max(1, n * 0.25));
    }
    const t = new HeavyHitters(1, 10 * MIN);
    for (let i = 0; i < 100_000; i++) t.record("k", T0, false, i);
    expect(prefixEstimate(entries(t.report(T0))[0]!.sketch).saturated).toBe(true);
  });

  test("bad sizes are refused", () => {
    expect(() => new HeavyHitters(0, MIN)).toThrow(/capacity/);
    expect(() => new HeavyHitters(10, 1)).toThrow(/window/);
  });
});
