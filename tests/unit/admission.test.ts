// The one admission path (src/server/admission.ts), fed values: the source
// verdict, trusted_proxies at accept, the ja4 verdict and the fingerprint
// record, the route and its policy and limit, the backend pick, a QUIC
// path's verdict — what a TCP connection and a QUIC flow both call.
import { describe, expect, test } from "bun:test";
import { POOL_DEFAULTS } from "../../src/config/config";
import { AddressTable } from "../../src/firewall/address_table";
import { Firewall } from "../../src/firewall/firewall";
import { HeavyHitters } from "../../src/metrics/heavy_hitters";
import { BackendTable } from "../../src/routing/backend_table";
import { type RoutePool, bindRoutes } from "../../src/routing/pool";
import type { Route } from "../../src/routing/route";
import { RouteTable } from "../../src/routing/route_table";
import {
  type AdmissionContext,
  acceptVerdict,
  admitHello,
  enterRoute,
  helloVerdict,
  pathVerdict,
  pickBackend,
  routeFor,
  sourceVerdict,
} from "../../src/server/admission";
import { ListenerRuntime } from "../../src/server/listener_runtime";
import { SharedCounters } from "../../src/server/shared_counters";
import { ListenerStats } from "../../src/server/stats";
import { ja4 } from "../../src/sni/ja4";
import { alpnExtension, clientHelloBody, sniExtension } from "../helpers/hello_builder";
import { route } from "../helpers/routes";

type Rules = ConstructorParameters<typeof Firewall>[0]["rules"];
const NO_RULES: Rules = { blockedIps: [], blockedCidrs: [], blockedCountries: [], blockedJa4: [] };

function context(rules: Partial<Rules> = {}, opts: { rateLimit?: number; top?: boolean } = {}) {
  const firewall = new Firewall({
    rules: { ...NO_RULES, ...rules },
    geoipDb: null,
    rateLimit: opts.rateLimit ?? 0,
    rateWindowMs: 10_000,
  });
  const backends = new BackendTable(64, 1);
  const ctx: AdmissionContext = {
    firewall,
    backends,
    workerId: 0,
    ja4: false,
    fingerprints: opts.top ? new HeavyHitters(10, 60_000) : null,
    wheel: { now: 1_000, nowSec: 1 },
  };
  return ctx;
}

function table(ctx: AdmissionContext, routes: Route[], defaultRoute: Route | null = null): RouteTable {
  const b = bindRoutes(ctx.backends, 0, routes, defaultRoute);
  return new RouteTable(b.routes, b.defaultRoute, POOL_DEFAULTS, ctx.backends);
}

const body = clientHelloBody([sniExtension("app.example.com"), alpnExtension("h2")]);
const hello = { buf: body, start: 0, length: body.length };

describe("the source verdict", () => {
  test("address rules and the rate limit, null to go on", () => {
    const ctx = context({ blockedIps: ["192.0.2.7"], blockedCidrs: ["198.51.100.0/24"] });
    expect(sourceVerdict(ctx, "192.0.2.7")).toBe("blocked_ip");
    expect(sourceVerdict(ctx, "198.51.100.9")).toBe("blocked_cidr");
    expect(sourceVerdict(ctx, "203.0.113.1")).toBeNull();
    const limited = context({}, { rateLimit: 1 });
    expect(sourceVerdict(limited, "203.0.113.1")).toBeNull();
    expect(sourceVerdict(limited, "203.0.113.1")).toBe("rate_limited");
  });

  test("at accept: a proxy_protocol listener judges its peer by trusted_proxies alone; the firewall waits for the header", () => {
    const ctx = context({ blockedIps: ["10.0.0.1"] });
    const t = table(ctx, []);
    const counters = new SharedCounters(1, 1);
    const base = { index: 0, addr: "127.0.0.1:443", name: "l", table: t, trustedProxies: ["10.0.0.0/8"] };
    const behind = new ListenerRuntime(
      { ...base, proxyProtocol: true },
      counters,
      new AddressTable(["10.0.0.0/8"]),
      new ListenerStats("l"),
    );
    expect(acceptVerdict(ctx, behind, "10.0.0.1")).toBeNull();
    expect(acceptVerdict(ctx, behind, "192.0.2.1")).toBe("untrusted_proxy");
    const plain = new ListenerRuntime({ ...base, proxyProtocol: false }, counters, null, new ListenerStats("l"));
    expect(acceptVerdict(ctx, plain, "10.0.0.1")).toBe("blocked_ip");
    expect(acceptVerdict(ctx, plain, "192.0.2.1")).toBeNull();
  });
});

describe("the ja4 verdict", () => {
  test("computed only when something reads it; judged by the rules; counted in the top table", () => {
    const s = { clientIp: "192.0.2.1", ja4: "" };
    expect(helloVerdict(context(), s, hello, "t")).toBeNull();
    expect(s.ja4).toBe("");
    const fp = ja4(body, 0, body.length, "q");
    const ctx = context({ blockedJa4: [fp] }, { top: true });
    const q = { clientIp: "192.0.2.1", ja4: "" };
    expect(helloVerdict(ctx, q, hello, "q")).toBe("blocked_ja4");
    expect(q.ja4).toBe(fp);
    // The same hello over TCP has another fingerprint (its first letter): not blocked.
    const t = { clientIp: "192.0.2.1", ja4: "" };
    expect(helloVerdict(ctx, t, hello, "t")).toBeNull();
    expect(t.ja4.startsWith("t")).toBe(true);
    const top = ctx.fingerprints!.report(Date.now());
    expect([...top.keys].sort()).toEqual([fp, t.ja4].sort());
    expect([...top.blocked]).toEqual(top.keys.map((k) => (k === fp ? 1 : 0)));
  });
});

describe("the route", () => {
  test("no name, no match: the default route when there is one", () => {
    const ctx = context();
    const t = table(ctx, [route("app.example.com", "127.0.0.1:1")]);
    expect(routeFor(t, null, [])).toBe("no_sni");
    expect(routeFor(t, "other.example.com", [])).toBe("no_route");
    expect((routeFor(t, "app.example.com", []) as { addr(i: number): string }).addr(0)).toBe("127.0.0.1:1");
    const d = table(ctx, [], route("", "127.0.0.1:2"));
    expect((routeFor(d, null, []) as { addr(i: number): string }).addr(0)).toBe("127.0.0.1:2");
  });

  test("the route's allow/deny, then its max_connections", () => {
    const ctx = context();
    const t = table(ctx, [
      { ...route("app.example.com", "127.0.0.1:1"), allow: ["192.0.2.0/24"], deny: ["192.0.2.9"], maxConnections: 1 },
    ]);
    const r = routeFor(t, "app.example.com", []);
    if (typeof r === "string") throw new Error(r);
    expect(enterRoute(ctx, r, "203.0.113.1")).toBe("route_denied");
    expect(enterRoute(ctx, r, "192.0.2.9")).toBe("route_denied");
    expect(enterRoute(ctx, r, "192.0.2.1")).toBeNull();
    expect(enterRoute(ctx, r, "192.0.2.2")).toBe("over_capacity");
    r.leave(0);
    expect(enterRoute(ctx, r, "192.0.2.2")).toBeNull();
  });
});

describe("the backend pick", () => {
  test("an index counted in the backend table; a backend never twice; tries stop at retries + 1", () => {
    const ctx = context();
    const pool = { ...route("app.example.com", "127.0.0.1:1"), retries: 1 };
    pool.backends = [
      { addr: "127.0.0.1:1", weight: 1, backup: false },
      { addr: "127.0.0.1:2", weight: 1, backup: false },
      { addr: "127.0.0.1:3", weight: 1, backup: false },
    ];
    const r = routeFor(table(ctx, [pool]), "app.example.com", []);
    if (typeof r === "string") throw new Error(r);
    const first = pickBackend(ctx, r, "192.0.2.1", 0, 0);
    if (typeof first === "string") throw new Error(first);
    expect(ctx.backends.active(r.ref(first))).toBe(1);
    const second = pickBackend(ctx, r, "192.0.2.1", 1 << first, 1);
    expect(second).not.toBe(first);
    expect(pickBackend(ctx, r, "192.0.2.1", 0b11, 2)).toBe("connect_failed");
  });

  test("none eligible: no_backend on the first try, connect_failed after", () => {
    const ctx = context();
    const r = routeFor(table(ctx, [{ ...route("app.example.com", "127.0.0.1:1"), retries: 2 }]), "app.example.com", []);
    if (typeof r === "string") throw new Error(r);
    expect(pickBackend(ctx, r, "192.0.2.1", 1, 0)).toBe("no_backend");
    expect(pickBackend(ctx, r, "192.0.2.1", 1, 1)).toBe("connect_failed");
  });
});

describe("a QUIC flow's new address", () => {
  test("passes the source verdict, the flow's ja4 verdict and the route's allow/deny", () => {
    const fp = ja4(body, 0, body.length, "q");
    const ctx = context({ blockedIps: ["192.0.2.66"] });
    const t = table(ctx, [{ ...route("app.example.com", "127.0.0.1:1"), deny: ["192.0.2.99"] }]);
    const flow = { sni: "app.example.com", alpn: ["h3"], ja4: fp };
    expect(pathVerdict(ctx, t, "192.0.2.1", flow)).toBeNull();
    expect(pathVerdict(ctx, t, "192.0.2.66", flow)).toBe("blocked_ip");
    expect(pathVerdict(ctx, t, "192.0.2.99", flow)).toBe("route_denied");
    expect(pathVerdict(context({ blockedJa4: [fp] }), t, "192.0.2.1", flow)).toBe("blocked_ja4");
    expect(pathVerdict(ctx, t, "192.0.2.1", { ...flow, sni: "gone.example.com" })).toBe("route_denied");
  });
});

describe("after the hello, in order", () => {
  const named = (hostname: string | null, alpn: string[] = []) => ({
    buf: body,
    start: 0,
    length: body.length,
    hostname,
    alpn,
  });
  const session = () => ({
    clientIp: "192.0.2.1",
    ja4: "",
    sni: null as string | null,
    alpn: [] as readonly string[],
    route: null as RoutePool | null,
  });

  test("ja4 first (nothing routed), then the route, its policy, its limit; the route is named even when it refuses", () => {
    const fp = ja4(body, 0, body.length, "t");
    const ctx = context({ blockedJa4: [fp] });
    const t = table(ctx, [{ ...route("app.example.com", "127.0.0.1:1"), deny: ["192.0.2.0/24"] }]);
    const blocked = session();
    expect(admitHello(ctx, t, blocked, named("app.example.com"), "t")).toBe("blocked_ja4");
    expect([blocked.sni, blocked.route]).toEqual([null, null]);
    const open = context();
    const t2 = table(open, [{ ...route("app.example.com", "127.0.0.1:1"), deny: ["192.0.2.0/24"], maxConnections: 1 }]);
    const denied = session();
    expect(admitHello(open, t2, denied, named("app.example.com", ["h2"]), "t")).toBe("route_denied");
    expect(denied.route?.name).toBe("app.example.com");
    expect(denied.alpn).toEqual(["h2"]);
    const ok = { ...session(), clientIp: "203.0.113.1" };
    expect(admitHello(open, t2, ok, named("app.example.com"), "q")).toBeNull();
    expect(admitHello(open, t2, { ...session(), clientIp: "203.0.113.2" }, named("app.example.com"), "q")).toBe(
      "over_capacity",
    );
    expect(admitHello(open, t2, session(), named(null), "t")).toBe("no_sni");
    expect(admitHello(open, t2, session(), named("x.example.org"), "t")).toBe("no_route");
  });
});
