// Drains end (docs/POOLS.md "Drains end"): the pure decisions of
// src/server/connection_sweep.ts fed numbers, and its sweep over fake
// connections with a fake clock and a real (in-memory) backend table.
import { describe, expect, test } from "bun:test";
import { Logger } from "../../src/log/logger";
import { BackendTable } from "../../src/routing/backend_table";
import type { BoundRoute } from "../../src/routing/route";
import type { Closer } from "../../src/relay/relay";
import {
  ConnectionSweep,
  END_GRACE_MS,
  type EndFacts,
  type Sweepable,
  drainClosesAt,
  dueIn,
  dueReason,
  endStep,
} from "../../src/server/connection_sweep";

const facts = (f: Partial<EndFacts>): EndFacts => ({
  ageMs: 0,
  lifetimeMs: 0,
  drainedForMs: -1,
  drainTimeoutMs: 0,
  ...f,
});

describe("dueReason / dueIn", () => {
  test("nothing configured: never due, whatever the age or the drain", () => {
    expect(dueReason(facts({ ageMs: 1e9, drainedForMs: 1e9 }))).toBeNull();
    expect(dueIn(facts({ ageMs: 1e9, drainedForMs: 1e9 }))).toBeNull();
  });
  test("drain_timeout: due once the backend has been drained that long, not before", () => {
    expect(dueReason(facts({ drainedForMs: 1999, drainTimeoutMs: 2000 }))).toBeNull();
    expect(dueIn(facts({ drainedForMs: 1500, drainTimeoutMs: 2000 }))).toBe(500);
    expect(dueReason(facts({ drainedForMs: 2000, drainTimeoutMs: 2000 }))).toBe("drain");
    // Not drained: a drain_timeout alone never ends it.
    expect(dueReason(facts({ drainedForMs: -1, drainTimeoutMs: 2000, ageMs: 1e9 }))).toBeNull();
  });
  test("max_connection_lifetime: due at that age", () => {
    expect(dueReason(facts({ ageMs: 2999, lifetimeMs: 3000 }))).toBeNull();
    expect(dueReason(facts({ ageMs: 3000, lifetimeMs: 3000 }))).toBe("lifetime");
    expect(dueIn(facts({ ageMs: 3500, lifetimeMs: 3000 }))).toBe(0);
  });
  test("both: the sooner wins", () => {
    const f = facts({ ageMs: 1000, lifetimeMs: 5000, drainedForMs: 0, drainTimeoutMs: 2000 });
    expect(dueIn(f)).toBe(2000);
    expect(dueIn({ ...f, lifetimeMs: 1500 })).toBe(500);
  });
  test("endStep: FIN when nothing waits to be written; with bytes waiting, wait, then RST after the grace", () => {
    expect(endStep(false, 0)).toBe("fin");
    expect(endStep(false, 1e9)).toBe("fin");
    expect(endStep(true, 0)).toBe("wait");
    expect(endStep(true, END_GRACE_MS - 1)).toBe("wait");
    expect(endStep(true, END_GRACE_MS)).toBe("rst");
  });
  test("drainClosesAt: 0 when not draining or drain_timeout 0", () => {
    expect(drainClosesAt(0, 2000)).toBe(0);
    expect(drainClosesAt(1_000_000, 0)).toBe(0);
    expect(drainClosesAt(1_000_000, 2000)).toBe(1_002_000);
  });
});

describe("BackendTable: the drain's clock", () => {
  test("starts when a backend leaves enabled, is kept through drain → disabled, cleared by enable", () => {
    const t = new BackendTable(8, 1);
    const r = t.acquire("k", "enabled");
    expect(t.drainedAt(r)).toBe(0);
    t.setState(r, "drain", 1_700_000_000_123);
    expect(t.drainedAt(r)).toBe(1_700_000_000_123);
    t.setState(r, "disabled", 1_700_000_009_000);
    expect(t.drainedAt(r)).toBe(1_700_000_000_123);
    t.setState(r, "enabled", 1_700_000_010_000);
    expect(t.drainedAt(r)).toBe(0);
    // A slot released (its backend left the route) is no longer this generation's.
    expect(t.isCurrent(r)).toBe(true);
    t.releaseExcept("", new Set());
    expect(t.isCurrent(r)).toBe(false);
    expect(t.drainedAt(r)).toBe(0);
  });
});

/** A connection as the sweep sees it: what it was told to do is recorded. */
class FakeConn implements Sweepable {
  connectedAt = 1;
  done: { how: "fin" | "rst"; by: Closer } | null = null;
  clientReset = false;
  readonly relay = {
    finished: false,
    pending: false,
    client: { terminate: () => void (this.clientReset = true) },
    closeBoth: (by: Closer) => this.end("fin", by),
    resetBoth: (by: Closer) => this.end("rst", by),
  };
  constructor(
    readonly acceptedAt: number,
    readonly route: { name: string; route: BoundRoute },
    readonly backendSlot: { slot: number; gen: number } | null,
    readonly listener = { index: 0, table: { find: (_: string): BoundRoute | undefined => undefined } },
  ) {}
  private end(how: "fin" | "rst", by: Closer): void {
    this.done = { how, by };
    (this.relay as { finished: boolean }).finished = true;
  }
}

const routeWith = (o: Partial<BoundRoute>) => ({ name: "app.example.com", route: o as BoundRoute });

function sweepOver(conns: FakeConn[], table: BackendTable, drainTimeoutMs = 0, listenerLifetimeMs = [0]) {
  const clock = { wall: 1_000_000, mono: 0 };
  const s = new ConnectionSweep(
    () => conns,
    table,
    { drainTimeoutMs, listenerLifetimeMs },
    new Logger("error", "text", { write() {}, flush() {} }),
    { wall: () => clock.wall, mono: () => clock.mono },
  );
  return { s, clock };
}

describe("ConnectionSweep over fake connections", () => {
  test("a drained backend's connections end with FIN at drain_timeout, closed_by drain; others stay", () => {
    const t = new BackendTable(8, 1);
    const drained = t.acquire("a", "enabled");
    const kept = t.acquire("b", "enabled");
    const onDrained = [0, 1, 2].map(() => new FakeConn(0, routeWith({ drainTimeoutMs: 2000 }), drained));
    const onKept = new FakeConn(0, routeWith({ drainTimeoutMs: 2000 }), kept);
    const { s, clock } = sweepOver([...onDrained, onKept], t);
    t.setState(drained, "drain", clock.wall);
    clock.wall += 1999;
    expect(s.sweep()).toBe(0);
    clock.wall += 1;
    expect(s.sweep()).toBe(3);
    for (const c of onDrained) expect(c.done).toEqual({ how: "fin", by: "drain" });
    expect(onKept.done).toBeNull();
    // The clients that did not close their side are reset after the grace.
    clock.wall += END_GRACE_MS - 1;
    s.sweep();
    expect(onDrained[0]!.clientReset).toBe(false);
    clock.wall += 1;
    s.sweep();
    for (const c of onDrained) expect(c.clientReset).toBe(true);
    s.stop();
  });

  test("[proxy] drain_timeout applies where the route sets none; a route's 0 keeps them", () => {
    const t = new BackendTable(8, 1);
    const ref = t.acquire("a", "enabled");
    const byDefault = new FakeConn(0, routeWith({}), ref);
    const never = new FakeConn(0, routeWith({ drainTimeoutMs: 0 }), ref);
    const { s, clock } = sweepOver([byDefault, never], t, 1000);
    t.setState(ref, "disabled", clock.wall);
    clock.wall += 1000;
    expect(s.sweep()).toBe(1);
    expect(byDefault.done?.by).toBe("drain");
    expect(never.done).toBeNull();
    s.stop();
  });

  test("drain_timeout 0 everywhere: nothing ever closes", () => {
    const t = new BackendTable(8, 1);
    const ref = t.acquire("a", "enabled");
    const c = new FakeConn(0, routeWith({}), ref);
    const { s, clock } = sweepOver([c], t, 0);
    t.setState(ref, "drain", clock.wall);
    clock.wall += 1e9;
    clock.mono += 1e9;
    expect(s.sweep()).toBe(0);
    expect(c.done).toBeNull();
    s.stop();
  });

  test("a backend that left its route: drain_timeout counts from when the sweep first sees it", () => {
    const t = new BackendTable(8, 1);
    const ref = t.acquire("a", "enabled");
    const c = new FakeConn(0, routeWith({ drainTimeoutMs: 2000 }), ref);
    const { s, clock } = sweepOver([c], t);
    t.releaseExcept("", new Set());
    expect(s.sweep()).toBe(0);
    clock.wall += 2000;
    expect(s.sweep()).toBe(1);
    expect(c.done).toEqual({ how: "fin", by: "drain" });
    s.stop();
  });

  test("max_connection_lifetime: the route's wins over the listener's; ended at that age with FIN", () => {
    const t = new BackendTable(8, 1);
    const ref = t.acquire("a", "enabled");
    const byListener = new FakeConn(0, routeWith({}), ref);
    const byRoute = new FakeConn(0, routeWith({ maxConnectionLifetimeMs: 5000 }), ref);
    const { s, clock } = sweepOver([byListener, byRoute], t, 0, [3000]);
    clock.mono = 2999;
    expect(s.sweep()).toBe(0);
    clock.mono = 3000;
    expect(s.sweep()).toBe(1);
    expect(byListener.done).toEqual({ how: "fin", by: "lifetime" });
    clock.mono = 5000;
    expect(s.sweep()).toBe(1);
    expect(byRoute.done).toEqual({ how: "fin", by: "lifetime" });
    s.stop();
  });

  test("bytes waiting to be written: FIN once they are out, RST if the grace passes first", () => {
    const t = new BackendTable(8, 1);
    const ref = t.acquire("a", "enabled");
    const c = new FakeConn(0, routeWith({}), ref);
    c.relay.pending = true;
    const { s, clock } = sweepOver([c], t, 0, [1000]);
    clock.mono = 1000;
    expect(s.sweep()).toBe(0);
    clock.wall += END_GRACE_MS;
    expect(s.sweep()).toBe(1);
    expect(c.done).toEqual({ how: "rst", by: "lifetime" });
    s.stop();
  });

  test("connections not yet relaying are left to their own timeouts", () => {
    const t = new BackendTable(8, 1);
    const ref = t.acquire("a", "enabled");
    const c = new FakeConn(0, routeWith({}), ref);
    c.connectedAt = 0;
    const { s, clock } = sweepOver([c], t, 0, [1000]);
    clock.mono = 1e6;
    expect(s.sweep()).toBe(0);
    s.stop();
  });
});
