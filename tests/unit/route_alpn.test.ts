// Routes on more than the name: ALPN routes, the per-route source policy and
// connection limit, and the rules every source shares (routing/route.ts).
import { describe, expect, test } from "bun:test";
import { POOL_DEFAULTS } from "../../src/config/config";
import { BackendTable } from "../../src/routing/backend_table";
import { bindRoutes } from "../../src/routing/pool";
import {
  type Route,
  alpnError,
  routeName,
  routeProblems,
  routeSetProblems,
  withoutClashes,
} from "../../src/routing/route";
import { sourceList } from "../../src/routing/route_fields";
import { parseRoutedConfig } from "../../src/routing/route_config";
import { RouteTable } from "../../src/routing/route_table";
import { keys, parseEntry, stateFrom } from "../../src/store/etcd_layout";
import { encodeRoute as routeValue } from "../../src/store/route_codec";
import { route } from "../helpers/routes";

const alpnRoute = (hostname: string, backend: string, alpn: string[], extra: Partial<Route> = {}): Route => ({
  ...route(hostname, backend),
  alpn,
  ...extra,
});

function table(routes: Route[], defaultRoute: Route | null = null, bt = new BackendTable(256, 2)): RouteTable {
  const b = bindRoutes(bt, 0, routes, defaultRoute);
  return new RouteTable(b.routes, b.defaultRoute, POOL_DEFAULTS, bt);
}

describe("ALPN routes", () => {
  const t = table(
    [
      route("app.example.com", "app:1"),
      alpnRoute("app.example.com", "acme:1", ["acme-tls/1"]),
      alpnRoute("db.example.com", "pg:1", ["postgresql"]),
      alpnRoute("app.example.com", "h2:1", ["h2", "h3"]),
      route("*.example.com", "wild:1"),
      alpnRoute("*.example.com", "wildacme:1", ["acme-tls/1"]),
    ],
    route("", "default:1"),
  );
  const to = (host: string | null, alpn: string[]) => t.lookup(host, alpn)?.addr(0) ?? null;

  test("a protocol a route names picks that route; none: the plain route", () => {
    expect(to("app.example.com", ["acme-tls/1"])).toBe("acme:1");
    expect(to("app.example.com", [])).toBe("app:1");
    expect(to("app.example.com", ["http/1.1"])).toBe("app:1");
  });
  test("the client's own order decides between two routes", () => {
    expect(to("app.example.com", ["h2", "acme-tls/1"])).toBe("h2:1");
    expect(to("app.example.com", ["acme-tls/1", "h2"])).toBe("acme:1");
    expect(to("app.example.com", ["http/1.1", "h3", "acme-tls/1"])).toBe("h2:1");
  });
  test("protocols compare exactly (RFC 7301: opaque bytes)", () =>
    expect(to("app.example.com", ["ACME-TLS/1", "H2"])).toBe("app:1"));
  test("wildcards take alpn too", () => {
    expect(to("x.example.com", ["acme-tls/1"])).toBe("wildacme:1");
    expect(to("x.example.com", ["h2"])).toBe("wild:1");
  });
  test("a hostname with only ALPN routes is passed over for other clients: the wildcard, then the default route", () => {
    expect(to("db.example.com", ["postgresql"])).toBe("pg:1");
    expect(to("db.example.com", ["h2"])).toBe("wild:1");
    const only = table([alpnRoute("db.example.com", "pg:1", ["postgresql"])]);
    expect(only.lookup("db.example.com", [])).toBeNull();
    expect(only.lookup("db.example.com", ["postgresql"])?.addr(0)).toBe("pg:1");
  });
  test("no SNI: the default route, whatever the ALPN", () => expect(to(null, ["acme-tls/1"])).toBe("default:1"));
  test("names: hostname+protocols, sorted", () => {
    expect(routeName({ hostname: "a.example", alpn: [] })).toBe("a.example");
    expect(routeName({ hostname: "a.example", alpn: ["h3", "h2"] })).toBe("a.example+h2,h3");
    expect(t.routes().map((r) => routeName(r))).toEqual([
      "*.example.com",
      "*.example.com+acme-tls/1",
      "app.example.com",
      "app.example.com+acme-tls/1",
      "app.example.com+h2,h3",
      "db.example.com+postgresql",
    ]);
    expect(t.find("app.example.com+h2,h3")?.backends[0]?.addr).toBe("h2:1");
  });
});

describe("the rules", () => {
  test("protocol names: 1-255 printable ASCII, no comma, no space, none twice, at most 16", () => {
    expect(alpnError(["acme-tls/1", "postgresql", "xmpp-client", "http/1.1"], "alpn")).toBeNull();
    expect(alpnError([""], "alpn")).toContain("1-255");
    expect(alpnError(["a,b"], "alpn")).toContain(",");
    expect(alpnError(["h 2"], "alpn")).toContain("printable");
    expect(alpnError(["h2", "h2"], "alpn")).toContain("twice");
    expect(alpnError(["x".repeat(256)], "alpn")).toContain("1-255");
    expect(
      alpnError(
        Array.from({ length: 17 }, (_, i) => `p${i}`),
        "alpn",
      ),
    ).toContain("at most 16");
    expect(alpnError("h2", "alpn")).toContain("list");
  });
  test("(hostname, protocol) once per listener; one plain route per hostname", () => {
    expect(
      routeSetProblems(
        [
          route("a.example", "x:1"),
          alpnRoute("a.example", "y:1", ["h2"]),
          alpnRoute("a.example", "z:1", ["acme-tls/1"]),
        ],
        "r",
      ),
    ).toEqual([]);
    expect(
      routeSetProblems([alpnRoute("a.example", "y:1", ["h2", "h3"]), alpnRoute("a.example", "z:1", ["h3"])], "r")[0],
    ).toContain('ALPN "h3" is in two routes');
    expect(routeSetProblems([route("a.example", "x:1"), route("a.example", "y:1")], "r")[0]).toContain(
      "two routes without alpn",
    );
    const dropped: string[] = [];
    const kept = withoutClashes(
      [
        alpnRoute("a.example", "y:1", ["h2", "h3"]),
        alpnRoute("a.example", "z:1", ["h3"]),
        alpnRoute("b.example", "z:1", ["h3"]),
      ],
      (r) => dropped.push(routeName(r)),
    );
    expect(kept.map((r) => routeName(r))).toEqual(["a.example+h2,h3", "b.example+h3"]);
    expect(dropped).toEqual(["a.example+h3"]);
  });
  test("allow / deny: addresses and CIDR blocks in canonical form; bad entries named", () => {
    expect(sourceList(["10.0.0.0/8", "127.0.0.2", "2001:DB8::/32", "::1"], "allow")).toEqual({
      ok: true,
      value: ["10.0.0.0/8", "127.0.0.2/32", "2001:db8::/32", "::1/128"],
    });
    expect(sourceList(["10.0.0.1/8"], "allow")).toEqual({ ok: false, error: expect.stringContaining("allow[0]") });
    expect(sourceList(["nope"], "deny")).toEqual({ ok: false, error: expect.stringContaining("deny[0]") });
    expect(routeProblems({ ...route("a.example", "x:1"), allow: ["10.0.0.0/8"] }, "r")).toEqual([]);
    expect(routeProblems({ ...route("a.example", "x:1"), allow: ["127.0.0.2"] }, "r")[0]).toContain("canonical");
    expect(routeProblems({ ...route("a.example", "x:1"), maxConnections: -1 }, "r")[0]).toContain("max_connections");
    expect(routeProblems({ ...route("", "x:1"), alpn: ["h2"] }, "r")[0]).toContain("default route");
  });
  test("the config file: alpn, allow, deny, max_connections; a (hostname, protocol) twice is an error", () => {
    const cfg = parseRoutedConfig(
      `[[listeners]]
addr = "127.0.0.1:21443"
  [[listeners.routes]]
  hostname = "app.example.com"
  backend = "127.0.0.1:8443"
  allow = ["10.0.0.0/8", "127.0.0.1"]
  deny = ["10.9.0.0/16"]
  max_connections = 10
  [[listeners.routes]]
  hostname = "App.Example.com"
  alpn = ["acme-tls/1"]
  backend = "127.0.0.1:9443"
`,
      "t.toml",
    );
    const [plain, acme] = cfg.listeners[0]!.routes;
    expect(plain).toMatchObject({
      alpn: [],
      allow: ["10.0.0.0/8", "127.0.0.1/32"],
      deny: ["10.9.0.0/16"],
      maxConnections: 10,
    });
    expect(acme).toMatchObject({ hostname: "app.example.com", alpn: ["acme-tls/1"], allow: [], maxConnections: 0 });
    const twice = () =>
      parseRoutedConfig(
        `[[listeners]]\naddr = "127.0.0.1:21443"\n[[listeners.routes]]\nhostname = "a.example"\nalpn = ["h2", "acme-tls/1"]\nbackend = "x:1"\n[[listeners.routes]]\nhostname = "a.example"\nalpn = ["acme-tls/1"]\nbackend = "y:1"\n`,
        "t.toml",
      );
    expect(twice).toThrow(
      /routes\[1\]\.hostname: "a\.example" with ALPN "acme-tls\/1" duplicates listeners\[0\]\.routes\[0\]/,
    );
    expect(() =>
      parseRoutedConfig(
        `[[listeners]]\naddr = "127.0.0.1:21443"\n[[listeners.routes]]\nhostname = "a.example"\nallow = ["10.0.0.1/8"]\nbackend = "x:1"\n`,
        "t.toml",
      ),
    ).toThrow(/allow\[0\].*host bits/);
  });
});

describe("per-route policy and limit", () => {
  test("allow and deny on the client address, IPv4 and IPv6", () => {
    const t = table([{ ...route("a.example", "x:1"), allow: ["127.0.0.0/8", "::1/128"], deny: ["127.0.0.3/32"] }]);
    const p = t.lookup("a.example")!;
    expect(p.enter("127.0.0.2", 0)).toBeNull();
    p.leave(0);
    expect(p.enter("127.0.0.3", 0)).toBe("route_denied");
    expect(p.enter("10.1.1.1", 0)).toBe("route_denied");
    expect(p.enter("::1", 0)).toBeNull();
    p.leave(0);
    expect(p.enter("2001:db8::1", 0)).toBe("route_denied");
    expect(p.active).toBe(0);
  });
  test("max_connections is exact over workers, and a dead worker's places come back", () => {
    const bt = new BackendTable(64, 2);
    const t = table([{ ...route("a.example", "x:1"), maxConnections: 3 }], null, bt);
    const p = t.lookup("a.example")!;
    expect([p.enter("1.1.1.1", 0), p.enter("1.1.1.1", 1), p.enter("1.1.1.1", 1), p.enter("1.1.1.1", 0)]).toEqual([
      null,
      null,
      null,
      "over_capacity",
    ]);
    expect(p.active).toBe(3);
    bt.forgetWorker(1);
    expect(p.active).toBe(1);
    expect(p.enter("1.1.1.1", 0)).toBeNull();
    p.leave(0);
    p.leave(0);
    expect(p.active).toBe(0);
  });
  test("a route replaced keeps its count; a removed one gives its slot back", () => {
    const bt = new BackendTable(8, 1);
    const r = { ...route("a.example", "x:1"), maxConnections: 2 };
    const b1 = bindRoutes(bt, 0, [r], null);
    new RouteTable(b1.routes, null, POOL_DEFAULTS, bt).lookup("a.example")!.enter("1.1.1.1", 0);
    const b2 = bindRoutes(bt, 0, [{ ...r, backends: [{ addr: "y:1", weight: 1, backup: false }] }], null);
    expect(b2.routes[0]!.countRef).toEqual(b1.routes[0]!.countRef);
    expect(bt.active(b2.routes[0]!.countRef)).toBe(1);
  });
});

describe("etcd: ALPN routes and policy values", () => {
  const P = "/mc/";
  test("an ALPN route is a four-part key (older releases ignore it); policy values are version 2", () => {
    const acme = alpnRoute("app.example.com", "127.0.0.1:9", ["acme-tls/1"]);
    const key = keys.route(P, "public", acme);
    expect(key).toBe("/mc/routes/public/app.example.com/acme-tls%2F1");
    const stored = { ...acme, backends: [{ ...acme.backends[0]!, state: "enabled" as const }] };
    expect(parseEntry(P, key, routeValue(acme))).toMatchObject({
      kind: "route",
      listener: "public",
      route: { alpn: ["acme-tls/1"], backends: stored.backends },
    });
    expect(JSON.parse(routeValue(acme)).version).toBe(1);
    const limited = { ...route("a.example", "x:1"), allow: ["10.0.0.0/8"], maxConnections: 4 };
    expect(JSON.parse(routeValue(limited))).toMatchObject({ version: 2, allow: ["10.0.0.0/8"], max_connections: 4 });
    expect(parseEntry(P, keys.route(P, "public", limited), routeValue(limited))).toMatchObject({
      route: { allow: ["10.0.0.0/8"], maxConnections: 4 },
    });
    // A version 1 value must not carry policy (an older reader would drop it silently).
    expect(
      parseEntry(
        P,
        `${P}routes/public/a.example`,
        '{"version":1,"backends":[{"addr":"x:1","weight":1,"backup":false}],"balance":"round_robin","send_proxy_protocol":"off","allow":["10.0.0.0/8"]}',
      ),
    ).toMatchObject({
      kind: "invalid",
      reason: expect.stringContaining("version 2"),
    });
    expect(parseEntry(P, `${P}routes/public/a.example/h3%2Ch2`, routeValue(acme))).toMatchObject({
      kind: "invalid",
      reason: expect.stringContaining("sorted"),
    });
    expect(parseEntry(P, `${P}routes/public/a.example/h%202`, routeValue(acme))).toMatchObject({ kind: "invalid" });
  });
  test("two keys claiming one (hostname, protocol): the first stands, the other is reported", () => {
    const a = alpnRoute("app.example.com", "127.0.0.1:9", ["acme-tls/1", "h2"]);
    const b = alpnRoute("app.example.com", "127.0.0.1:8", ["h2"]);
    const bad: string[] = [];
    const s = stateFrom(
      P,
      [
        { key: keys.route(P, "public", a), value: routeValue(a) },
        { key: keys.route(P, "public", b), value: routeValue(b) },
      ],
      (k) => bad.push(k),
    );
    expect(s.listeners.get("public")!.routes.map((r) => routeName(r))).toEqual(["app.example.com+acme-tls/1,h2"]);
    expect(bad).toEqual(["/mc/routes/public/app.example.com/h2"]);
  });
});
