// The rate limiter's table in shared memory: its locks (a loop that gave up
// never frees another's; the supervisor frees a dead loop's) and eviction.
import { describe, expect, test } from "bun:test";
import { RateLimiter } from "../../src/firewall/rate_limiter";

describe("rate limiter: locks and eviction", () => {
  test("a lock held by another loop is never released by a loop that gave up waiting; the supervisor frees a dead loop's locks", () => {
    const buf = new SharedArrayBuffer(new RateLimiter(10, 1000, 4).buffer.byteLength);
    const a = new RateLimiter(10, 1000, 4, buf, 0);
    const locks = new Int32Array(buf, 0, 1);
    // Worker 3 holds the only set's lock (it died inside allow()).
    Atomics.store(locks, 0, 3 + 1);
    expect(a.allow(1, 1, 0)).toBe(true);
    expect(Atomics.load(locks, 0)).toBe(4);
    expect(a.releaseLocksOf(2)).toBe(0);
    expect(a.releaseLocksOf(3)).toBe(1);
    expect(Atomics.load(locks, 0)).toBe(0);
    expect(a.allow(1, 1, 0)).toBe(true);
    expect(Atomics.load(locks, 0)).toBe(0);
  });

  test("under a flood of new clients in one window, a limited client keeps its count", () => {
    // One set of 4 ways: the limited client and a flood of distinct sources.
    const r = new RateLimiter(3, 60_000, 4);
    for (let i = 0; i < 3; i++) expect(r.allow(7, 7, 1000)).toBe(true);
    expect(r.allow(7, 7, 1000)).toBe(false);
    for (let i = 0; i < 1000; i++) r.allow(100 + i, 0, 1000);
    expect(r.allow(7, 7, 1000)).toBe(false);
  });
});
