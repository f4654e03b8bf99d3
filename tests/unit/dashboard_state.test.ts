// The dashboard's data: a loop's recent refusals (src/server/refusal_ring.ts)
// and their merge, the charts' history (src/dashboard/state.ts) from the
// snapshots' totals, the blocked counts by rule kind.
import { describe, expect, test } from "bun:test";
import { History, type Totals, blockedOf, totalsOf } from "../../src/dashboard/state";
import { RefusalRing, mergeRefusals } from "../../src/server/refusal_ring";
import type { Snapshot } from "../../src/server/snapshot";
import { OUTCOMES, OUTCOME_INDEX } from "../../src/server/stats";

describe("RefusalRing", () => {
  test("newest first; past its size the oldest is overwritten; list() hands out copies", () => {
    const r = new RefusalRing(3);
    expect(r.list()).toEqual([]);
    for (let i = 1; i <= 5; i++) r.push(i, "l", `192.0.2.${i}`, "a.example.com", "", "blocked_ip");
    const l = r.list();
    expect(l.map((x) => x.time)).toEqual([5, 4, 3]);
    expect(l[0]).toEqual({
      time: 5,
      listener: "l",
      client: "192.0.2.5",
      sni: "a.example.com",
      ja4: "",
      outcome: "blocked_ip",
    });
    l[0]!.client = "changed";
    expect(r.list()[0]!.client).toBe("192.0.2.5");
  });

  test("the loops' lists merged newest first, at most the limit", () => {
    const a = new RefusalRing(50);
    const b = new RefusalRing(50);
    for (let i = 0; i < 40; i++) {
      a.push(2 * i, "a", "ip", "", "", "no_route");
      b.push(2 * i + 1, "b", "ip", "", "", "no_route");
    }
    const m = mergeRefusals([a.list(), b.list()]);
    expect(m).toHaveLength(50);
    expect(m[0]!.time).toBe(79);
    expect(m.every((x, i) => i === 0 || m[i - 1]!.time >= x.time)).toBe(true);
  });
});

function snapshot(
  listeners: { active: number; accepted: number; closed: Partial<Record<string, number>>; bytes: [number, number] }[],
): Snapshot {
  return {
    startedAt: 0,
    listeners: listeners.map((l, i) => ({
      addr: `l${i}`,
      label: `l${i}`,
      name: `l${i}`,
      protocol: "tcp",
      accepted: l.accepted,
      closed: OUTCOMES.map((o) => l.closed[o] ?? 0),
      active: l.active,
      maxConnections: 0,
      routes: 0,
      hello: { bounds: [], counts: [], sum: 0, count: 0 },
      duration: [],
      routeStats: [
        {
          label: "r",
          bytesFromClient: l.bytes[0],
          bytesToClient: l.bytes[1],
          connect: { bounds: [], counts: [], sum: 0, count: 0 },
        },
      ],
      proxyProtocol: false,
      trustedProxies: [],
    })),
    connectionCap: 0,
    draining: false,
    rules: { ip: 0, cidr: 0, country: 0, ja4: 0 },
    rateTracked: 0,
    geoipBuildEpoch: null,
    workers: [],
    dns: { queries: 0, failures: 0, hits: 0, stale: 0 },
  };
}

describe("the charts' history", () => {
  test("totals: open, accepted, bytes each way and every outcome but ok, over every listener", () => {
    const s = snapshot([
      { active: 3, accepted: 10, closed: { ok: 5, blocked_ip: 2 }, bytes: [100, 1000] },
      { active: 2, accepted: 4, closed: { no_route: 1, blocked_ja4: 1 }, bytes: [50, 500] },
    ]);
    expect(totalsOf(s, 7000)).toEqual({ at: 7000, open: 5, accepted: 14, bytesIn: 150, bytesOut: 1500, refused: 4 });
    expect(blockedOf(s)).toEqual({ ip: 2, cidr: 0, country: 0, ja4: 1 });
    expect(OUTCOME_INDEX.ok).toBe(0);
  });

  test("one point a sample after the first: rates per second; a counter that went back counts 0; bounded", () => {
    const h = new History(3);
    const t = (at: number, n: number): Totals => ({
      at,
      open: n,
      accepted: n * 10,
      bytesIn: n * 100,
      bytesOut: n * 1000,
      refused: n,
    });
    h.add(t(1000, 1));
    expect(h.t).toEqual([]);
    h.add(t(2000, 2));
    h.add(t(4000, 4));
    expect(h.toJSON()).toEqual({
      t: [2, 4],
      open: [2, 4],
      newPerSec: [10, 10],
      bytesInPerSec: [100, 100],
      bytesOutPerSec: [1000, 1000],
      refusedPerSec: [1, 1],
    });
    h.add(t(5000, 1));
    expect(h.newPerSec.at(-1)).toBe(0);
    h.add(t(6000, 2));
    expect(h.t).toEqual([4, 5, 6]);
  });
});
