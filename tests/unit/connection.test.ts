// One connection's life (src/server/connection.ts) driven with fakes: a
// fake client socket, a fake backend connector, a deadline wheel on a test
// clock, a capturing logger. Accept → PROXY header → hello (split at every
// offset) → route → backend connect, failure and retry → relay →
// half-close → end; each end's outcome, access record, listener and route
// counts, and the places given back (docs/ARCHITECTURE.md "The life of one
// connection").
import { describe, expect, test } from "bun:test";
import { AddressTable } from "../../src/firewall/address_table";
import { Firewall } from "../../src/firewall/firewall";
import { DeadlineWheel } from "../../src/relay/deadline_wheel";
import { BackendTable } from "../../src/routing/backend_table";
import { bindRoutes } from "../../src/routing/pool";
import { defaultRouteOf } from "../../src/routing/route";
import { parseRoutedConfig } from "../../src/routing/route_config";
import { RouteTable } from "../../src/routing/route_table";
import { acceptVerdict } from "../../src/server/admission";
import { Connection, type ServerContext } from "../../src/server/connection";
import { ListenerRuntime } from "../../src/server/listener_runtime";
import { SharedCounters } from "../../src/server/shared_counters";
import { ListenerStats, OUTCOME_INDEX, type Outcome } from "../../src/server/stats";
import { FakeSocket, capturingLogger, fakeConnector } from "../helpers/fake_sockets";
import { helloFor } from "../helpers/hello_builder";
import { v2Header } from "../helpers/proxy_header_builder";
import { RefusalRing } from "../../src/server/refusal_ring";

const T0 = 1_000_000;

/** A loop's context over one listener read from TOML (routes of app.example.com unless given). */
function harness(
  listener = "",
  routes = `[[listeners.routes]]\nhostname = "app.example.com"\nbackends = ["10.0.0.1:443", "10.0.0.2:443"]\n`,
  proxy = "",
) {
  const cfg = parseRoutedConfig(
    `[proxy]\n${proxy}\n[[listeners]]\naddr = "127.0.0.1:443"\n${listener}\n${routes}`,
    "/tmp/connection-test.toml",
  );
  const l = cfg.listeners[0]!;
  const log = capturingLogger();
  const fake = fakeConnector(log.logger);
  let now = T0;
  const wheel = new DeadlineWheel<Connection>(
    100,
    (c) => c.expire(),
    () => now,
  );
  const counters = new SharedCounters(1, 1);
  counters.setMax(0, l.maxConnections);
  const backends = new BackendTable(64, 1);
  const bound = bindRoutes(backends, 0, l.routes, defaultRouteOf(l));
  const table = new RouteTable(bound.routes, bound.defaultRoute, cfg.proxy.pool, backends);
  const trusted = l.proxyProtocol ? new AddressTable(l.trustedProxies) : null;
  const rt = new ListenerRuntime({ ...l, index: 0, table }, counters, trusted, new ListenerStats(l.addr));
  const fw = cfg.firewall;
  const firewall = new Firewall({ rules: fw, geoipDb: null, rateLimit: fw.rateLimit, rateWindowMs: fw.rateWindowMs });
  let closed = 0;
  const ctx: ServerContext = {
    proxy: cfg.proxy,
    firewall,
    wheel,
    logger: log.logger,
    histograms: true,
    counters,
    workerId: 0,
    generation: 1,
    connections: new Set(),
    connect: fake.connect,
    backends,
    ja4: true,
    fingerprints: null,
    refusals: new RefusalRing(),
    onConnectionClosed: () => void closed++,
  };
  return {
    ctx,
    rt,
    attempts: fake.attempts,
    records: () => log.records().filter((r) => r.msg === "access"),
    closedCalls: () => closed,
    /** Move the test clock and sweep the wheel. */
    advance(ms: number) {
      now += ms;
      wheel.advance(now);
    },
    /** Accept as the event loop's open handler does (event_loop.ts): a place, the accept verdict, then the hello. */
    accept(ip = "192.0.2.10"): { c: Connection; s: FakeSocket<Connection> } {
      const s = new FakeSocket<Connection>(ip);
      const c = new Connection(s.as<Connection>(), rt, ctx, ip);
      s.data = c;
      if (!rt.takePlace(0)) {
        c.refuse("over_capacity");
        return { c, s };
      }
      c.holdsSlot = true;
      const v = acceptVerdict(ctx, rt, ip);
      if (v !== null) c.refuse(v);
      else c.admit();
      return { c, s };
    },
  };
}

type H = ReturnType<typeof harness>;

const closedCount = (h: H, o: Outcome) => h.rt.stats.closed[OUTCOME_INDEX[o]];

/** Nothing held: no connection, no place in the shared counters, no backend or route place, nothing on the wheel. */
function expectAllGivenBack(h: H, c: Connection): void {
  expect(h.ctx.connections.size).toBe(0);
  expect(h.ctx.counters.total()).toBe(0);
  expect(h.ctx.counters.active(0)).toBe(0);
  expect(c.backendSlot).toBeNull();
  expect(c.wheelSlot).toBeNull();
  for (const p of h.rt.table.pools()) for (let i = 0; i < p.size; i++) expect(h.ctx.backends.active(p.ref(i))).toBe(0);
}

describe("a connection through its life", () => {
  test("hello → route → backend → relay both ways → half-close each way → ok, one access record", () => {
    const h = harness();
    const { c, s } = h.accept();
    expect(h.rt.stats.accepted).toBe(1);
    expect(h.ctx.counters.active(0)).toBe(1);
    const hello = helloFor("app.example.com", ["h2"]);
    c.onClientData(hello);
    expect(h.attempts).toHaveLength(1);
    const a = h.attempts[0]!;
    expect(a.backend).toBe("10.0.0.1:443");
    expect(h.ctx.backends.active(c.route!.ref(0))).toBe(1);
    // Bytes the client sends while the connect is pending are held, then replayed after the hello.
    c.onClientData(Buffer.from("early"));
    a.open();
    expect(Buffer.from(a.socket.written)).toEqual(Buffer.concat([hello, Buffer.from("early")]));
    a.data("server hello");
    expect(s.text).toBe("server hello");
    c.onClientData(Buffer.from("request"));
    expect(a.socket.text.endsWith("request")).toBe(true);
    // The client half-closes: a FIN to the backend, the other direction still flows.
    c.onClientEnd();
    expect(a.socket.shut).toBe(true);
    expect(c.relay.finished).toBe(false);
    a.data("response");
    expect(s.text).toBe("server helloresponse");
    a.end();
    expect(s.shut).toBe(true);
    expect(c.relay.finished).toBe(true);
    expect(closedCount(h, "ok")).toBe(1);
    const rs = h.rt.stats.route("app.example.com");
    expect(rs.bytesFromClient).toBe(hello.length + "earlyrequest".length);
    expect(rs.bytesToClient).toBe("server helloresponse".length);
    expect(rs.connect.count).toBe(1);
    expect(h.rt.stats.hello.count).toBe(1);
    const [r, ...more] = h.records();
    expect(more).toHaveLength(0);
    expect(r).toMatchObject({
      outcome: "ok",
      listener: "127.0.0.1:443",
      client: "192.0.2.10:40000",
      sni: "app.example.com",
      alpn: ["h2"],
      route: "app.example.com",
      backend: "10.0.0.1:443",
      tries: 1,
      bytes_in: hello.length + 12,
      bytes_out: 20,
      closed_by: "client",
      peer: "",
    });
    expect(r!.ja4).toMatch(/^t1[23]d/);
    expect(r!.hello_ms).toBeNumber();
    expect(r!.connect_ms).toBeNumber();
    expectAllGivenBack(h, c);
    expect(h.closedCalls()).toBe(1);
  });

  test("the hello split at every offset is read the same; one connect, the whole hello replayed", () => {
    const hello = helloFor("app.example.com");
    for (let cut = 1; cut < hello.length; cut++) {
      const h = harness();
      const { c } = h.accept();
      c.onClientData(hello.subarray(0, cut));
      expect(h.attempts).toHaveLength(0);
      c.onClientData(hello.subarray(cut));
      expect(h.attempts).toHaveLength(1);
      h.attempts[0]!.open();
      expect(Buffer.from(h.attempts[0]!.socket.written)).toEqual(Buffer.from(hello));
      expect(c.sni).toBe("app.example.com");
    }
  });

  test("refusals before the relay: RST, one record each, every place given back", () => {
    const cases: [string, Uint8Array, Outcome][] = [
      ["not TLS", Buffer.from("GET / HTTP/1.1\r\n\r\n"), "not_tls"],
      ["no route", helloFor("other.example.com"), "no_route"],
      ["no name", helloFor(null), "no_sni"],
    ];
    for (const [, bytes, outcome] of cases) {
      const h = harness();
      const { c, s } = h.accept();
      c.onClientData(bytes);
      expect(s.terminated).toBe(true);
      expect(h.attempts).toHaveLength(0);
      expect(closedCount(h, outcome)).toBe(1);
      expect(h.records().map((r) => r.outcome)).toEqual([outcome]);
      expectAllGivenBack(h, c);
    }
  });

  test("the route's allow list and max_connections, the firewall at accept, the listener's max_connections", () => {
    const policy = `[[listeners.routes]]\nhostname = "app.example.com"\nbackend = "10.0.0.1:443"\nallow = ["192.0.2.0/24"]\nmax_connections = 1\n`;
    const h = harness("max_connections = 3", policy);
    const denied = h.accept("198.51.100.1");
    denied.c.onClientData(helloFor("app.example.com"));
    expect(closedCount(h, "route_denied")).toBe(1);
    expect(denied.c.routeName).toBe("app.example.com");
    const first = h.accept();
    first.c.onClientData(helloFor("app.example.com"));
    const second = h.accept();
    second.c.onClientData(helloFor("app.example.com"));
    expect(closedCount(h, "over_capacity")).toBe(1);
    // The listener's limit: 3 places, one held by `first`; a fourth accept while three are open is refused.
    h.accept();
    h.accept();
    const fourth = h.accept();
    expect(fourth.s.terminated).toBe(true);
    expect(closedCount(h, "over_capacity")).toBe(2);
    expect(h.ctx.counters.active(0)).toBe(3);

    const fw = harness();
    fw.ctx.firewall.replaceRules({
      blockedIps: ["192.0.2.66"],
      blockedCidrs: [],
      blockedCountries: [],
      blockedJa4: [],
    });
    const blocked = fw.accept("192.0.2.66");
    expect(blocked.s.terminated).toBe(true);
    expect(fw.records().map((r) => r.outcome)).toEqual(["blocked_ip"]);
    expectAllGivenBack(fw, blocked.c);
  });

  test("a ja4 rule refuses before any routing", () => {
    const h = harness();
    const probe = h.accept();
    probe.c.onClientData(helloFor("app.example.com"));
    const fp = probe.c.ja4;
    h.ctx.firewall.replaceRules({ blockedIps: [], blockedCidrs: [], blockedCountries: [], blockedJa4: [fp] });
    const { c, s } = h.accept();
    c.onClientData(helloFor("app.example.com"));
    expect(s.terminated).toBe(true);
    expect(c.route).toBeNull();
    expect(closedCount(h, "blocked_ja4")).toBe(1);
  });
});

describe("backend tries", () => {
  test("a failed connect counts against the backend and the next one is tried; all failing → connect_failed", () => {
    const h = harness(
      "",
      `[[listeners.routes]]\nhostname = "app.example.com"\nbackends = ["10.0.0.1:443", "10.0.0.2:443"]\nretries = 1\n`,
    );
    const { c, s } = h.accept();
    c.onClientData(helloFor("app.example.com"));
    h.attempts[0]!.fail();
    expect(h.attempts.map((a) => a.backend)).toEqual(["10.0.0.1:443", "10.0.0.2:443"]);
    // A late open of the first try is closed, never used.
    h.attempts[0]!.open();
    expect(h.attempts[0]!.socket.terminated).toBe(true);
    h.attempts[1]!.fail();
    expect(s.terminated).toBe(true);
    expect(h.records()).toMatchObject([{ outcome: "connect_failed", tries: 2 }]);
    expectAllGivenBack(h, c);
  });

  test("connect_timeout on the wheel moves on to the next backend", () => {
    const h = harness(
      "",
      `[[listeners.routes]]\nhostname = "app.example.com"\nbackends = ["10.0.0.1:443", "10.0.0.2:443"]\nretries = 1\nconnect_timeout = "1s"\n`,
    );
    const { c } = h.accept();
    c.onClientData(helloFor("app.example.com"));
    h.advance(900);
    expect(h.attempts).toHaveLength(1);
    h.advance(400);
    expect(h.attempts).toHaveLength(2);
    h.attempts[1]!.open();
    h.attempts[1]!.data("x");
    expect(c.tries).toBe(2);
    c.forceClose("shutdown");
    expect(h.records()).toMatchObject([{ outcome: "shutdown", backend: "10.0.0.2:443", tries: 2 }]);
    expectAllGivenBack(h, c);
  });

  test("a backend that closes before its first byte, having had only the hello: the next gets the same hello", () => {
    const h = harness(
      "",
      `[[listeners.routes]]\nhostname = "app.example.com"\nbackends = ["10.0.0.1:443", "10.0.0.2:443"]\nretries = 1\n`,
    );
    const { c, s } = h.accept();
    const hello = helloFor("app.example.com");
    c.onClientData(hello);
    h.attempts[0]!.open();
    h.attempts[0]!.end();
    expect(h.attempts[0]!.socket.terminated).toBe(true);
    expect(h.attempts).toHaveLength(2);
    h.attempts[1]!.open();
    expect(Buffer.from(h.attempts[1]!.socket.written)).toEqual(Buffer.from(hello));
    h.attempts[1]!.data("answer");
    expect(s.text).toBe("answer");
    expect(c.bytesFromClient).toBe(hello.length);
  });

  test("client data past the hello never goes to a second backend: the client is reset (backend_closed)", () => {
    const h = harness(
      "",
      `[[listeners.routes]]\nhostname = "app.example.com"\nbackends = ["10.0.0.1:443", "10.0.0.2:443"]\nretries = 1\n`,
    );
    const { c, s } = h.accept();
    c.onClientData(helloFor("app.example.com"));
    h.attempts[0]!.open();
    c.onClientData(Buffer.from("request"));
    h.attempts[0]!.close();
    expect(h.attempts).toHaveLength(1);
    expect(s.terminated).toBe(true);
    expect(h.records()).toMatchObject([{ outcome: "backend_closed", closed_by: "backend" }]);
    expectAllGivenBack(h, c);
  });

  test("no backend eligible → no_backend", () => {
    const h = harness();
    for (const p of h.rt.table.pools()) for (let i = 0; i < p.size; i++) h.ctx.backends.setState(p.ref(i), "disabled");
    const { c } = h.accept();
    c.onClientData(helloFor("app.example.com"));
    expect(h.records().map((r) => r.outcome)).toEqual(["no_backend"]);
    expectAllGivenBack(h, c);
  });
});

describe("the relay's backpressure, timeouts and resets", () => {
  test("a slow client pauses the backend until it drains; bytes arrive whole and in order", () => {
    const h = harness();
    const { c, s } = h.accept();
    c.onClientData(helloFor("app.example.com"));
    const a = h.attempts[0]!;
    a.open();
    s.room = 3;
    a.data("abcdef");
    expect(a.socket.paused).toBe(true);
    a.data("gh");
    s.room = Number.POSITIVE_INFINITY;
    c.relay.clientDrain();
    expect(s.text).toBe("abcdefgh");
    expect(a.socket.paused).toBe(false);
  });

  test("hello_timeout, idle_timeout, a client reset while relaying", () => {
    const h = harness("", undefined, `hello_timeout = "2s"\nidle_timeout = "10s"`);
    const slow = h.accept();
    slow.c.onClientData(helloFor("app.example.com").subarray(0, 10));
    h.advance(2300);
    expect(slow.s.terminated).toBe(true);
    const idle = h.accept();
    idle.c.onClientData(helloFor("app.example.com"));
    h.attempts[0]!.open();
    h.advance(5000);
    h.attempts[0]!.data("x");
    h.advance(9000);
    expect(idle.c.relay.finished).toBe(false);
    h.advance(1300);
    expect(idle.c.relay.finished).toBe(true);
    expect(idle.s.ended).toBe(true);
    const reset = h.accept();
    reset.c.onClientData(helloFor("app.example.com"));
    h.attempts[1]!.open();
    reset.c.onClientClose(new Error("ECONNRESET"));
    expect(h.attempts[1]!.socket.terminated).toBe(true);
    expect(h.records().map((r) => [r.outcome, r.closed_by])).toEqual([
      ["hello_timeout", "proxy"],
      ["idle_timeout", "proxy"],
      ["ok", "client"],
    ]);
    expectAllGivenBack(h, reset.c);
  });

  test("a backend disabled with reset; an internal error; a client gone before the hello", () => {
    const h = harness();
    const a = h.accept();
    a.c.onClientData(helloFor("app.example.com"));
    h.attempts[0]!.open();
    expect(a.c.backendSlot).toEqual(a.c.route!.ref(0));
    a.c.forceClose("backend_disabled");
    expect(a.s.terminated).toBe(true);
    const b = h.accept();
    b.c.onClientData(helloFor("app.example.com").subarray(0, 5));
    b.c.forceClose("internal_error");
    const gone = h.accept();
    gone.c.onClientEnd();
    expect(h.records().map((r) => r.outcome)).toEqual(["backend_disabled", "internal_error", "client_closed"]);
    expectAllGivenBack(h, gone.c);
  });
});

describe("a proxy_protocol listener", () => {
  const pp = `proxy_protocol = true\ntrusted_proxies = ["10.1.0.0/16"]`;

  test("the header's source is the client: firewalled, logged, sent on; the balancer is the peer", () => {
    const h = harness(
      pp,
      `[[listeners.routes]]\nhostname = "app.example.com"\nbackend = "10.0.0.1:443"\nsend_proxy_protocol = "v1"\n`,
    );
    const header = v2Header({ family: "inet", source: ["203.0.113.7", 51000], destination: ["198.51.100.9", 443] });
    const hello = helloFor("app.example.com");
    const bytes = Buffer.concat([header, hello]);
    // Split at every offset: the header and the hello each read whole.
    for (let cut = 1; cut < bytes.length; cut += 7) {
      const { c } = h.accept("10.1.2.3");
      c.onClientData(bytes.subarray(0, cut));
      c.onClientData(bytes.subarray(cut));
      expect(c.clientIp).toBe("203.0.113.7");
      const a = h.attempts.at(-1)!;
      a.open();
      expect(a.socket.text.startsWith("PROXY TCP4 203.0.113.7 198.51.100.9 51000 443\r\n")).toBe(true);
      c.forceClose("shutdown");
    }
    const r = h.records()[0]!;
    expect(r).toMatchObject({ client: "203.0.113.7:51000", peer: "10.1.2.3:40000", outcome: "shutdown" });
    h.ctx.firewall.replaceRules({
      blockedIps: ["203.0.113.7"],
      blockedCidrs: [],
      blockedCountries: [],
      blockedJa4: [],
    });
    const { c, s } = h.accept("10.1.2.3");
    c.onClientData(bytes);
    expect(s.terminated).toBe(true);
    expect(closedCount(h, "blocked_ip")).toBe(1);
    expectAllGivenBack(h, c);
  });

  test("an untrusted peer is refused at accept; a bad header is refused", () => {
    const h = harness(pp);
    const u = h.accept("192.0.2.1");
    expect(u.s.terminated).toBe(true);
    const bad = h.accept("10.1.0.1");
    bad.c.onClientData(Buffer.from("PROXY NONSENSE\r\n"));
    expect(bad.s.terminated).toBe(true);
    expect(h.records().map((r) => r.outcome)).toEqual(["untrusted_proxy", "bad_proxy_header"]);
    expectAllGivenBack(h, bad.c);
  });
});
