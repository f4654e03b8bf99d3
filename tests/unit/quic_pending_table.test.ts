// The QUIC pending table (src/quic/pending_table.ts): bounded in entries,
// per source and in bytes; a full table evicts its oldest entry rather
// than refuse the newest.
import { describe, expect, test } from "bun:test";
import { PendingTable } from "../../src/quic/pending_table";
import { SourceCounts, sourceKey } from "../../src/quic/sources";

const limits = { entries: 4, perSource: 2, bytesPerEntry: 100, bytesTotal: 250 };

describe("PendingTable", () => {
  test("a full table evicts its oldest entry for a newcomer", () => {
    const t = new PendingTable<string>(limits);
    for (const [i, k] of ["a", "b", "c", "d"].entries()) expect(t.add(k, `src${i}`, k)).toEqual([]);
    expect(t.add("e", "src9", "e")).toEqual(["a"]);
    expect(t.has("a")).toBe(false);
    expect(t.size).toBe(4);
    expect(t.add("f", "src8", "f")).toEqual(["b"]);
  });

  test("a source past its share is refused (the newest of it), and gets its share back when one goes", () => {
    const t = new PendingTable<string>(limits);
    expect(t.add("a", "s", "a")).toEqual([]);
    expect(t.add("b", "s", "b")).toEqual([]);
    expect(t.add("c", "s", "c")).toBeNull();
    expect(t.add("a", "t", "a")).toBeNull(); // a key already in the table
    t.remove("a");
    expect(t.add("c", "s", "c")).toEqual([]);
    // Evicting an entry gives its source's share back too.
    t.add("x", "u", "x");
    t.add("y", "v", "y");
    expect(t.add("z", "w", "z")).toEqual(["b"]);
    expect(t.add("d", "s", "d")).toEqual(["c"]);
  });

  test("bytes: an entry past its own bound is too_large (nothing counted); past the total, the oldest others go", () => {
    const t = new PendingTable<string>(limits);
    t.add("a", "1", "a");
    t.add("b", "2", "b");
    t.add("c", "3", "c");
    expect(t.hold("a", 100)).toEqual([]);
    expect(t.hold("a", 1)).toBe("too_large");
    expect(t.bytes).toBe(100);
    expect(t.hold("b", 100)).toEqual([]);
    // 100 + 100 + 60 > 250: the oldest other (a) goes.
    expect(t.hold("c", 60)).toEqual(["a"]);
    expect(t.bytes).toBe(160);
    t.add("d", "4", "d");
    expect(t.hold("d", 100)).toEqual(["b"]);
    expect(t.bytes).toBe(160);
    expect(t.hold("unknown", 10)).toEqual([]);
    t.remove("c");
    t.remove("d");
    expect(t.bytes).toBe(0);
    expect(t.size).toBe(0);
  });

  test("the entry that grows is never its own victim, even when it is the oldest", () => {
    const t = new PendingTable<string>(limits);
    t.add("x", "1", "x");
    t.add("y", "2", "y");
    t.add("z", "3", "z");
    t.hold("x", 50);
    t.hold("y", 100);
    t.hold("z", 100);
    expect(t.hold("x", 10)).toEqual(["y"]);
    expect(t.bytes).toBe(160);
  });

  test("remove gives back an entry's bytes and its source's place", () => {
    const t = new PendingTable<string>(limits);
    t.add("a", "1", "a");
    t.add("b", "2", "b");
    t.hold("a", 10);
    expect(t.remove("a")).toBe("a");
    expect(t.remove("a")).toBeUndefined();
    expect(t.bytes).toBe(0);
    expect(t.remove("b")).toBe("b");
    expect(t.size).toBe(0);
    expect(t.has("b")).toBe(false);
  });

  test("bounded under churn: 100,000 adds from 10,000 sources hold at most `entries` and `bytesTotal`", () => {
    const t = new PendingTable<number>({
      entries: 1024,
      perSource: 8,
      bytesPerEntry: 24 * 1024,
      bytesTotal: 8 * 1024 * 1024,
    });
    let most = 0;
    let mostBytes = 0;
    for (let i = 0; i < 100_000; i++) {
      const k = String(i);
      if (t.add(k, String(i % 10_000), i) === null) continue;
      const h = t.hold(k, 1500 * (1 + (i % 16)));
      if (h === "too_large") t.remove(k);
      most = Math.max(most, t.size);
      mostBytes = Math.max(mostBytes, t.bytes);
    }
    expect(most).toBeLessThanOrEqual(1024);
    expect(mostBytes).toBeGreaterThan(7 * 1024 * 1024); // the byte bound is the one that binds here
    expect(mostBytes).toBeLessThanOrEqual(8 * 1024 * 1024);
    expect(t.size).toBeGreaterThan(0);
  });
});

describe("sources", () => {
  test("IPv4: the address; IPv6: its /64", () => {
    expect(sourceKey("192.0.2.7")).toBe("192.0.2.7");
    expect(sourceKey("2001:db8:1:2:aaaa::1")).toBe(sourceKey("2001:db8:1:2:ffff::9"));
    expect(sourceKey("2001:db8:1:2::1")).not.toBe(sourceKey("2001:db8:1:3::1"));
  });

  test("SourceCounts takes up to max per source and gives back", () => {
    const c = new SourceCounts(2);
    expect(c.take("a")).toBe(true);
    expect(c.take("a")).toBe(true);
    expect(c.take("a")).toBe(false);
    expect(c.take("b")).toBe(true);
    c.give("a");
    expect(c.count("a")).toBe(1);
    c.give("a");
    c.give("b");
    expect(c.size).toBe(0);
  });
});
