// Backend selection on one loop, fed states directly.
import { describe, expect, test } from "bun:test";
import { POOL_DEFAULTS } from "../../src/config/config";
import { Logger } from "../../src/log/logger";
import { BackendTable } from "../../src/routing/backend_table";
import { reportConnect } from "../../src/server/backend_socket";
import { RoutePool, bindRoutes } from "../../src/routing/pool";
import { type BackendSpec, PLAIN } from "../../src/routing/route";
import type { Balance } from "../../src/routing/route_fields";

function pool(backends: BackendSpec[], balance: Balance = "round_robin", retries: number | null = null) {
  const table = new BackendTable(64);
  const b = bindRoutes(
    table,
    0,
    [
      {
        hostname: "a.example",
        ...PLAIN,
        backends,
        balance,
        healthCheck: null,
        check: {},
        retries,
        connectTimeoutMs: null,
        sendProxyProtocol: "off",
      },
    ],
    null,
  );
  return { table, p: new RoutePool(b.routes[0]!, POOL_DEFAULTS, table) };
}
const be = (addr: string, weight = 1, backup = false): BackendSpec => ({ addr, weight, backup });
const picks = (p: RoutePool, n: number, ip = "10.0.0.1") =>
  Array.from({ length: n }, () => p.addr(p.pick(ip, 0, 1000)));

describe("RoutePool", () => {
  test("smooth weighted round robin interleaves by weight", () => {
    const { p } = pool([be("a:1", 1), be("b:1", 3)]);
    const seq = picks(p, 40);
    // Every run of 4 holds exactly one a (interleaved, not a then b b b in blocks of 40).
    for (let i = 0; i < 40; i += 4) expect(seq.slice(i, i + 4).filter((x) => x === "a:1").length).toBe(1);
  });
  test("backups only when no primary is eligible; several backups balanced", () => {
    const { p, table } = pool([be("a:1"), be("x:1", 1, true), be("y:1", 1, true)]);
    expect(new Set(picks(p, 6))).toEqual(new Set(["a:1"]));
    table.setState(p.ref(0), "drain");
    expect(picks(p, 4).sort()).toEqual(["x:1", "x:1", "y:1", "y:1"]);
    table.setState(p.ref(0), "disabled");
    table.setState(p.ref(1), "disabled");
    table.setState(p.ref(2), "disabled");
    expect(p.pick("10.0.0.1", 0, 1000)).toBe(-1);
  });
  test("a backend never gets a second try on one connection; tries stop at retries + 1", () => {
    const { p } = pool([be("a:1"), be("b:1"), be("c:1"), be("d:1")], "round_robin", 2);
    expect(p.maxTries).toBe(3);
    let tried = 0;
    const seen: string[] = [];
    for (let k = 0; k < 4; k++) {
      const i = p.pick("10.0.0.1", tried, 1000);
      seen.push(p.addr(i));
      tried |= 1 << i;
    }
    expect(new Set(seen).size).toBe(4);
  });
  test("least_connections counts every loop's connections (shared) per unit of weight", () => {
    const { p, table } = pool([be("a:1"), be("b:1", 2)], "least_connections");
    for (let i = 0; i < 3; i++) table.take(p.ref(1), 0);
    table.take(p.ref(0), 0);
    // a: 1/1 = 1, b: 3/2 = 1.5 → a.
    expect(p.addr(p.pick("x", 0, 1000))).toBe("a:1");
    table.take(p.ref(0), 0);
    // a: 2, b: 1.5 → b.
    expect(p.addr(p.pick("x", 0, 1000))).toBe("b:1");
  });
  test("source_hash: stable per client; removing a backend moves only its clients", () => {
    const three = pool([be("a:1"), be("b:1"), be("c:1")], "source_hash").p;
    const two = pool([be("a:1"), be("b:1")], "source_hash").p;
    const ips = Array.from({ length: 300 }, (_, i) => `10.1.${i >> 8}.${i & 255}`);
    const before = ips.map((ip) => three.addr(three.pick(ip, 0, 1000)));
    expect(ips.map((ip) => three.addr(three.pick(ip, 0, 1000)))).toEqual(before);
    for (const x of ["a:1", "b:1", "c:1"]) expect(before.filter((v) => v === x).length).toBeGreaterThan(70);
    ips.forEach((ip, k) => {
      const now = two.addr(two.pick(ip, 0, 1000));
      if (before[k] !== "c:1") expect(now).toBe(before[k]!);
    });
  });
  test("passive health: fall consecutive connect failures take a backend down; with checks off it is tried again after rise × interval", () => {
    const { p, table } = pool([be("a:1")]);
    expect(p.checksOn).toBe(false);
    for (let i = 0; i < POOL_DEFAULTS.check.fall - 1; i++)
      table.connectResult(p.ref(0), false, p.fall, false, p.holdSec, 1000);
    expect(p.pick("x", 0, 1000)).toBe(0);
    expect(table.connectResult(p.ref(0), false, p.fall, false, p.holdSec, 1000)).toBe("down");
    expect(p.pick("x", 0, 1000)).toBe(-1);
    expect(p.pick("x", 0, 1000 + p.holdSec)).toBe(0);
    table.connectResult(p.ref(0), true, p.fall, false, p.holdSec, 1000 + p.holdSec);
    expect(table.health(p.ref(0)).up).toBe(true);
  });
  test("passive health: a templated backend stands for many hosts, so no host's connect failures take it down", () => {
    // One app's backend down, or a client asking for a name that resolves but refuses, must not stop the others.
    const { p, table } = pool([be("{sni}:1")]);
    expect(p.templated).toBe(true);
    const ctx = { backends: table, logger: new Logger("error", "text"), workerId: 0, wheel: { nowSec: 1000 } };
    for (let i = 0; i < POOL_DEFAULTS.check.fall * 3; i++) reportConnect(ctx, p, 0, false, "l");
    expect(table.health(p.ref(0)).up).toBe(true);
    expect(p.pick("x", 0, 1000)).toBe(0);
    // A fixed backend, the same way, goes down.
    const fixed = pool([be("a:1")]);
    const ctx2 = { ...ctx, backends: fixed.table };
    for (let i = 0; i < POOL_DEFAULTS.check.fall; i++) reportConnect(ctx2, fixed.p, 0, false, "l");
    expect(fixed.table.health(fixed.p.ref(0)).up).toBe(false);
  });
  test("active checks: rise successes bring it up, fall failures take it down", () => {
    const { p, table } = pool([be("a:1"), be("b:1")]);
    expect(p.checksOn).toBe(true);
    expect(table.checkResult(p.ref(0), false, 2, 3, 1)).toBeNull();
    expect(table.checkResult(p.ref(0), false, 2, 3, 1)).toBeNull();
    expect(table.checkResult(p.ref(0), false, 2, 3, 1)).toBe("down");
    expect(table.checkResult(p.ref(0), true, 2, 3, 2)).toBeNull();
    expect(table.checkResult(p.ref(0), true, 2, 3, 3)).toBe("up");
    expect(table.health(p.ref(0))).toMatchObject({ up: true, lastCheck: "ok", lastCheckAt: 3 });
  });
  test("a slot reused by another backend is not touched by the old one's connections", () => {
    const table = new BackendTable(4);
    const r1 = table.acquire("0\u0000a\u0000x:1", "enabled");
    table.take(r1, 0);
    table.releaseExcept("0\u0000", new Set());
    const r2 = table.acquire("0\u0000a\u0000y:1", "enabled");
    expect(r2.slot).toBe(r1.slot);
    table.give(r1, 0);
    expect(table.active(r2)).toBe(0);
  });
});
