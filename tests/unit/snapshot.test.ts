// Summing the loops' counters: the control plane adds every loop's report,
// and what dead incarnations of a slot counted before they died.
import { expect, test } from "bun:test";
import { ListenerStats, OUTCOMES } from "../../src/server/stats";
import {
  type ListenerSnapshot,
  type Snapshot,
  type SlotCounts,
  loopSnapshot,
  retire,
  sharedListener,
  sumListeners,
  sumLoops,
} from "../../src/server/snapshot";

function listener(accepted: number, ok: number, bytes: number, route = "a.example.com"): ListenerSnapshot {
  const closed = OUTCOMES.map((o) => (o === "ok" ? ok : 0));
  const h = () => ({ bounds: [0.1, 1], counts: [ok, 0], sum: ok * 0.05, count: ok });
  return {
    addr: "127.0.0.1:443",
    label: "127.0.0.1:443",
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

const snap = (l: ListenerSnapshot, queries = 0): Snapshot => ({
  startedAt: 0,
  listeners: [l],
  connectionCap: 0,
  draining: false,
  rules: { ip: 0, cidr: 0, country: 0, ja4: 0 },
  rateTracked: 0,
  geoipBuildEpoch: null,
  workers: [],
  dns: { queries, failures: 1, hits: 2, stale: 3 },
});
const base = (): ListenerSnapshot[] => [
  {
    ...listener(0, 0, 0),
    closed: [],
    hello: { bounds: [], counts: [], sum: 0, count: 0 },
    duration: [],
    routeStats: [],
    active: 7,
  },
];

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

test("the resolver counts: every loop's and every dead incarnation's, summed", () => {
  const slot: SlotCounts = { last: snap(listener(1, 1, 1), 10), retired: null };
  retire(slot);
  slot.last = snap(listener(1, 1, 1), 20);
  const other: SlotCounts = { last: snap(listener(1, 1, 1), 5), retired: null };
  const { listeners, dns } = sumLoops(base(), [slot, other, { last: null, retired: null }]);
  expect(dns).toEqual({ queries: 35, failures: 3, hits: 6, stale: 9 });
  expect(listeners[0]!.accepted).toBe(3);
});

test("no report yet: the base as it is", () => {
  const [l] = sumListeners(base(), [{ last: null, retired: null }]);
  expect(l!.accepted).toBe(0);
  expect(l!.active).toBe(7);
});

test("a QUIC listener's entry follows the TCP ones: summed by position, its name, protocol and active count from the base", () => {
  const quic = (accepted: number): ListenerSnapshot => ({
    ...listener(accepted, accepted, 0),
    addr: "127.0.0.1:443/quic",
    protocol: "quic",
  });
  const two = (tcp: number, q: number): Snapshot => ({
    ...snap(listener(tcp, tcp, 0)),
    listeners: [listener(tcp, tcp, 0), quic(q)],
  });
  const b = [...base(), { ...base()[0]!, addr: "127.0.0.1:443/quic", protocol: "quic" as const, active: 3 }];
  // Only the first loop binds QUIC listeners; the others report zeros in the same place.
  const [t, q] = sumListeners(b, [
    { last: two(4, 6), retired: null },
    { last: two(5, 0), retired: null },
  ]);
  expect([t!.addr, t!.protocol, t!.accepted, t!.active]).toEqual(["127.0.0.1:443", "tcp", 9, 7]);
  expect([q!.addr, q!.name, q!.protocol, q!.accepted, q!.active]).toEqual([
    "127.0.0.1:443/quic",
    "127.0.0.1:443",
    "quic",
    6,
    3,
  ]);
  expect(q!.closed[OUTCOMES.indexOf("ok")]).toBe(6);
});

test("one loop's snapshot: a route's bytes include what its open connections have moved so far; one worker entry", () => {
  const stats = new ListenerStats("web");
  const route = stats.route("a.example.com");
  route.bytesFromClient = 100;
  route.bytesToClient = 200;
  stats.accepted = 5;
  const l = {
    addr: "127.0.0.1:443",
    name: "web",
    protocol: "tcp" as const,
    maxConnections: 10,
    table: { size: 1 },
    proxyProtocol: false,
    trustedProxies: [],
    stats,
    active: 2,
  };
  const open = [
    { liveRouteStats: route, bytesFromClient: 1, bytesFromBackend: 2 },
    { liveRouteStats: route, bytesFromClient: 10, bytesFromBackend: 20 },
    { liveRouteStats: null, bytesFromClient: 1000, bytesFromBackend: 1000 },
  ];
  const fields = {
    startedAt: 1,
    connectionCap: 50,
    draining: false,
    rules: { ip: 1, cidr: 0, country: 0, ja4: 0 },
    rateTracked: 3,
    geoipBuildEpoch: null,
    dns: { queries: 4, failures: 0, hits: 9, stale: 0 },
  };
  const s = loopSnapshot([l], open, { ...fields, worker: { id: 4, active: 2 } });
  expect(s).toMatchObject({ ...fields, workers: [{ id: 4, thread: 0, active: 2, accepted: 5, restarts: 0 }] });
  expect(s.listeners[0]).toMatchObject({
    addr: "127.0.0.1:443",
    label: "web",
    name: "web",
    accepted: 5,
    active: 2,
    maxConnections: 10,
  });
  expect(s.listeners[0]!.routeStats.find((r) => r.label === "a.example.com")).toMatchObject({
    bytesFromClient: 111,
    bytesToClient: 222,
  });
  // The stats themselves are not touched: the next snapshot adds the live bytes afresh.
  expect([route.bytesFromClient, route.bytesToClient]).toEqual([100, 200]);
});

test("the control plane's base entry: the process's active count and limit; PROXY settings for TCP only", () => {
  const l = { name: "web", table: { size: 3 }, proxyProtocol: true, trustedProxies: ["10.0.0.0/8"] };
  const counters = { active: (i: number) => i * 10, max: (i: number) => i * 100 };
  const tcp = sharedListener(l, { index: 1, addr: "127.0.0.1:443", label: "web", protocol: "tcp" }, counters);
  expect(tcp).toMatchObject({
    addr: "127.0.0.1:443",
    label: "web",
    name: "web",
    protocol: "tcp",
    active: 10,
    maxConnections: 100,
    routes: 3,
    proxyProtocol: true,
    trustedProxies: ["10.0.0.0/8"],
  });
  const quic = sharedListener(
    l,
    { index: 2, addr: "127.0.0.1:443/quic", label: "web/quic", protocol: "quic" },
    counters,
  );
  expect(quic).toMatchObject({
    label: "web/quic",
    protocol: "quic",
    active: 20,
    maxConnections: 200,
    proxyProtocol: false,
    trustedProxies: [],
  });
});
