// The admin API's behaviour without gRPC: a real control plane (one loop in
// this thread, bound on loopback) and a real SQLite database. Validation
// names the field; a refused change changes nothing; mutations apply to the
// route tables and persist; the queue keeps arrival order.
import { describe, expect, test } from "bun:test";
import { status } from "@grpc/grpc-js";
import { AdminError } from "../../src/admin/admin_error";
import { inProcessAdmin } from "../helpers/admin_in_process";

async function refused(p: Promise<unknown> | (() => unknown)): Promise<AdminError> {
  try {
    await (typeof p === "function" ? p() : p);
  } catch (e) {
    if (e instanceof AdminError) return e;
    throw e;
  }
  throw new Error("expected a refusal");
}

describe("AdminService (in process, real control plane and SQLite)", () => {
  const fx = inProcessAdmin(
    (l) =>
      `[[listeners]]\naddr = "${l}"\n  [[listeners.routes]]\n  hostname = "seed.example.com"\n  backend = "127.0.0.1:9"\n`,
    "mcproxy-admin-",
  );
  const listener = fx.listener;

  test("AddRoute: a pool is validated, written, applied; ListRoutes shows it; a bad field is named and changes nothing", async () => {
    const r = await fx.admin.addRoute({
      listener,
      route: {
        hostname: "App.Example.COM.",
        backends: [{ addr: "127.0.0.1:1001", weight: 2 }, { addr: "[::1]:1002" }],
        balance: "BALANCE_LEAST_CONNECTIONS",
      },
    });
    expect(r.replaced).toBe(false);
    expect(r.route.hostname).toBe("app.example.com");
    expect(r.route.backends.map((b) => [b.addr, b.weight])).toEqual([
      ["127.0.0.1:1001", 2],
      ["[::1]:1002", 1],
    ]);
    expect(fx.admin.listRoutes({ listener }).listeners[0]!.routes.map((x) => x.hostname)).toEqual([
      "app.example.com",
      "seed.example.com",
    ]);
    expect(
      fx.db
        .state()
        .listeners.get(listener)!
        .routes.map((x) => x.hostname),
    ).toEqual(["app.example.com", "seed.example.com"]);

    const before = JSON.stringify([...fx.db.state().listeners]);
    const cases: [object, RegExp][] = [
      [{ hostname: "bad host", backend: "127.0.0.1:1" }, /^route\.hostname: "bad host": not a valid host name/],
      [
        { hostname: "x.example.com", backend: "127.0.0.1:0" },
        /^route\.backend: "127\.0\.0\.1:0": port 0 is out of range/,
      ],
      [
        { hostname: "x.example.com", backends: [{ addr: "127.0.0.1:1", weight: 999 }] },
        /^route\.backends\[0\]\.weight: 999 must be 1-256/,
      ],
      [{ hostname: "x.example.com", backends: [{ addr: "127.0.0.1:1" }, { addr: "127.0.0.1:1" }] }, /appears twice/],
      [
        { hostname: "x.example.com", backend: "127.0.0.1:1", balance: "BALANCE_RANDOM" },
        /^route\.balance: "BALANCE_RANDOM" must be/,
      ],
      [{ hostname: "x".repeat(300), backend: "127.0.0.1:1" }, /too long \(at most 255 characters\)/],
    ];
    for (const [route, why] of cases) {
      const e = await refused(() => fx.admin.addRoute({ listener, route }));
      expect(e.code).toBe(status.INVALID_ARGUMENT);
      expect(e.message).toMatch(why);
    }
    expect(JSON.stringify([...fx.db.state().listeners])).toBe(before);
  });

  test("AddRoute: a pool's health-check settings are validated by the route rules, stored and reported; a replace answers with what it replaced", async () => {
    const pool = await fx.admin.addRoute({
      listener,
      route: {
        hostname: "hc.example.com",
        backends: [
          { addr: "127.0.0.1:1101" },
          { addr: "127.0.0.1:1102", weight: 3 },
          { addr: "127.0.0.1:1103", backup: true },
        ],
        health_check: "HEALTH_CHECK_TCP",
        health_check_interval: "1m30s",
        health_check_timeout: "",
        health_check_rise: 4,
        health_check_fall: 0,
      },
    });
    expect(pool.previous).toBeNull();
    // Reported in canonical form, as `check` and the config docs write durations.
    expect(pool.route).toMatchObject({
      health_check_interval: "90s",
      health_check_timeout: "",
      health_check_rise: 4,
      health_check_fall: 0,
    });
    const stored = fx.db
      .state()
      .listeners.get(listener)!
      .routes.find((r) => r.hostname === "hc.example.com")!;
    expect(stored.check).toEqual({ intervalMs: 90_000, rise: 4 });

    const before = JSON.stringify([...fx.db.state().listeners]);
    for (const [route, why] of [
      [{ health_check_interval: "5" }, /^route\.health_check_interval: "5" /],
      [{ health_check_interval: "0s" }, /^route\.health_check_interval: must be greater than zero/],
      [
        { health_check_timeout: "1000h" },
        /^route\.health_check_timeout: "1000h" is too long \(durations are at most 576h\)/,
      ],
      [{ health_check_rise: 101 }, /^route\.health_check_rise: 101 must be a whole number from 1 to 100/],
    ] as [object, RegExp][]) {
      const e = await refused(() =>
        fx.admin.addRoute({ listener, route: { hostname: "hc.example.com", backend: "127.0.0.1:1", ...route } }),
      );
      expect(e.code).toBe(status.INVALID_ARGUMENT);
      expect(e.message).toMatch(why);
    }
    expect(JSON.stringify([...fx.db.state().listeners])).toBe(before);

    // One backend written over a pool: done, and the answer names the pool it replaced.
    const flat = await fx.admin.addRoute({
      listener,
      route: { hostname: "hc.example.com", backend: "127.0.0.1:1104" },
    });
    expect(flat.replaced).toBe(true);
    expect(flat.route.backends.map((b) => b.addr)).toEqual(["127.0.0.1:1104"]);
    expect(flat.route.health_check_interval).toBe("");
    expect(flat.previous?.backends.map((b) => [b.addr, b.weight, b.backup])).toEqual([
      ["127.0.0.1:1101", 1, false],
      ["127.0.0.1:1102", 3, false],
      ["127.0.0.1:1103", 1, true],
    ]);
    expect(flat.previous?.health_check_interval).toBe("90s");
    await fx.admin.removeRoute({ listener, hostname: "hc.example.com" });
  });

  test("RemoveRoute of an absent route and an unknown listener are NOT_FOUND; a country rule without GeoIP is FAILED_PRECONDITION", async () => {
    expect((await refused(fx.admin.removeRoute({ listener, hostname: "nope.example.com" }))).code).toBe(
      status.NOT_FOUND,
    );
    expect(
      (await refused(() => fx.admin.removeRoute({ listener: "127.0.0.1:1", hostname: "seed.example.com" }))).code,
    ).toBe(status.NOT_FOUND);
    expect(
      (await refused(() => fx.admin.addFirewallRule({ rule: { type: "FIREWALL_RULE_TYPE_COUNTRY", value: "KP" } })))
        .code,
    ).toBe(status.FAILED_PRECONDITION);
  });

  test("firewall rules: canonical form, added once, removed; SetListenerMaxConnections in range only", async () => {
    expect(
      (await fx.admin.addFirewallRule({ rule: { type: "FIREWALL_RULE_TYPE_IP", value: "2001:0DB8::1" } })).rule.value,
    ).toBe("2001:db8::1");
    expect(
      (await fx.admin.addFirewallRule({ rule: { type: "FIREWALL_RULE_TYPE_IP", value: "2001:db8::1" } })).added,
    ).toBe(false);
    expect(fx.admin.getFirewallRules().rules).toEqual([{ type: "FIREWALL_RULE_TYPE_IP", value: "2001:db8::1" }]);
    await fx.admin.removeFirewallRule({ rule: { type: "FIREWALL_RULE_TYPE_IP", value: "2001:db8::1" } });
    expect(fx.admin.getFirewallRules().rules).toEqual([]);
    expect(
      (await refused(() => fx.admin.setListenerMaxConnections({ listener, max_connections: 3_000_000_000 }))).message,
    ).toMatch(/max_connections: 3000000000 must be 0 \(unlimited\) to 2147483647/);
    await fx.admin.setListenerMaxConnections({ listener, max_connections: 12 });
    expect(fx.plane.listener(listener)!.maxConnections).toBe(12);
    expect(fx.db.state().listeners.get(listener)!.maxConnections).toBe(12);
  });

  test("mutations run in arrival order", async () => {
    const names = Array.from({ length: 20 }, (_, i) => `q${i}.example.com`);
    await Promise.all(
      names.map((h) => fx.admin.addRoute({ listener, route: { hostname: h, backend: "127.0.0.1:9" } })),
    );
    await Promise.all(names.map((h) => fx.admin.removeRoute({ listener, hostname: h })));
    expect(fx.admin.listRoutes({ listener }).listeners[0]!.routes.map((x) => x.hostname)).toEqual([
      "app.example.com",
      "seed.example.com",
    ]);
  });
});
