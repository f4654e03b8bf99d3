// The control plane (src/server/control_plane.ts) driving loops built in
// this thread without binding (its newLoop option): event loops that never
// listen, fed fake client sockets, and a loop that fails every command as a
// dead or stuck worker does. Changes reach every loop and a loop that
// starts later; snapshots and fingerprint tables are summed
// (docs/ARCHITECTURE.md "One control plane, N event loops").
import { afterEach, describe, expect, test } from "bun:test";
import type { Logger } from "../../src/log/logger";
import { parseRoutedConfig } from "../../src/routing/route_config";
import type { Connection } from "../../src/server/connection";
import { ControlPlane } from "../../src/server/control_plane";
import { EventLoop } from "../../src/server/event_loop";
import type { Ack, LoopCommand, LoopInit, LoopQuery, LoopReply, QueryType } from "../../src/server/loop_protocol";
import type { Loop, LoopEvents } from "../../src/server/loops";
import { FakeSocket, capturingLogger, fakeConnector } from "../helpers/fake_sockets";
import { helloFor } from "../helpers/hello_builder";
import { route } from "../helpers/routes";

/** An event loop in this thread that never binds: what InThreadLoop does, minus the sockets. */
class UnboundLoop implements Loop {
  readonly thread = 0;
  el: EventLoop | null = null;
  readonly clients: FakeSocket<Connection>[] = [];
  constructor(
    readonly init: LoopInit,
    private readonly logger: Logger,
    private readonly events: LoopEvents,
  ) {}
  async start(): Promise<string | null> {
    const el = new EventLoop(this.init, this.logger, fakeConnector(this.logger).connect);
    this.el = el;
    void el.done.then(() => this.events.stopped(el.localSnapshot()));
    return null;
  }
  async command(c: LoopCommand): Promise<Ack> {
    return { ok: true, closed: this.el!.apply(c) };
  }
  async query<K extends QueryType>(q: LoopQuery<K>): Promise<LoopReply<K> | null> {
    return this.el!.answer(q);
  }
  drain(): void {
    this.el?.shutdown();
  }
  terminate(): void {}
  crash(): void {}
  /** A client on listener `i` through the loop's own handlers, with a hello. */
  connect(i: number, ip: string, hello: Uint8Array | null): FakeSocket<Connection> {
    const el = this.el!;
    const h = el.clientHandlers(el.listeners[i]!);
    const s = new FakeSocket<Connection>(ip);
    this.clients.push(s);
    void h.open!(s.as<Connection>());
    if (hello !== null && !s.terminated) void h.data!(s.as<Connection>(), hello as Buffer);
    return s;
  }
}

/** A loop whose every command fails and every query goes unanswered: a worker that died or did not answer in time. */
class FailingLoop extends UnboundLoop {
  override async command(): Promise<Ack> {
    return { ok: false, error: "the worker did not answer in time" };
  }
  override async query<K extends QueryType>(): Promise<LoopReply<K> | null> {
    return null;
  }
  die(): void {
    (this as unknown as { events: LoopEvents }).events.died();
  }
}

const TOML = `
[fingerprints]
top = 10
[[listeners]]
addr = "127.0.0.1:8443"
name = "public"
  [[listeners.routes]]
  hostname = "app.example.com"
  backend = "10.0.0.1:443"
`;

const planes: { cp: ControlPlane; made: UnboundLoop[] }[] = [];
afterEach(async () => {
  for (const { cp, made } of planes.splice(0)) {
    // Clients gone first: a drain with nothing open is done at once.
    for (const l of made) for (const s of l.clients) s.data.onClientClose(new Error("ECONNRESET"));
    cp.shutdown();
    expect(await cp.done).toBe(0);
  }
});

async function plane(loops: number, kind: (id: number) => "ok" | "failing" = () => "ok") {
  const log = capturingLogger("warn");
  const made: UnboundLoop[] = [];
  const cp = await ControlPlane.start(parseRoutedConfig(TOML, "/tmp/control-plane-test.toml"), log.logger, {
    loops,
    histograms: true,
    connectionCap: 0,
    newLoop: (init, logger, events) => {
      const l = kind(init.id) === "ok" ? new UnboundLoop(init, logger, events) : new FailingLoop(init, logger, events);
      made.push(l);
      return l;
    },
  });
  planes.push({ cp, made });
  return { cp, made, records: log.records };
}

describe("one loop in this thread", () => {
  test("applyRoutes: the control plane's table and the loop's both change; the next hello is routed by it", async () => {
    const { cp, made } = await plane(1);
    const l = made[0]!;
    await cp.applyRoutes(cp.listener("public")!, [
      route("app.example.com", "10.0.0.1:443"),
      route("new.example.com", "10.0.0.2:443"),
    ]);
    expect(cp.listener("127.0.0.1:8443")!.table.size).toBe(2);
    expect(l.el!.listeners[0]!.table.routes().map((r) => r.hostname)).toEqual(["app.example.com", "new.example.com"]);
    const s = l.connect(0, "192.0.2.1", helloFor("new.example.com"));
    expect(s.data.routeName).toBe("new.example.com");
    const snap = await cp.snapshot();
    expect(snap.listeners[0]).toMatchObject({ name: "public", accepted: 1, active: 1, routes: 2 });
  });

  test("applyRules: in force on the loop at the next accept; the snapshot counts them", async () => {
    const { cp, made } = await plane(1);
    await cp.applyRules({ blockedIps: ["192.0.2.66"], blockedCidrs: [], blockedCountries: [], blockedJa4: [] });
    expect(made[0]!.connect(0, "192.0.2.66", null).terminated).toBe(true);
    expect(made[0]!.connect(0, "192.0.2.67", null).terminated).toBe(false);
    const snap = await cp.snapshot();
    expect(snap.rules).toEqual({ ip: 1, cidr: 0, country: 0, ja4: 0 });
    expect(snap.listeners[0]!.closed.reduce((a, b) => a + b, 0)).toBe(1);
  });

  test("fingerprints: the loop's table, merged; a maximum connections change is the shared limit", async () => {
    const { cp, made } = await plane(1);
    for (let i = 0; i < 4; i++) made[0]!.connect(0, `192.0.2.${i + 1}`, helloFor("app.example.com"));
    const fp = await cp.fingerprints(10);
    expect(fp).toMatchObject({ capacity: 10, loops: 1 });
    expect(fp.entries).toHaveLength(1);
    expect(fp.entries[0]!.count).toBe(4);
    cp.applyMaxConnections(cp.listeners[0]!, 5);
    expect((await cp.snapshot()).listeners[0]!.maxConnections).toBe(5);
  });

  test("applyBackendReset: the loop's connections on that backend, counted", async () => {
    const { cp, made } = await plane(1);
    const a = made[0]!.connect(0, "192.0.2.1", helloFor("app.example.com"));
    made[0]!.connect(0, "192.0.2.2", helloFor("app.example.com"));
    const ref = a.data.backendSlot!;
    expect(await cp.applyBackendReset(ref)).toBe(2);
    expect(cp.counters.total()).toBe(0);
  });
});

describe("a loop that fails", () => {
  test("a failed command is not counted; the change holds for a loop that starts after it", async () => {
    const { cp, made, records } = await plane(2, (id) => (id === 1 ? "failing" : "ok"));
    const [ok, failing] = made as [UnboundLoop, FailingLoop];
    ok.connect(0, "192.0.2.1", helloFor("app.example.com"));
    const ref = ok.el!.listeners[0]!.table.routes()[0]!.refs[0]!;
    expect(await cp.applyBackendReset(ref)).toBe(1);
    await cp.applyRules({ blockedIps: ["192.0.2.66"], blockedCidrs: [], blockedCountries: [], blockedJa4: [] });
    // A snapshot counts what answered; the failing loop's slot has none yet.
    const snap = await cp.snapshot();
    expect(snap.listeners[0]!.accepted).toBe(1);
    expect(snap.workers.map((w) => w.id)).toEqual([0, 1]);
    // It dies: replaced within RESPAWN_MS, by a loop built from the rules in force now.
    failing.die();
    await Bun.sleep(400);
    expect(made).toHaveLength(3);
    expect(made[2]!.init.config.firewall.blockedIps).toEqual(["192.0.2.66"]);
    expect(records().some((r) => r.msg === "worker died; its connections are lost" && r.worker === 1)).toBe(true);
  });
});
