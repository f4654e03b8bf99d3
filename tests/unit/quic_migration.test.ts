// How often a QUIC flow opens a path for a new client address, and how
// many it holds (src/quic/migration.ts).
import { describe, expect, test } from "bun:test";
import { MAX_EXTRA_PATHS, NEW_PATH_INTERVAL_MS, PATH_QUIET_MS, newPathDecision } from "../../src/quic/migration";

describe("newPathDecision", () => {
  test("a flow opens its first paths, at most one per NEW_PATH_INTERVAL_MS", () => {
    expect(newPathDecision([], Number.NEGATIVE_INFINITY, 0)).toEqual({ kind: "open" });
    expect(newPathDecision([0], 0, NEW_PATH_INTERVAL_MS - 1)).toEqual({ kind: "refuse", why: "too_soon" });
    expect(newPathDecision([0], 0, NEW_PATH_INTERVAL_MS)).toEqual({ kind: "open" });
  });

  test("a full flow gives up its quietest path if its client has been quiet PATH_QUIET_MS; otherwise refuses", () => {
    expect(MAX_EXTRA_PATHS).toBe(3);
    const now = 100_000;
    expect(newPathDecision([now - 50, now - 10, now - 20], now - 5000, now)).toEqual({ kind: "refuse", why: "full" });
    expect(newPathDecision([now - 50, now - PATH_QUIET_MS - 1, now - 20], now - 5000, now)).toEqual({
      kind: "replace",
      index: 1,
    });
    expect(newPathDecision([now - PATH_QUIET_MS, now - 10, now - 20], now - 5000, now)).toEqual({
      kind: "replace",
      index: 0,
    });
  });
});
