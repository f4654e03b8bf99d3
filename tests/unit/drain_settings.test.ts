// drain_timeout and max_connection_lifetime as settings (docs/POOLS.md
// "Drains end"): the config file and AddRoute refuse the same bad values
// through the same rule (routing/route_fields.ts), the stored value carries
// them at version 3 (older releases refuse it), ListRoutes reports them.
import { describe, expect, test } from "bun:test";
import { status } from "@grpc/grpc-js";
import { AdminError } from "../../src/admin/admin_error";
import type { Route } from "../../src/routing/route";
import { parseRoutedConfig } from "../../src/routing/route_config";
import { decodeRoute, encodeRoute } from "../../src/store/route_codec";
import { problems } from "../helpers/config_problems";
import { inProcessAdmin } from "../helpers/admin_in_process";

const L = `[[listeners]]\naddr = ":18443"\n`;

const withRoute = (line: string) =>
  `${L}  [[listeners.routes]]\n  hostname = "a.example.com"\n  backend = "127.0.0.1:1"\n  ${line}\n`;

describe("the config file", () => {
  test("defaults: [proxy] drain_timeout 0, a listener's max_connection_lifetime 0, a route's unset", () => {
    const c = parseRoutedConfig(withRoute(""), "t.toml");
    expect(c.proxy.drainTimeoutMs).toBe(0);
    expect(c.listeners[0]!.maxConnectionLifetimeMs).toBe(0);
    expect(c.listeners[0]!.routes[0]!.drainTimeoutMs).toBeUndefined();
    expect(c.listeners[0]!.routes[0]!.maxConnectionLifetimeMs).toBeUndefined();
  });
  test("read as durations; 0s is allowed (never)", () => {
    const c = parseRoutedConfig(
      `[proxy]\ndrain_timeout = "30s"\n[[listeners]]\naddr = ":18443"\nmax_connection_lifetime = "1h"\n  [[listeners.routes]]\n  hostname = "a.example.com"\n  backend = "127.0.0.1:1"\n  drain_timeout = "0s"\n  max_connection_lifetime = "2s"\n`,
      "t.toml",
    );
    expect(c.proxy.drainTimeoutMs).toBe(30_000);
    expect(c.listeners[0]!.maxConnectionLifetimeMs).toBe(3_600_000);
    expect(c.listeners[0]!.routes[0]).toMatchObject({ drainTimeoutMs: 0, maxConnectionLifetimeMs: 2000 });
  });
  for (const [key, where] of [
    ["drain_timeout", "routes"],
    ["max_connection_lifetime", "routes"],
  ] as const) {
    test(`${where}.${key}: negative, too long and the wrong type are refused naming the key`, () => {
      for (const [v, why] of [
        ['"-1s"', /negative/],
        ['"1000h"', /too long/],
        ["5", /expected a duration/],
        ['"soon"', /soon/],
      ] as const) {
        const p = problems(withRoute(`${key} = ${v}`));
        expect(p.some((x) => x.includes(key) && why.test(x))).toBe(true);
      }
    });
  }
  test("[proxy] drain_timeout and a listener's max_connection_lifetime: the same refusals", () => {
    expect(problems(`${L}[proxy]\ndrain_timeout = "-2s"\n`).some((p) => p.startsWith("proxy.drain_timeout"))).toBe(
      true,
    );
    expect(problems(`${L}[proxy]\ndrain_timeout = 3\n`).some((p) => p.startsWith("proxy.drain_timeout"))).toBe(true);
    expect(
      problems(`[[listeners]]\naddr = ":18443"\nmax_connection_lifetime = "1000h"\n`).some((p) =>
        p.startsWith("listeners[0].max_connection_lifetime"),
      ),
    ).toBe(true);
  });
});

describe("the stored value", () => {
  test("a route setting them is version 3 and reads back; unset, the version stays as before", () => {
    const c = parseRoutedConfig(withRoute('drain_timeout = "2s"'), "t.toml");
    const r = c.listeners[0]!.routes[0]! as Route;
    const v = encodeRoute(r);
    expect(JSON.parse(v)).toMatchObject({ version: 3, drain_timeout_ms: 2000 });
    const back = decodeRoute({ hostname: r.hostname, alpn: [] }, v);
    expect(back.ok && back.value.drainTimeoutMs).toBe(2000);
    const plain = parseRoutedConfig(withRoute(""), "t.toml").listeners[0]!.routes[0]! as Route;
    expect(JSON.parse(encodeRoute(plain)).version).toBeLessThan(3);
    expect(JSON.parse(encodeRoute(plain)).drain_timeout_ms).toBeUndefined();
  });
});

describe("AddRoute (in process, real control plane and SQLite)", () => {
  const fx = inProcessAdmin(
    (l) =>
      `[proxy]\ndrain_timeout = "7s"\n[[listeners]]\naddr = "${l}"\n  [[listeners.routes]]\n  hostname = "seed.example.com"\n  backend = "127.0.0.1:9"\n`,
    "mcproxy-drain-",
  );
  const listener = fx.listener;

  test("taken as duration text and reported; bad values refused by the config file's rule, nothing written", async () => {
    const r = await fx.admin.addRoute({
      listener,
      route: { hostname: "d.example.com", backend: "127.0.0.1:1", drain_timeout: "2s", max_connection_lifetime: "1m" },
    });
    expect(r.route).toMatchObject({ drain_timeout: "2s", max_connection_lifetime: "1m" });
    const before = JSON.stringify([...fx.db.state().listeners]);
    for (const [route, why] of [
      [{ drain_timeout: "-1s" }, /^route\.drain_timeout: "-1s" /],
      [{ drain_timeout: "1000h" }, /^route\.drain_timeout: "1000h" is too long \(durations are at most 576h\)/],
      [{ max_connection_lifetime: "soon" }, /^route\.max_connection_lifetime: "soon" /],
      [{ max_connection_lifetime: 5 }, /^route\.max_connection_lifetime: 5 must be a duration/],
    ] as [object, RegExp][]) {
      let e: unknown = null;
      try {
        await fx.admin.addRoute({ listener, route: { hostname: "d.example.com", backend: "127.0.0.1:1", ...route } });
      } catch (x) {
        e = x;
      }
      expect(e).toBeInstanceOf(AdminError);
      expect((e as AdminError).code).toBe(status.INVALID_ARGUMENT);
      expect((e as AdminError).message).toMatch(why);
    }
    expect(JSON.stringify([...fx.db.state().listeners])).toBe(before);
  });

  test("SetBackendState drain: the backend reports its open connections and when [proxy] drain_timeout ends them", async () => {
    const t0 = Date.now();
    const r = await fx.admin.setBackendState({
      listener,
      hostname: "seed.example.com",
      addr: "127.0.0.1:9",
      state: "BACKEND_STATE_DRAIN",
      reset_connections: false,
    });
    const at = Date.parse(r.backend.closes_at);
    expect(at).toBeGreaterThanOrEqual(t0 + 7000 - 1);
    expect(at).toBeLessThanOrEqual(Date.now() + 7000);
    expect(r.backend.closes_at_unix_seconds).toBe(Math.floor(at / 1000));
    expect(r.backend.draining_connections).toBe(0);
    const back = await fx.admin.setBackendState({
      listener,
      hostname: "seed.example.com",
      addr: "127.0.0.1:9",
      state: "BACKEND_STATE_ENABLED",
      reset_connections: false,
    });
    expect(back.backend.closes_at).toBe("");
  });
});
