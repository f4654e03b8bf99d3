import { describe, expect, test } from "bun:test";
import { RouteTable } from "../../src/routing/route_table";

describe("RouteTable", () => {
  const t = new RouteTable([
    { hostname: "alpha.example.com", backend: "a:1", sendProxyProtocol: "off" },
    { hostname: "*.example.com", backend: "w1:1", sendProxyProtocol: "off" },
    { hostname: "*.deep.example.com", backend: "w2:1", sendProxyProtocol: "off" },
    { hostname: "*.org", backend: "org:1", sendProxyProtocol: "off" },
  ]);

  test("exact beats wildcard", () => expect(t.lookup("alpha.example.com")?.backend).toBe("a:1"));
  test("wildcard needs at least one more label", () => {
    expect(t.lookup("x.example.com")?.backend).toBe("w1:1");
    expect(t.lookup("example.com")).toBeNull();
  });
  test("the most specific (longest) wildcard wins", () => {
    expect(t.lookup("a.deep.example.com")?.backend).toBe("w2:1");
    expect(t.lookup("a.b.deep.example.com")?.backend).toBe("w2:1");
    expect(t.lookup("deep.example.com")?.backend).toBe("w1:1");
    expect(t.lookup("x.y.example.com")?.backend).toBe("w1:1");
  });
  test("top-level wildcard", () => expect(t.lookup("anything.org")?.backend).toBe("org:1"));
  test("no match and no SNI → null without a default", () => {
    expect(t.lookup("nope.net")).toBeNull();
    expect(t.lookup(null)).toBeNull();
  });
  test("default backend serves no SNI and no match only", () => {
    const d = new RouteTable([{ hostname: "a.example", backend: "a:1", sendProxyProtocol: "off" }], { hostname: "", backend: "def:1", sendProxyProtocol: "off" });
    expect(d.lookup(null)?.backend).toBe("def:1");
    expect(d.lookup("zzz.example")?.backend).toBe("def:1");
    expect(d.lookup("a.example")?.backend).toBe("a:1");
  });
  test("routes() lists every route sorted, wildcards as written", () => {
    expect(t.routes().map((r) => r.hostname)).toEqual(["*.deep.example.com", "*.example.com", "*.org", "alpha.example.com"]);
    expect(t.size).toBe(4);
  });
  test("names ending in a dot never match by accident", () => {
    expect(t.lookup("x.example.com.")).toBeNull();
  });
});
