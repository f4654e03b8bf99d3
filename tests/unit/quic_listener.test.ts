// A QUIC listener (src/server/quic_listener.ts) driven with fakes: a fake UDP
// socket and a fake backend-socket factory handed to its constructor, the
// event loop's deadline wheel on a fake clock. No socket, no binary: a
// routed flow, a refused one, pending flows dropped (hello deadline, a full
// table), a client that moves (a path admitted, one refused), idle expiry;
// a rule added at runtime and the drain / lifetime sweep reaching its flows.
import { describe, expect, test } from "bun:test";
import { Firewall } from "../../src/firewall/firewall";
import { DeadlineWheel } from "../../src/relay/deadline_wheel";
import { BackendTable } from "../../src/routing/backend_table";
import { bindRoutes } from "../../src/routing/pool";
import { parseRoutedConfig } from "../../src/routing/route_config";
import { RouteTable } from "../../src/routing/route_table";
import { formatHostPort } from "../../src/net/host_port";
import { NEW_PATH_INTERVAL_MS, PATH_QUIET_MS } from "../../src/quic/migration";
import { newDialer } from "../../src/server/backend_dial";
import { ListenerRuntime, identityOf } from "../../src/server/listener_runtime";
import type { BackendDatagrams, Expiring } from "../../src/server/quic_flow";
import { type DatagramSocket, QuicListener } from "../../src/server/quic_listener";
import { SharedCounters } from "../../src/server/shared_counters";
import { ListenerStats, OUTCOME_INDEX, type Outcome } from "../../src/server/stats";
import { capturingLogger } from "../helpers/fake_sockets";
import { alpnExtension, clientHelloBody, handshake, paddingExtension, sniExtension } from "../helpers/hello_builder";
import { cryptoFrame, padDatagram, sealInitial } from "../helpers/quic";
import { RefusalRing } from "../../src/server/refusal_ring";

/** A fake backend socket: what the listener sent it, and the way to answer. */
interface FakeBackend extends BackendDatagrams {
  addr: string;
  sent: Uint8Array[];
  closed: boolean;
  reply(d: Uint8Array): void;
}

function harness(firewall = "") {
  const toml = `[proxy]\nquic_idle_timeout = "5s"\n${firewall}\n[[listeners]]\naddr = "127.0.0.1:443"\nprotocol = "quic"\n  [[listeners.routes]]\n  hostname = "app.example.com"\n  backend = "10.0.0.1:443"\n  deny = ["192.0.2.99"]\n`;
  const cfg = parseRoutedConfig(toml, "/tmp/quic-listener-test.toml");
  const q = cfg.quicListeners[0]!;
  expect(q.routesFrom).toBeNull();
  let now = Date.now();
  const wheel = new DeadlineWheel<Expiring>(
    100,
    (x) => x.expire(),
    () => now,
  );
  const counters = new SharedCounters(1, 1);
  counters.setMax(0, q.maxConnections);
  const backends = new BackendTable(64, 1);
  const bound = bindRoutes(backends, 0, q.routes, null);
  const table = new RouteTable(bound.routes, bound.defaultRoute, cfg.proxy.pool, backends);
  const id = identityOf(q);
  const rt = new ListenerRuntime({ ...id, table }, counters, null, new ListenerStats(id.label), 1000);
  const fw = cfg.firewall;
  const log = capturingLogger();
  const ctx = {
    proxy: cfg.proxy,
    firewall: new Firewall({ rules: fw, geoipDb: null, rateLimit: fw.rateLimit, rateWindowMs: fw.rateWindowMs }),
    wheel,
    logger: log.logger,
    histograms: false,
    workerId: 0,
    generation: 1,
    backends,
    ja4: true,
    fingerprints: null,
    refusals: new RefusalRing(),
  };
  const toClients: { d: Uint8Array; port: number; ip: string }[] = [];
  const socket: DatagramSocket = { port: 443, send: (d, port, ip) => void toClients.push({ d, port, ip }), close() {} };
  const made: FakeBackend[] = [];
  const connect = async (ip: string, port: number, onData: (d: Uint8Array) => void): Promise<BackendDatagrams> => {
    const b: FakeBackend = {
      addr: formatHostPort(ip, port),
      sent: [],
      closed: false,
      send: (d) => void b.sent.push(d),
      sendMany: (ds) => void b.sent.push(...ds),
      close: () => void (b.closed = true),
      reply: onData,
    };
    made.push(b);
    return b;
  };
  const l = new QuicListener(socket, rt, ctx, { dialer: newDialer(cfg), guardListener: q.index, connect });
  const outcome = (o: Outcome) => rt.stats.closed[OUTCOME_INDEX[o]]!;
  /** Move the fake clock on by `ms` and let the wheel turn. */
  const advance = (ms: number) => {
    now += ms;
    wheel.advance(now);
  };
  return { l, rt, made, toClients, outcome, advance, records: log.records };
}

const settle = () => new Promise((r) => setTimeout(r, 0));

function initial(
  host: string,
  dcidByte: number,
  hello = handshake(clientHelloBody([sniExtension(host), alpnExtension("h3")])),
): Uint8Array {
  const dcid = Uint8Array.from([1, 2, 3, 4, 5, 6, 7, dcidByte]);
  return padDatagram(sealInitial({ dcid, pn: 0, frames: cryptoFrame(0, hello) }), 1250);
}

/** The first of two datagrams of a hello too large for one: a flow left pending. */
function firstHalf(dcidByte: number): Uint8Array {
  const hello = handshake(clientHelloBody([sniExtension("app.example.com"), paddingExtension(2200)]));
  const dcid = Uint8Array.from([9, 9, 9, 9, 9, 9, 9, dcidByte]);
  return padDatagram(sealInitial({ dcid, pn: 0, frames: cryptoFrame(0, hello.subarray(0, 1100)) }), 1250);
}

/** A long header (Handshake, v1) naming the server's connection ID a1a2a3a4, and a short header naming it. */
const SERVER_REPLY = Uint8Array.from([0xe0, 0, 0, 0, 1, 0, 4, 0xa1, 0xa2, 0xa3, 0xa4, 0x01, 0x00]);
const SHORT = Uint8Array.from([0x41, 0xa1, 0xa2, 0xa3, 0xa4, 1, 2, 3, 4, 5]);

describe("a QUIC listener, driven with fakes", () => {
  test("a routed flow: its datagrams reach the route's backend, the replies go back to its address; it takes a place", async () => {
    const h = harness();
    const d = initial("app.example.com", 1);
    h.l.onDatagram(d, 5000, "198.51.100.1");
    await settle();
    expect(h.made.map((b) => b.addr)).toEqual(["10.0.0.1:443"]);
    expect(h.made[0]!.sent).toEqual([d]);
    expect(h.rt.active).toBe(1);
    h.made[0]!.reply(SERVER_REPLY);
    expect(h.toClients).toEqual([{ d: SERVER_REPLY, port: 5000, ip: "198.51.100.1" }]);
    h.l.onDatagram(SHORT, 5000, "198.51.100.1");
    expect(h.made[0]!.sent.length).toBe(2);
  });

  test("a refused flow: no route for its name, or a blocked address; no backend socket, counted under its outcome", async () => {
    const h = harness(`[firewall]\nblocked_ips = ["203.0.113.9"]`);
    h.l.onDatagram(initial("other.example.com", 2), 5000, "198.51.100.2");
    h.l.onDatagram(initial("app.example.com", 3), 5000, "203.0.113.9");
    h.l.onDatagram(new Uint8Array(1300).fill(0x16), 5001, "198.51.100.2");
    await settle();
    expect(h.made).toEqual([]);
    expect([h.outcome("no_route"), h.outcome("blocked_ip"), h.outcome("not_quic")]).toEqual([1, 1, 1]);
    expect(h.rt.stats.accepted).toBe(3);
    expect(h.records().find((r) => r.outcome === "no_route")).toMatchObject({
      listener: "127.0.0.1:443",
      sni: "other.example.com",
    });
    expect(h.l.size).toBe(0);
  });

  test("pending flows: dropped at the hello deadline by the wheel; a full table evicts its oldest for a newcomer", () => {
    const h = harness();
    h.l.onDatagram(firstHalf(1), 6000, "198.51.100.3");
    expect(h.l.size).toBe(1);
    h.advance(2500);
    expect(h.l.size).toBe(1);
    h.advance(1000);
    expect(h.l.size).toBe(0);
    expect(h.outcome("hello_timeout")).toBe(1);
    // 1,024 pending flows (8 per source at most: 128 sources), then one more.
    for (let i = 0; i <= 1024; i++) h.l.onDatagram(firstHalf(i & 0xff), 7000 + (i % 8), `10.1.${i >> 3}.1`);
    expect(h.l.size).toBe(1024);
    expect(h.outcome("over_capacity")).toBe(1);
  });

  test("a client that moves: an allowed address opens a path with a backend socket of its own; a denied one reaches nothing", async () => {
    const h = harness(`[firewall]\nblocked_ips = ["203.0.113.7"]`);
    h.l.onDatagram(initial("app.example.com", 4), 5000, "198.51.100.4");
    await settle();
    h.made[0]!.reply(SERVER_REPLY);
    // Blocked by the firewall, denied by the route: counted, nothing sent.
    h.l.onDatagram(SHORT, 5000, "203.0.113.7");
    h.l.onDatagram(SHORT, 5000, "192.0.2.99");
    expect([h.outcome("blocked_ip"), h.outcome("route_denied")]).toEqual([1, 1]);
    expect(h.made.length).toBe(1);
    h.l.onDatagram(SHORT, 5002, "198.51.100.5");
    await settle();
    expect(h.made.length).toBe(2);
    expect(h.made[1]!.sent).toEqual([SHORT]);
    expect(h.rt.active).toBe(2);
    h.made[1]!.reply(SERVER_REPLY);
    expect(h.toClients.at(-1)).toMatchObject({ port: 5002, ip: "198.51.100.5" });
  });

  test("a flow's paths are timed on the wheel's clock: full, it refuses a new address until its quietest path has been quiet PATH_QUIET_MS", async () => {
    const h = harness();
    h.l.onDatagram(initial("app.example.com", 5), 5000, "198.51.100.6");
    await settle();
    h.made[0]!.reply(SERVER_REPLY);
    // Three more addresses, NEW_PATH_INTERVAL_MS apart: the most a flow has (quic/migration.ts).
    for (const ip of ["198.51.100.11", "198.51.100.12", "198.51.100.13"]) {
      h.l.onDatagram(SHORT, 6000, ip);
      h.advance(NEW_PATH_INTERVAL_MS);
    }
    await settle();
    expect(h.made.length).toBe(4);
    const heard = (ips: string[]) => {
      for (const ip of ips) h.l.onDatagram(SHORT, 6000, ip);
    };
    heard(["198.51.100.11", "198.51.100.12", "198.51.100.13"]);
    h.l.onDatagram(SHORT, 6000, "198.51.100.14");
    expect(h.outcome("over_capacity")).toBe(1);
    // The first goes quiet: PATH_QUIET_MS later a new address takes its place.
    h.advance(PATH_QUIET_MS - 100);
    heard(["198.51.100.12", "198.51.100.13"]);
    h.l.onDatagram(SHORT, 6000, "198.51.100.15");
    expect(h.outcome("over_capacity")).toBe(2);
    h.advance(100);
    h.l.onDatagram(SHORT, 6000, "198.51.100.15");
    await settle();
    expect(h.outcome("over_capacity")).toBe(2);
    expect(h.made.length).toBe(5);
    expect(h.made[1]!.closed).toBe(true);
    expect(h.made[4]!.sent).toEqual([SHORT]);
  });

  test("idle expiry through the wheel: a quiet flow ends ok, its backend socket closed, its place given back, one record", async () => {
    const h = harness();
    h.l.onDatagram(initial("app.example.com", 5), 5000, "198.51.100.6");
    await settle();
    h.advance(3000);
    // A datagram moves the idle deadline on.
    h.l.onDatagram(SHORT, 5000, "198.51.100.6");
    h.advance(3000);
    expect(h.l.size).toBe(1);
    h.advance(2500);
    expect(h.l.size).toBe(0);
    expect(h.made[0]!.closed).toBe(true);
    expect(h.rt.active).toBe(0);
    expect(h.outcome("ok")).toBe(1);
    expect(h.records().filter((r) => r.outcome === "ok")).toEqual([
      expect.objectContaining({ listener: "127.0.0.1:443", sni: "app.example.com" }),
    ]);
  });
});

describe("a rule added at runtime reaches a QUIC listener's flows (quic_established.ts)", () => {
  test("a blocked address's flow ends with every path (closed_by firewall, the rule's outcome); another flow stays", async () => {
    const h = harness();
    h.l.onDatagram(initial("app.example.com", 6), 5000, "198.51.100.7");
    h.l.onDatagram(initial("app.example.com", 7), 5000, "198.51.100.8");
    await settle();
    h.made[0]!.reply(SERVER_REPLY);
    h.l.onDatagram(SHORT, 5003, "198.51.100.9");
    await settle();
    expect(h.made.length).toBe(3);
    expect(h.rt.active).toBe(3);
    const n = h.l.block((ip) => (ip === "198.51.100.7" ? "blocked_ip" : null));
    expect(n).toBe(1);
    expect([h.made[0]!.closed, h.made[1]!.closed, h.made[2]!.closed]).toEqual([true, false, true]);
    expect(h.rt.active).toBe(1);
    expect(h.outcome("blocked_ip")).toBe(1);
    expect(h.records().filter((r) => r.closed_by === "firewall")).toEqual([
      expect.objectContaining({ outcome: "blocked_ip", client: "198.51.100.7:5000" }),
    ]);
    // Nothing more is relayed for it, from its address or its path's.
    const sent = h.made.map((b) => b.sent.length);
    h.l.onDatagram(SHORT, 5000, "198.51.100.7");
    h.l.onDatagram(SHORT, 5003, "198.51.100.9");
    await settle();
    expect(h.made.slice(0, 3).map((b) => b.sent.length)).toEqual(sent);
  });

  test("a ja4 rule ends the flows whose hello it matches; a rule on a path's address closes only that path", async () => {
    const h = harness();
    h.l.onDatagram(initial("app.example.com", 8), 5000, "198.51.100.10");
    await settle();
    h.made[0]!.reply(SERVER_REPLY);
    h.l.onDatagram(SHORT, 5004, "198.51.100.11");
    await settle();
    expect(h.l.block((ip) => (ip === "198.51.100.11" ? "blocked_ip" : null))).toBe(1);
    expect([h.made[0]!.closed, h.made[1]!.closed]).toEqual([false, true]);
    expect(h.rt.active).toBe(1);
    expect(h.l.block((_ip, ja4) => (ja4.startsWith("q") ? "blocked_ja4" : null))).toBe(1);
    expect(h.made[0]!.closed).toBe(true);
    expect(h.records().find((r) => r.closed_by === "firewall")).toMatchObject({ outcome: "blocked_ja4" });
  });

  test("a pending flow (no hello yet) from a blocked address is dropped, counted under the rule's outcome", () => {
    const h = harness();
    h.l.onDatagram(firstHalf(9), 5000, "198.51.100.12");
    expect(h.l.size).toBe(1);
    expect(h.l.block(() => "blocked_cidr")).toBe(1);
    expect(h.l.size).toBe(0);
    expect(h.outcome("blocked_cidr")).toBe(1);
    expect(h.made.length).toBe(0);
  });

  test("DISABLED with reset ends the flows on that backend (outcome backend_disabled), as it resets TCP connections", async () => {
    const h = harness();
    h.l.onDatagram(initial("app.example.com", 11), 5000, "198.51.100.14");
    await settle();
    const [swept] = [...h.l.routedFlows()];
    const ref = swept!.backendSlot!;
    expect(h.l.resetBackend({ slot: ref.slot, gen: ref.gen + 1 })).toBe(0);
    expect(h.made[0]!.closed).toBe(false);
    expect(h.l.resetBackend(ref)).toBe(1);
    expect(h.made[0]!.closed).toBe(true);
    expect(h.rt.active).toBe(0);
    expect(h.outcome("backend_disabled")).toBe(1);
    expect([...h.l.routedFlows()]).toEqual([]);
  });

  test("a routed flow is seen by the drain / lifetime sweep; ended by it, closed_by lifetime, outcome ok", async () => {
    const h = harness();
    h.l.onDatagram(initial("app.example.com", 10), 5000, "198.51.100.13");
    await settle();
    const [swept] = [...h.l.routedFlows()];
    expect(swept!.route?.name).toBe("app.example.com");
    expect(swept!.connectedAt).toBeGreaterThan(0);
    swept!.relay.closeBoth("lifetime");
    expect(swept!.relay.finished).toBe(true);
    expect([...h.l.routedFlows()]).toEqual([]);
    expect(h.made[0]!.closed).toBe(true);
    expect(h.records().find((r) => r.closed_by === "lifetime")).toMatchObject({ outcome: "ok" });
  });
});
