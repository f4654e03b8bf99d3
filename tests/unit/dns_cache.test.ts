// The resolver's cache (src/dns/dns_cache.ts, docs/DNS.md) with a fake clock and a fake query
// function: TTL, the min/max clamp, negative caching, serve-stale, the size bound, coalescing.
import { describe, expect, test } from "bun:test";
import { type CacheSettings, DnsCache, FAILURE_RECHECK_MS, type QueryResult } from "../../src/dns/dns_cache";

const SETTINGS: CacheSettings = {
  minTtlMs: 1000,
  maxTtlMs: 60_000,
  negativeTtlMs: 5000,
  staleTtlMs: 30_000,
  size: 100,
};

/** A cache over answers the test sets per name; `now` moves by hand. */
function fixture(settings: Partial<CacheSettings> = {}) {
  const clock = { now: 0 };
  const answers = new Map<string, QueryResult>();
  const asked: string[] = [];
  const cache = new DnsCache(
    { ...SETTINGS, ...settings },
    async (name) => {
      asked.push(name);
      return answers.get(name) ?? { kind: "none" };
    },
    () => clock.now,
  );
  return { clock, answers, asked, cache };
}

const ok = (addresses: string[], ttlSec: number): QueryResult => ({ kind: "ok", addresses, ttlSec });
const down: QueryResult = { kind: "error", reason: "timeout" };

describe("DnsCache", () => {
  test("an answer is served from the cache until its TTL, then asked again", async () => {
    const f = fixture();
    f.answers.set("a.test", ok(["192.0.2.1"], 10));
    expect(await f.cache.lookup("a.test")).toEqual({ kind: "ok", addresses: ["192.0.2.1"], stale: false });
    f.answers.set("a.test", ok(["192.0.2.2"], 10));
    f.clock.now = 9999;
    // A fresh entry answers synchronously.
    expect(f.cache.lookup("a.test")).toEqual({ kind: "ok", addresses: ["192.0.2.1"], stale: false });
    f.clock.now = 10_000;
    expect(await f.cache.lookup("a.test")).toEqual({ kind: "ok", addresses: ["192.0.2.2"], stale: false });
    expect(f.asked).toEqual(["a.test", "a.test"]);
  });

  test("the TTL is clamped to min_ttl and max_ttl", async () => {
    const f = fixture();
    f.answers.set("zero.test", ok(["192.0.2.1"], 0));
    f.answers.set("long.test", ok(["192.0.2.2"], 86_400));
    await f.cache.lookup("zero.test");
    await f.cache.lookup("long.test");
    f.clock.now = 999;
    expect(f.cache.lookup("zero.test")).not.toBeInstanceOf(Promise);
    f.clock.now = 1000;
    expect(f.cache.lookup("zero.test")).toBeInstanceOf(Promise);
    f.clock.now = 59_999;
    expect(f.cache.lookup("long.test")).not.toBeInstanceOf(Promise);
    f.clock.now = 60_000;
    expect(f.cache.lookup("long.test")).toBeInstanceOf(Promise);
  });

  test("min_ttl 0 asks every time for a TTL-0 answer", async () => {
    const f = fixture({ minTtlMs: 0 });
    f.answers.set("flip.test", ok(["192.0.2.1"], 0));
    await f.cache.lookup("flip.test");
    f.answers.set("flip.test", ok(["127.0.0.1"], 0));
    expect(await f.cache.lookup("flip.test")).toEqual({ kind: "ok", addresses: ["127.0.0.1"], stale: false });
    expect(f.asked.length).toBe(2);
  });

  test("a name that does not exist is cached for negative_ttl", async () => {
    const f = fixture();
    expect(await f.cache.lookup("nx.test")).toEqual({ kind: "failed", reason: "no such name" });
    f.answers.set("nx.test", ok(["192.0.2.1"], 10));
    f.clock.now = 4999;
    expect(f.cache.lookup("nx.test")).toEqual({ kind: "failed", reason: "no such name" });
    f.clock.now = 5000;
    expect(await f.cache.lookup("nx.test")).toEqual({ kind: "ok", addresses: ["192.0.2.1"], stale: false });
    expect(f.asked.length).toBe(2);
  });

  test("resolver down: the expired answer is served for stale_ttl, then the lookup fails", async () => {
    const f = fixture();
    f.answers.set("a.test", ok(["192.0.2.1"], 10));
    await f.cache.lookup("a.test");
    f.answers.set("a.test", down);
    f.clock.now = 10_000;
    expect(await f.cache.lookup("a.test")).toEqual({ kind: "ok", addresses: ["192.0.2.1"], stale: true });
    // Within the failure recheck the stale answer comes without asking.
    f.clock.now = 10_000 + FAILURE_RECHECK_MS - 1;
    expect(f.cache.lookup("a.test")).toEqual({ kind: "ok", addresses: ["192.0.2.1"], stale: true });
    expect(f.asked.length).toBe(2);
    f.clock.now = 39_999;
    expect(await f.cache.lookup("a.test")).toEqual({ kind: "ok", addresses: ["192.0.2.1"], stale: true });
    f.clock.now = 40_000;
    expect(await f.cache.lookup("a.test")).toEqual({ kind: "failed", reason: "timeout" });
  });

  test("a resolver that comes back replaces the stale answer", async () => {
    const f = fixture();
    f.answers.set("a.test", ok(["192.0.2.1"], 10));
    await f.cache.lookup("a.test");
    f.answers.set("a.test", down);
    f.clock.now = 10_000;
    await f.cache.lookup("a.test");
    f.answers.set("a.test", ok(["192.0.2.9"], 10));
    f.clock.now = 10_000 + FAILURE_RECHECK_MS;
    expect(await f.cache.lookup("a.test")).toEqual({ kind: "ok", addresses: ["192.0.2.9"], stale: false });
  });

  test("no stale answer for a name never resolved, nor from a negative entry; a throwing query is a failure", async () => {
    const f = fixture();
    f.answers.set("a.test", down);
    expect(await f.cache.lookup("a.test")).toEqual({ kind: "failed", reason: "timeout" });
    await f.cache.lookup("nx.test");
    f.answers.set("nx.test", down);
    f.clock.now = 5000;
    expect(await f.cache.lookup("nx.test")).toEqual({ kind: "failed", reason: "timeout" });
    const t = new DnsCache(
      SETTINGS,
      () => Promise.reject(new Error("boom")),
      () => 0,
    );
    expect(await t.lookup("x.test")).toEqual({ kind: "failed", reason: "boom" });
  });

  test("at most cache_size names, the least recently used evicted", async () => {
    const f = fixture({ size: 3 });
    for (const n of ["a", "b", "c"]) f.answers.set(`${n}.test`, ok(["192.0.2.1"], 100));
    f.answers.set("d.test", ok(["192.0.2.4"], 100));
    for (const n of ["a", "b", "c"]) await f.cache.lookup(`${n}.test`);
    f.cache.lookup("a.test"); // a is now the most recent: b is the oldest
    await f.cache.lookup("d.test");
    expect(f.cache.size).toBe(3);
    expect(f.cache.lookup("a.test")).not.toBeInstanceOf(Promise);
    expect(f.cache.lookup("c.test")).not.toBeInstanceOf(Promise);
    expect(f.cache.lookup("b.test")).toBeInstanceOf(Promise);
  });

  test("concurrent lookups of one name share one query", async () => {
    let release!: (r: QueryResult) => void;
    let n = 0;
    const cache = new DnsCache(
      SETTINGS,
      () => {
        n++;
        return new Promise((r) => (release = r));
      },
      () => 0,
    );
    const all = Array.from({ length: 50 }, () => cache.lookup("a.test"));
    expect(n).toBe(1);
    release(ok(["192.0.2.1"], 10));
    for (const r of await Promise.all(all)) expect(r).toEqual({ kind: "ok", addresses: ["192.0.2.1"], stale: false });
    expect(cache.lookup("b.test")).toBeInstanceOf(Promise);
    expect(n).toBe(2);
  });

  test("counts: queries, resolver failures, cache hits (negative too), stale answers served", async () => {
    const f = fixture();
    expect(f.cache.counts()).toEqual({ queries: 0, failures: 0, hits: 0, stale: 0 });
    f.answers.set("a.test", ok(["192.0.2.1"], 10));
    await f.cache.lookup("a.test");
    f.cache.lookup("a.test");
    await f.cache.lookup("nx.test");
    f.cache.lookup("nx.test");
    expect(f.cache.counts()).toEqual({ queries: 2, failures: 0, hits: 2, stale: 0 });
    f.answers.set("a.test", down);
    f.clock.now = 10_000;
    await f.cache.lookup("a.test");
    f.cache.lookup("a.test");
    expect(f.cache.counts()).toEqual({ queries: 3, failures: 1, hits: 2, stale: 2 });
    f.clock.now = 40_000;
    await f.cache.lookup("a.test");
    expect(f.cache.counts()).toEqual({ queries: 4, failures: 2, hits: 2, stale: 2 });
  });
});
