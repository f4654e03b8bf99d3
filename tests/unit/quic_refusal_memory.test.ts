// The memory of refused QUIC hellos (src/quic/refusal_memory.ts): copies
// within the memory's time are counted, not read again; bounded in entries
// (the oldest goes, with its count) and in time.
import { describe, expect, test } from "bun:test";
import { RefusalMemory } from "../../src/quic/refusal_memory";

describe("RefusalMemory", () => {
  test("a copy of a remembered refusal is counted and answered with its outcome; an unknown key or an expired one is not", () => {
    const m = new RefusalMemory<"no_route" | "route_denied">(4, 1000);
    expect(m.remember("ip|aa", "no_route", 0)).toBeNull();
    expect(m.repeat("ip|aa", 10)).toBe("no_route");
    expect(m.repeat("ip|aa", 999)).toBe("no_route");
    expect(m.repeat("ip|bb", 10)).toBeNull();
    expect(m.repeat("ip|aa", 1000)).toBeNull();
    const gone = m.expire(1000);
    expect(gone.map((r) => [r.key, r.outcome, r.repeats])).toEqual([["ip|aa", "no_route", 2]]);
    expect(m.size).toBe(0);
  });

  test("bounded in entries: the oldest is pushed out, with its count; remembering a key again makes it the newest", () => {
    const m = new RefusalMemory<"no_route">(2, 1000);
    m.remember("a", "no_route", 0);
    m.remember("b", "no_route", 1);
    m.repeat("a", 2);
    expect(m.remember("a", "no_route", 3)).toBeNull(); // again: a fresh entry, not a new one
    const pushed = m.remember("c", "no_route", 4);
    expect(pushed?.key).toBe("b");
    expect(m.size).toBe(2);
    expect(m.repeat("b", 5)).toBeNull();
    expect(m.expire(1003).map((r) => r.key)).toEqual(["a"]);
    expect(m.expire(1004).map((r) => r.key)).toEqual(["c"]);
  });

  test("100,000 refusals hold at most maxEntries", () => {
    const m = new RefusalMemory<"no_route">(4096, 10_000);
    for (let i = 0; i < 100_000; i++) m.remember(String(i), "no_route", i);
    expect(m.size).toBe(4096);
  });
});
