// Summing the loops' counters: the control plane adds every loop's report,
// and what dead incarnations of a slot counted before they died.
import { expect, test } from "bun:test";
import { OUTCOMES } from "../../src/server/stats";
import { type ListenerSnapshot, type Snapshot, type SlotCounts, retire, sumListeners } from "../../src/server/snapshot";

function listener(accepted: number, ok: number, bytes: number, route = "a.example.com"): ListenerSnapshot {
  const closed = OUTCOMES.map((o) => (o === "ok" ? ok : 0));
  const h = () => ({ bounds: [0.1, 1], counts: [ok, 0], sum: ok * 0.05, count: ok });
  return {
    addr: "127.0.0.1:443",
    name: "127.0.0.1:443",
    protocol: "tcp",
    accepted,
    closed,
    active: 0,
    maxConnections: 0,
    routes: 1,
    hello: h(),
    duration: OUTCOMES.map(() => h()),
    routeStats: [{ label: route, bytesFromClient: bytes, bytesToClient: 2 * bytes, connect: h() }],
    proxyProtocol: false,
    trustedProxies: [],
  };
}

const snap = (l: ListenerSnapshot): Snapshot => ({
  startedAt: 0,
  listeners: [l],
  connectionCap: 0,
  draining: false,
  rules: { ip: 0, cidr: 0, country: 0, ja4: 0 },
  rateTracked: 0,
  geoipBuildEpoch: null,
  workers: [],
});
const base = (): ListenerSnapshot[] => [{ ...listener(0, 0, 0), closed: [], hello: { bounds: [], counts: [], sum: 0, count: 0 }, duration: [], routeStats: [], active: 7 }];

test("two loops' reports add up, route by route; the shared fields of the base stay", () => {
  const slots: SlotCounts[] = [
    { last: snap(listener(10, 9, 100)), retired: null },
    { last: snap(listener(5, 4, 50, "b.example.com")), retired: null },
  ];
  const [l] = sumListeners(base(), slots);
  expect(l!.accepted).toBe(15);
  expect(l!.closed[OUTCOMES.indexOf("ok")]).toBe(13);
  expect(l!.active).toBe(7);
  expect(l!.hello.count).toBe(13);
  expect(l!.routeStats.map((r) => [r.label, r.bytesFromClient, r.bytesToClient])).toEqual([
    ["a.example.com", 100, 200],
    ["b.example.com", 50, 100],
  ]);
});

test("a dead incarnation's counts are kept (retired) and added to its successor's", () => {
  const slot: SlotCounts = { last: snap(listener(10, 10, 100)), retired: null };
  retire(slot);
  expect(slot.last).toBeNull();
  slot.last = snap(listener(3, 2, 30));
  retire(slot);
  slot.last = snap(listener(1, 1, 10));
  const [l] = sumListeners(base(), [slot]);
  expect(l!.accepted).toBe(14);
  expect(l!.closed[OUTCOMES.indexOf("ok")]).toBe(13);
  expect(l!.routeStats[0]!.bytesFromClient).toBe(140);
});

test("no report yet: the base as it is", () => {
  const [l] = sumListeners(base(), [{ last: null, retired: null }]);
  expect(l!.accepted).toBe(0);
  expect(l!.active).toBe(7);
});

test("a QUIC listener's entry follows the TCP ones: summed by position, its name, protocol and active count from the base", () => {
  const quic = (accepted: number): ListenerSnapshot => ({ ...listener(accepted, accepted, 0), addr: "127.0.0.1:443/quic", protocol: "quic" });
  const two = (tcp: number, q: number): Snapshot => ({ ...snap(listener(tcp, tcp, 0)), listeners: [listener(tcp, tcp, 0), quic(q)] });
  const b = [...base(), { ...base()[0]!, addr: "127.0.0.1:443/quic", protocol: "quic" as const, active: 3 }];
  // Only the first loop binds QUIC listeners; the others report zeros in the same place.
  const [t, q] = sumListeners(b, [
    { last: two(4, 6), retired: null },
    { last: two(5, 0), retired: null },
  ]);
  expect([t!.addr, t!.protocol, t!.accepted, t!.active]).toEqual(["127.0.0.1:443", "tcp", 9, 7]);
  expect([q!.addr, q!.name, q!.protocol, q!.accepted, q!.active]).toEqual(["127.0.0.1:443/quic", "127.0.0.1:443", "quic", 6, 3]);
  expect(q!.closed[OUTCOMES.indexOf("ok")]).toBe(6);
});
