import { describe, expect, test } from "bun:test";
import { BackendTable } from "../../src/routing/backend_table";
import { POOL_DEFAULTS } from "../../src/config/config";
import { bindRoutes } from "../../src/routing/pool";
import type { Route } from "../../src/routing/route";
import { RouteTable } from "../../src/routing/route_table";
import { route } from "../helpers/routes";

function table(routes: Route[], defaultRoute: Route | null = null): RouteTable {
  const bt = new BackendTable(64);
  const b = bindRoutes(bt, 0, routes, defaultRoute);
  return new RouteTable(b.routes, b.defaultRoute, POOL_DEFAULTS, bt);
}

describe("RouteTable", () => {
  const t = table([
    route("alpha.example.com", "a:1"),
    route("*.example.com", "w1:1"),
    route("*.deep.example.com", "w2:1"),
    route("*.org", "org:1"),
  ]);

  test("exact beats wildcard", () => expect(t.lookup("alpha.example.com")?.addr(0)).toBe("a:1"));
  test("wildcard needs at least one more label", () => {
    expect(t.lookup("x.example.com")?.addr(0)).toBe("w1:1");
    expect(t.lookup("example.com")).toBeNull();
  });
  test("the most specific (longest) wildcard wins", () => {
    expect(t.lookup("a.deep.example.com")?.addr(0)).toBe("w2:1");
    expect(t.lookup("a.b.deep.example.com")?.addr(0)).toBe("w2:1");
    expect(t.lookup("deep.example.com")?.addr(0)).toBe("w1:1");
    expect(t.lookup("x.y.example.com")?.addr(0)).toBe("w1:1");
  });
  test("top-level wildcard", () => expect(t.lookup("anything.org")?.addr(0)).toBe("org:1"));
  test("no match and no SNI → null without a default", () => {
    expect(t.lookup("nope.net")).toBeNull();
    expect(t.lookup(null)).toBeNull();
  });
  test("default backend serves no SNI and no match only", () => {
    const d = table([route("a.example", "a:1")], route("", "def:1"));
    expect(d.lookup(null)?.addr(0)).toBe("def:1");
    expect(d.lookup("zzz.example")?.addr(0)).toBe("def:1");
    expect(d.lookup("a.example")?.addr(0)).toBe("a:1");
  });
  test("routes() lists every route sorted, wildcards as written", () => {
    expect(t.routes().map((r) => r.hostname)).toEqual([
      "*.deep.example.com",
      "*.example.com",
      "*.org",
      "alpha.example.com",
    ]);
    expect(t.size).toBe(4);
  });
  test("names ending in a dot never match by accident", () => {
    expect(t.lookup("x.example.com.")).toBeNull();
  });
});
