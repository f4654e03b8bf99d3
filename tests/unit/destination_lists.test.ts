// allow_destinations / deny_destinations (docs/SECURITY.md "Destination guard") through every
// source: the config file (route and listener keys), AddRoute (canonical form, a bad entry named,
// ListRoutes shows them), the SQLite store, and the stored value's version (older releases refuse it).
import { describe, expect, test } from "bun:test";
import { status } from "@grpc/grpc-js";
import { AdminError } from "../../src/admin/admin_error";
import { parseRoutedConfig } from "../../src/routing/route_config";
import { versionOf } from "../../src/routing/route_fields";
import { problems } from "../helpers/config_problems";
import { inProcessAdmin } from "../helpers/admin_in_process";

describe("the config file", () => {
  test("route and listener keys are read in canonical form", () => {
    const c = parseRoutedConfig(
      `[[listeners]]\naddr = "127.0.0.1:18443"\nallow_destinations = ["10.0.0.0/8"]\ndeny_destinations = ["::ffff:10.9.0.0/112"]\n` +
        `  [[listeners.routes]]\n  hostname = "a.example"\n  backend = "svc.test:443"\n  allow_destinations = ["127.0.0.1"]\n  deny_destinations = ["169.254.0.0/16"]\n`,
      "t.toml",
    );
    const l = c.listeners[0]!;
    expect([l.allowDestinations, l.denyDestinations]).toEqual([["10.0.0.0/8"], ["10.9.0.0/16"]]);
    const r = l.routes[0]!;
    expect([r.allowDestinations, r.denyDestinations]).toEqual([["127.0.0.1/32"], ["169.254.0.0/16"]]);
    expect(versionOf(r)).toBe(3);
  });
  test("a bad entry is named", () => {
    expect(problems(`[[listeners]]\naddr = "127.0.0.1:18443"\ndeny_destinations = ["10.0.0.1/8"]\n`)).toEqual([
      expect.stringMatching(/^listeners\[0\]\.deny_destinations\[0\]: "10\.0\.0\.1\/8" is not canonical/),
    ]);
    const p = problems(
      `[[listeners]]\naddr = "127.0.0.1:18443"\n  [[listeners.routes]]\n  hostname = "a.example"\n  backend = "a.test:1"\n  allow_destinations = ["nope"]\n`,
    );
    expect(p.some((x) => x.includes("allow_destinations[0]") && x.includes('"nope"'))).toBe(true);
  });
});

describe("AddRoute (real control plane and SQLite)", () => {
  const fx = inProcessAdmin((l) => `[[listeners]]\naddr = "${l}"\n`, "mcproxy-dest-");
  const listener = fx.listener;

  test("the lists are canonicalised, stored and shown; a bad entry is refused naming it", async () => {
    const r = await fx.admin.addRoute({
      listener,
      route: {
        hostname: "g.example",
        backend: "svc.test:443",
        allow_destinations: ["127.0.0.1"],
        deny_destinations: ["::ffff:169.254.0.0/112"],
      },
    });
    expect([r.route.allow_destinations, r.route.deny_destinations]).toEqual([["127.0.0.1/32"], ["169.254.0.0/16"]]);
    const listed = fx.admin.listRoutes({ listener }).listeners[0]!.routes.find((x) => x.hostname === "g.example")!;
    expect(listed.deny_destinations).toEqual(["169.254.0.0/16"]);
    const stored = fx.db
      .state()
      .listeners.get(listener)!
      .routes.find((x) => x.hostname === "g.example")!;
    expect(stored.denyDestinations).toEqual(["169.254.0.0/16"]);
    let e: unknown = null;
    try {
      await fx.admin.addRoute({
        listener,
        route: { hostname: "h.example", backend: "a.test:1", deny_destinations: ["x"] },
      });
    } catch (err) {
      e = err;
    }
    expect(e).toBeInstanceOf(AdminError);
    expect((e as AdminError).code).toBe(status.INVALID_ARGUMENT);
    expect((e as AdminError).message).toMatch(/^route\.deny_destinations\[0\]: "x"/);
  });
});
