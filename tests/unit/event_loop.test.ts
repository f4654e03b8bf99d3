// One event loop (src/server/event_loop.ts) built without binding: the
// control plane's commands and queries (src/server/loop_protocol.ts)
// applied to it, connections accepted through its own socket handlers with
// fake sockets and a fake backend connector, and its drain
// (docs/ARCHITECTURE.md "One control plane, N event loops").
import { describe, expect, test } from "bun:test";
import { BackendTable } from "../../src/routing/backend_table";
import { bindRoutes } from "../../src/routing/pool";
import { type Route, defaultRouteOf } from "../../src/routing/route";
import { parseRoutedConfig } from "../../src/routing/route_config";
import type { Connection } from "../../src/server/connection";
import { EventLoop } from "../../src/server/event_loop";
import type { LoopInit } from "../../src/server/loop_protocol";
import { SharedCounters } from "../../src/server/shared_counters";
import { OUTCOME_INDEX } from "../../src/server/stats";
import { FakeSocket, capturingLogger, fakeConnector } from "../helpers/fake_sockets";
import { helloFor } from "../helpers/hello_builder";
import { route } from "../helpers/routes";

const SLOTS = 64;

/** A loop over two listeners, as the control plane would build it (loop_init.ts loopInitOf), never started. */
function loop(extra = "") {
  const toml = `${extra}
[[listeners]]
addr = "127.0.0.1:8443"
name = "public"
max_connections = 2
  [[listeners.routes]]
  hostname = "app.example.com"
  backend = "10.0.0.1:443"
[[listeners]]
addr = "127.0.0.1:9443"
`;
  const config = parseRoutedConfig(toml, "/tmp/event-loop-test.toml");
  const counters = new SharedCounters(config.listeners.length + config.quicListeners.length, 1);
  for (const [i, l] of config.listeners.entries()) counters.setMax(i, l.maxConnections);
  /** The control plane's handle on the backend table: it binds routes to slots. */
  const backends = new BackendTable(SLOTS, 1);
  const tables = config.listeners.map((l, i) => bindRoutes(backends, i, l.routes, defaultRouteOf(l)));
  const init: LoopInit = {
    id: 0,
    workers: 1,
    config,
    counters: counters.buffer,
    backends: backends.buffer,
    backendSlots: SLOTS,
    tables,
    rateBuffer: null,
    geoipData: null,
    histograms: true,
    connectionCap: 0,
    generation: 1,
    takeover: false,
  };
  const log = capturingLogger();
  const fake = fakeConnector(log.logger);
  const el = new EventLoop(init, log.logger, fake.connect);
  const handlers = el.listeners.map((rt) => el.clientHandlers(rt));
  return {
    el,
    backends,
    counters,
    attempts: fake.attempts,
    records: () => log.records().filter((r) => r.msg === "access"),
    /** A client accepted on listener `i` by the loop's own open handler. */
    accept(i = 0, ip = "192.0.2.10"): FakeSocket<Connection> {
      const s = new FakeSocket<Connection>(ip);
      void handlers[i]!.open!(s.as<Connection>());
      return s;
    },
    send(s: FakeSocket<Connection>, bytes: Uint8Array): void {
      void handlers[0]!.data!(s.as<Connection>(), bytes as Buffer);
    },
    bind(i: number, routes: Route[]) {
      return bindRoutes(backends, i, routes, null).routes;
    },
  };
}

describe("commands", () => {
  test("routes: the listener's table is swapped; a connection already routed keeps its route", () => {
    const l = loop();
    const s = l.accept();
    l.send(s, helloFor("app.example.com"));
    l.attempts[0]!.open();
    expect(
      l.el.apply({ type: "routes", listener: 0, routes: l.bind(0, [route("new.example.com", "10.0.0.9:443")]) }),
    ).toBe(0);
    expect(l.el.listeners[0]!.table.routes().map((r) => r.hostname)).toEqual(["new.example.com"]);
    // The other listener is untouched; a new connection sees the new table.
    expect(l.el.listeners[1]!.table.size).toBe(0);
    const t = l.accept();
    l.send(t, helloFor("new.example.com"));
    expect(l.attempts.map((a) => a.backend)).toEqual(["10.0.0.1:443", "10.0.0.9:443"]);
    const old = s.data;
    expect(old.routeName).toBe("app.example.com");
    expect(old.relay.finished).toBe(false);
    // The new route has its metrics label from the command on.
    const snap = l.el.answer({ type: "snapshot" });
    expect(snap.listeners[0]!.routeStats.map((r) => r.label)).toContain("new.example.com");
  });

  test("rules: the next accept is judged by the new rules", () => {
    const l = loop();
    expect(
      l.el.apply({
        type: "rules",
        rules: { blockedIps: ["192.0.2.66"], blockedCidrs: ["198.51.100.0/24"], blockedCountries: [], blockedJa4: [] },
        passed: null,
      }),
    ).toBe(0);
    expect(l.accept(0, "192.0.2.66").terminated).toBe(true);
    expect(l.accept(0, "198.51.100.7").terminated).toBe(true);
    expect(l.accept(0, "192.0.2.67").terminated).toBe(false);
    expect(l.records().map((r) => r.outcome)).toEqual(["blocked_ip", "blocked_cidr"]);
    expect(l.el.answer({ type: "snapshot" }).rules).toEqual({ ip: 1, cidr: 1, country: 0, ja4: 0 });
  });

  test("reset-backend: the connections on that backend's slot (and generation) are reset, and counted", () => {
    const l = loop();
    const a = l.accept();
    const b = l.accept();
    for (const s of [a, b]) l.send(s, helloFor("app.example.com"));
    l.attempts[0]!.open();
    const ref = a.data.backendSlot!;
    expect(l.el.apply({ type: "reset-backend", slot: ref.slot, gen: ref.gen + 1 })).toBe(0);
    // b is still connecting: it holds the backend too.
    expect(l.el.apply({ type: "reset-backend", slot: ref.slot, gen: ref.gen })).toBe(2);
    expect(a.terminated && b.terminated).toBe(true);
    expect(l.records().map((r) => r.outcome)).toEqual(["backend_disabled", "backend_disabled"]);
    expect(l.backends.active(ref)).toBe(0);
    expect(l.counters.total()).toBe(0);
  });

  test("geoip without a database configured is a no-op", () => {
    const l = loop();
    expect(l.el.apply({ type: "geoip", data: new Uint8Array(8) })).toBe(0);
    expect(l.el.answer({ type: "snapshot" }).geoipBuildEpoch).toBeNull();
  });
});

describe("queries and accept", () => {
  test("snapshot: per listener accepted, outcomes, open connections and the limit; the worker's count", () => {
    const l = loop();
    const s = l.accept();
    l.accept();
    const third = l.accept();
    expect(third.terminated).toBe(true);
    l.accept(1);
    const snap = l.el.answer({ type: "snapshot" });
    const [pub, other] = snap.listeners;
    expect(pub).toMatchObject({
      addr: "127.0.0.1:8443",
      name: "public",
      protocol: "tcp",
      accepted: 3,
      active: 2,
      maxConnections: 2,
      routes: 1,
    });
    expect(pub!.closed[OUTCOME_INDEX.over_capacity]).toBe(1);
    expect(other).toMatchObject({ addr: "127.0.0.1:9443", accepted: 1, active: 1 });
    expect(snap.workers).toEqual([expect.objectContaining({ id: 0, active: 3 })]);
    // Live bytes of an open connection are in its route's counters at snapshot time.
    l.send(s, helloFor("app.example.com"));
    l.attempts[0]!.open();
    l.attempts[0]!.data("12345");
    const rs = l.el.answer({ type: "snapshot" }).listeners[0]!.routeStats.find((r) => r.label === "app.example.com")!;
    expect(rs.bytesToClient).toBe(5);
  });

  test("fingerprints: empty without a table; with one, each hello counted", () => {
    expect(loop().el.answer({ type: "fingerprints" }).keys).toEqual([]);
    const l = loop("[fingerprints]\ntop = 10\n");
    for (let i = 0; i < 3; i++) l.send(l.accept(1), helloFor("app.example.com"));
    const report = l.el.answer({ type: "fingerprints" });
    expect(report.keys).toHaveLength(1);
    expect(report.count[0]).toBe(3);
  });

  test("a client gone before its address could be read: client_closed, no place taken", () => {
    const l = loop();
    const s = l.accept(0, "");
    expect(s.terminated).toBe(true);
    expect(l.records()).toMatchObject([{ outcome: "client_closed", closed_by: "client" }]);
    expect(l.counters.total()).toBe(0);
  });
});

describe("drain", () => {
  test("shutdown: new accepts refused; done once the last connection ends", async () => {
    const l = loop();
    const s = l.accept();
    l.send(s, helloFor("app.example.com"));
    l.attempts[0]!.open();
    let done = false;
    void l.el.done.then(() => (done = true));
    l.el.shutdown();
    expect(l.accept().terminated).toBe(true);
    expect(l.el.answer({ type: "snapshot" }).draining).toBe(true);
    await Bun.sleep(0);
    expect(done).toBe(false);
    s.data.onClientEnd();
    l.attempts[0]!.end();
    expect(await l.el.done).toBe(0);
    expect(l.records().map((r) => r.outcome)).toEqual(["over_capacity", "ok"]);
  });

  test("shutdown with nothing open is done at once", async () => {
    const l = loop();
    l.el.shutdown();
    expect(await l.el.done).toBe(0);
  });
});
