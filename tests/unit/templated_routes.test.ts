// Templated routes (docs/ROUTING.md "Templated routes"): the pattern module,
// the template rules, the route table's order, and the one validator every
// source shares (TOML, stored values, etcd keys).
import { describe, expect, test } from "bun:test";
import { POOL_DEFAULTS } from "../../src/config/config";
import { fillTemplate, templateError } from "../../src/routing/backend_template";
import { BackendTable } from "../../src/routing/backend_table";
import { MAX_PATTERN_LENGTH, compileHostPattern } from "../../src/routing/host_pattern";
import { bindRoutes } from "../../src/routing/pool";
import { type Route, healthCheckOf, routeProblems } from "../../src/routing/route";
import { parseRoutedConfig } from "../../src/routing/route_config";
import { RouteTable } from "../../src/routing/route_table";
import { decodeRoute, encodeRoute } from "../../src/store/route_codec";
import { keys, parseEntry } from "../../src/store/etcd_layout";
import { route } from "../helpers/routes";

const APPS = "^(?<app>[a-z0-9-]{1,63})\\.apps\\.test$";

function table(routes: Route[], defaultRoute: Route | null = null): RouteTable {
  const bt = new BackendTable(64);
  const b = bindRoutes(bt, 0, routes, defaultRoute);
  return new RouteTable(b.routes, b.defaultRoute, POOL_DEFAULTS, bt);
}

/** Where a name's connection goes: the route's first backend, filled from the name. */
function target(t: RouteTable, name: string): string | null {
  return t.lookup(name)?.target(0, name) ?? null;
}

describe("compileHostPattern", () => {
  test("named captures of the whole name", () => {
    const p = compileHostPattern(APPS);
    if (!p.ok) throw new Error(p.error);
    expect(p.value.names).toEqual(["app"]);
    expect(p.value.captures("shop.apps.test")).toEqual({ app: "shop" });
    expect(p.value.captures("x.shop.apps.test")).toBeNull();
    expect(p.value.captures("shop.apps.test.evil")).toBeNull();
  });

  test("anchoring is required", () => {
    for (const t of ["(?<a>x)\\.test$", "^(?<a>x)\\.test", "x", "^x\\$"])
      expect(compileHostPattern(t)).toMatchObject({ ok: false, error: expect.stringContaining("anchored") });
  });

  test("syntax RE2 does not run in linear time is refused (backreferences, lookaround)", () => {
    expect(compileHostPattern("^(?<a>x)\\1$")).toMatchObject({ ok: false, error: expect.stringContaining("RE2") });
    expect(compileHostPattern("^(?=x)x$")).toMatchObject({ ok: false, error: expect.stringContaining("RE2") });
    expect(compileHostPattern("^(x$")).toMatchObject({ ok: false, error: expect.stringContaining("RE2") });
  });

  test("bounds: length, program size, printable ASCII, no capture named sni", () => {
    expect(compileHostPattern(`^${"a".repeat(MAX_PATTERN_LENGTH)}$`).ok).toBe(false);
    expect(compileHostPattern("^(?<a>x){1000}$")).toMatchObject({
      ok: false,
      error: expect.stringContaining("program size"),
    });
    expect(compileHostPattern("^é$").ok).toBe(false);
    expect(compileHostPattern("^(?<sni>x)$").ok).toBe(false);
    expect(compileHostPattern(42).ok).toBe(false);
  });

  test("hostile names cost linear time (measured, printed; a loose bound asserted)", () => {
    const cases: [string, string][] = [
      [APPS, "a".repeat(10_000)],
      [APPS, `${"a".repeat(5_000)}.apps.tes`],
      ["^(?<a>(a|a)*)*$", `${"a".repeat(9_999)}!`],
      ["^(?<a>[a-z-]*)-*[a-z-]*\\.x$", `${"a-".repeat(5_000)}!`],
      ["^(?<a>[a-z-]*)-*[a-z-]*\\.x$", `${"a-".repeat(126)}!`],
    ];
    for (const [pat, name] of cases) {
      const p = compileHostPattern(pat);
      if (!p.ok) throw new Error(p.error);
      for (let i = 0; i < 20; i++) p.value.captures(name); // warm
      const n = 200;
      const t0 = performance.now();
      for (let i = 0; i < n; i++) p.value.captures(name);
      const ms = (performance.now() - t0) / n;
      console.log(`pattern ${pat} on a ${name.length}-character name: ${ms.toFixed(4)} ms a match`);
      expect(ms).toBeLessThan(50);
    }
  });
});

describe("templates", () => {
  test("placeholders: the pattern's captures and {sni}; a literal port; a host:port once filled", () => {
    expect(templateError("{app}.svc.test:443", ["sni", "app"])).toBeNull();
    expect(templateError("{sni}:443", ["sni"])).toBeNull();
    expect(templateError("{other}.svc:443", ["sni", "app"])).toContain("{other}");
    expect(templateError("{app}.svc:{app}", ["sni", "app"])).toContain("port");
    expect(templateError("{app.svc:443", ["sni", "app"])).toContain("unbalanced");
    expect(templateError("{app}..svc:443", ["sni", "app"])).not.toBeNull();
    expect(templateError("{sni}:443", [])).toContain("no placeholders");
  });

  test("a filled host is checked again: length, labels, empty labels", () => {
    expect(fillTemplate("{app}.svc:443", { app: "shop" })).toBe("shop.svc:443");
    expect(fillTemplate("{app}.svc:443", { app: "" })).toBeNull();
    expect(fillTemplate("{app}.svc:443", { app: "a".repeat(64) })).toBeNull();
    expect(fillTemplate("{sni}.svc:443", { sni: `${"a.".repeat(125)}aa` })).toBeNull();
  });
});

describe("route table with patterns", () => {
  const t = table([
    { ...route(APPS, "{app}.svc.test:8443") },
    route("exact.apps.test", "exact:1"),
    route("*.apps.test", "wild:1"),
    route("^(?<x>[a-z]+)\\.other\\.test$", "{x}.b:1"),
    route("^(?<x>[a-z]+)\\.(?<y>[a-z]+)\\.other\\.test$", "{y}-{x}.a:1"),
    route("*.egress.test", "{sni}:443"),
  ]);

  test("exact, then wildcard, then the pattern", () => {
    expect(target(t, "exact.apps.test")).toBe("exact:1");
    expect(target(t, "shop.apps.test")).toBe("wild:1");
    const only = table([route(APPS, "{app}.svc.test:8443"), route("exact.apps.test", "exact:1")]);
    expect(target(only, "exact.apps.test")).toBe("exact:1");
    for (const app of ["one", "two", "three"]) expect(target(only, `${app}.apps.test`)).toBe(`${app}.svc.test:8443`);
    expect(only.lookup("x.y.apps.test")).toBeNull();
  });

  test("patterns in the byte order of their text", () => {
    // "^(?<x>[a-z]+)\.(?<y>" sorts before "^(?<x>[a-z]+)\.other": the two-capture pattern is tried first.
    expect(target(t, "p.q.other.test")).toBe("q-p.a:1");
    expect(target(t, "p.other.test")).toBe("p.b:1");
  });

  test("{sni} on a wildcard route; a name too long to fill passes the route over", () => {
    expect(target(t, "api.egress.test")).toBe("api.egress.test:443");
    const long = table([route("*.test", "{sni}.mirror.internal:443")], route("", "def:1"));
    const name = `${"a".repeat(60)}.${"b".repeat(60)}.${"c".repeat(60)}.${"d".repeat(55)}.test`;
    expect(name.length).toBeLessThanOrEqual(253);
    expect(long.lookup(name)?.name).toBe("_default");
  });

  test("a templated pool has no active checks, and refuses health_check = tcp", () => {
    const r = { ...route(APPS, "{app}.svc:1"), healthCheck: "tcp" as const };
    expect(healthCheckOf(r)).toBe("off");
    expect(routeProblems(r, "r").join()).toContain("health_check");
    expect(t.lookup("shop.apps.test")?.templated).toBe(false);
    expect(t.lookup("q.other.test")?.templated).toBe(true);
  });
});

describe("every source, one rule", () => {
  test("routeProblems: pattern, its placeholders, no alpn", () => {
    expect(routeProblems(route(APPS, "{app}.svc:443"), "r")).toEqual([]);
    expect(routeProblems(route(APPS, "{nope}.svc:443"), "r").join()).toContain("{nope}");
    expect(routeProblems(route("a.test", "{app}.svc:443"), "r").join()).toContain("{app}");
    expect(routeProblems({ ...route(APPS, "x:1"), alpn: ["h2"] }, "r").join()).toContain("no alpn");
    expect(routeProblems(route("^(a$", "x:1"), "r").join()).toContain("hostname_pattern");
  });

  test("TOML: hostname_pattern and templated backends", () => {
    const c = parseRoutedConfig(
      `[[listeners]]\naddr = "127.0.0.1:8443"\n[[listeners.routes]]\nhostname_pattern = '${APPS}'\nbackend = "{app}.svc.test:443"\n`,
      "t.toml",
    );
    expect(c.listeners[0]!.routes[0]!.hostname).toBe(APPS);
    expect(() =>
      parseRoutedConfig(
        `[[listeners]]\naddr = "127.0.0.1:8443"\n[[listeners.routes]]\nhostname = "a.test"\nhostname_pattern = '${APPS}'\nbackend = "x:1"\n`,
        "t.toml",
      ),
    ).toThrow(/both hostname and hostname_pattern/);
    expect(() =>
      parseRoutedConfig(
        `[[listeners]]\naddr = "127.0.0.1:8443"\n[[listeners.routes]]\nhostname_pattern = '${APPS}'\nbackend = "{ap}.svc:1"\n`,
        "t.toml",
      ),
    ).toThrow(/\{ap\}/);
  });

  test("stored value and etcd key round-trip; older releases' rule refuses the key", () => {
    const r = route(APPS, "{app}.svc.test:443");
    const back = decodeRoute({ hostname: APPS, alpn: [] }, encodeRoute(r));
    expect(back.ok && back.value.hostname).toBe(APPS);
    const key = keys.route("/p/", "l", r);
    const e = parseEntry("/p/", key, encodeRoute(r));
    expect(e?.kind === "route" && e.route.hostname).toBe(APPS);
    expect(decodeRoute({ hostname: "^(x$", alpn: [] }, encodeRoute(r)).ok).toBe(false);
  });
});
