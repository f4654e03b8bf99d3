// Unit tests for defects a review found: one validator for every source
// (config, admin API, etcd values), listeners that are the same endpoint,
// numbers without an upper bound, the rate limiter's locks and eviction,
// the backend-slot limit checked before a write, the ClientHello's end for
// retries, least_connections' ties, the audit line's fields.
import { describe, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AdminError, AdminService } from "../../src/admin/admin_service";
import { auditFields } from "../../src/admin/grpc_server";
import { ConfigError, POOL_DEFAULTS } from "../../src/config/config";
import { parseRoutedConfig } from "../../src/routing/route_config";
import { RateLimiter } from "../../src/firewall/rate_limiter";
import { Logger } from "../../src/log/logger";
import { BackendTable } from "../../src/routing/backend_table";
import { PLAIN, RoutePool, bindRoutes } from "../../src/routing/pool";
import { ControlPlane } from "../../src/server/control_plane";
import { ClientHelloReader } from "../../src/sni/client_hello_reader";
import { SqliteConfigStore } from "../../src/store/sqlite_config_store";
import { parseEntry, routeValue } from "../../src/store/etcd_layout";
import { v1RouteValue } from "../helpers/etcd";
import { SqliteDatabase } from "../../src/store/sqlite_database";
import { concat, helloFor, records, clientHelloBody, handshake, sniExtension } from "../helpers/hello_builder";

const P = "/mc/";
const route = (over: Record<string, unknown>) => v1RouteValue("127.0.0.1:9001", over);

function problems(toml: string): string[] {
  try {
    parseRoutedConfig(toml, "t.toml");
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  return [];
}

describe("etcd values pass the same validation as the config file and the admin API", () => {
  const bad: [string, string, string | null, RegExp][] = [
    ["an IP rule that is no address", `${P}rules/ip/zz%3Azz`, '{"version":1}', /not an IPv4 or IPv6 address/],
    ["a rule value not in canonical form", `${P}rules/ip/2001%3A0DB8%3A%3A1`, '{"version":1}', /canonical/],
    ["a country rule in lower case", `${P}rules/country/kp`, '{"version":1}', /country code/],
    ["weight 0", `${P}routes/public/app.example.com`, route({ backends: [{ addr: "127.0.0.1:1", weight: 0, backup: false }] }), /weight: 0 must be 1-256/],
    ['balance "random"', `${P}routes/public/app.example.com`, route({ balance: "random" }), /balance: "random" must be one of/],
    ["no backends", `${P}routes/public/app.example.com`, route({ backends: [] }), /at least one backend/],
    ["backends as a string", `${P}routes/public/app.example.com`, route({ backends: "127.0.0.1:1" }), /must be a list of backends/],
    [
      "40 backends",
      `${P}routes/public/app.example.com`,
      route({ backends: Array.from({ length: 40 }, (_, i) => ({ addr: `127.0.0.1:${1000 + i}`, weight: 1, backup: false })) }),
      /40 backends; at most 31/,
    ],
    ["a value that is not JSON", `${P}routes/public/app.example.com`, "{not json", /not JSON/],
    ["a health-check timeout past 2^31 ms", `${P}routes/public/app.example.com`, route({ check: { timeoutMs: 2_160_000_000 } }), /health_check_timeout: 2160000000 ms is out of range/],
    ["retries 99", `${P}routes/public/app.example.com`, route({ retries: 99 }), /retries: 99 must be a whole number from 0 to 30/],
    ["a bad hostname in the key", `${P}routes/public/bad%20host`, route({}), /not a valid host name/],
    ["a key that is not URI-encoded", `${P}routes/public/%E0%A4%A`, route({}), /not URI-encoded/],
    ["max_connections 4294967301", `${P}listeners/public`, '{"version":1,"max_connections":4294967301}', /max_connections: 4294967301 must be 0 \(unlimited\) to 2147483647/],
    ["max_connections as a string", `${P}listeners/public`, '{"version":1,"max_connections":"5"}', /max_connections/],
    ["version 2", `${P}listeners/public`, '{"version":2,"max_connections":5}', /version 2/],
  ];
  for (const [what, key, value, why] of bad) {
    test(`refused: ${what}`, () => {
      const e = parseEntry(P, key, value);
      expect(e?.kind).toBe("invalid");
      expect((e as { reason: string }).reason).toMatch(why);
    });
  }

  test("good values still parse, and a deletion needs no value", () => {
    const r = {
      hostname: "app.example.com",
      ...PLAIN,
      backends: [{ addr: "127.0.0.1:9001", weight: 2, backup: false, state: "drain" as const }],
      balance: "least_connections" as const,
      healthCheck: "tcp" as const,
      check: { timeoutMs: 1500 },
      retries: 3,
      connectTimeoutMs: 250,
      sendProxyProtocol: "v2" as const,
    };
    const e = parseEntry(P, `${P}routes/public/app.example.com`, routeValue(r));
    expect(e).toEqual({ kind: "route", listener: "public", route: { ...r, check: { intervalMs: undefined, timeoutMs: 1500, rise: undefined, fall: undefined } } });
    expect(parseEntry(P, `${P}rules/cidr/10.0.0.0%2F8`, '{"version":1}')).toEqual({ kind: "rule", rule: { type: "cidr", value: "10.0.0.0/8" } });
    expect(parseEntry(P, `${P}rules/ip/zz%3Azz`, null)?.kind).toBe("rule");
    expect(parseEntry(P, `${P}listeners/public`, '{"version":1,"max_connections":2147483647}')).toEqual({ kind: "listener", name: "public", maxConnections: 2147483647 });
  });
});

describe("config: the same endpoint twice, and numbers with a range", () => {
  const listeners = (a: string, b: string) => `[[listeners]]\naddr = "${a}"\n[[listeners]]\naddr = "${b}"\n`;
  for (const [a, b] of [
    [":18443", "[::]:18443"],
    ["0.0.0.0:18443", ":18443"],
    ["[::0]:18443", "[::]:18443"],
    ["[2001:DB8::1]:18443", "[2001:db8:0::1]:18443"],
    ["localhost:18443", "LOCALHOST:18443"],
  ]) {
    test(`${a} and ${b} are one endpoint: refused, naming the key`, () => {
      const p = problems(listeners(a!, b!));
      expect(p.some((x) => x.startsWith("listeners[1].addr:") && x.includes("same endpoint as listeners[0].addr"))).toBe(true);
    });
  }
  test("different endpoints are fine", () => {
    expect(problems(listeners("127.0.0.1:18443", "127.0.0.2:18443"))).toEqual([]);
    expect(problems(listeners(":18443", ":18444"))).toEqual([]);
  });

  const one = `[[listeners]]\naddr = ":18443"\n`;
  const cases: [string, string, RegExp][] = [
    ["shutdown_timeout 600h", `${one}[proxy]\nshutdown_timeout = "600h"\n`, /proxy\.shutdown_timeout: "600h" is too long \(durations are at most 576h\)/],
    ["a health-check timeout 600h", `${one}[proxy]\nhealth_check_timeout = "600h"\n`, /proxy\.health_check_timeout: "600h" is too long/],
    [
      "a route's health-check interval 601h",
      `[[listeners]]\naddr = ":18443"\n  [[listeners.routes]]\n  hostname = "a.example.com"\n  backends = ["127.0.0.1:1", "127.0.0.1:2"]\n  health_check_interval = "601h"\n`,
      /listeners\[0\]\.routes\[0\]\.health_check_interval: "601h" is too long/,
    ],
    [
      "a route's connect_timeout 600h",
      `[[listeners]]\naddr = ":18443"\n  [[listeners.routes]]\n  hostname = "a.example.com"\n  backend = "127.0.0.1:1"\n  connect_timeout = "600h"\n`,
      /listeners\[0\]\.routes\[0\]\.connect_timeout: "600h" is too long/,
    ],
    ["max_connections 4294967301", `[[listeners]]\naddr = ":18443"\nmax_connections = 4294967301\n`, /listeners\[0\]\.max_connections: 4294967301 must be 0 \(unlimited\) to 2147483647/],
    ["max_connections 3000000000", `[[listeners]]\naddr = ":18443"\nmax_connections = 3000000000\n`, /listeners\[0\]\.max_connections: 3000000000 must be 0/],
    ["rate_limit 3000000000", `${one}[firewall]\nrate_limit = 3000000000\n`, /firewall\.rate_limit: 3000000000 is out of range 0-2147483647/],
    ["etcd dial_timeout 700h", `${one}[store]\nbackend = "etcd"\n[etcd]\nendpoints = ["http://127.0.0.1:2379"]\nprefix = "/a/"\ndial_timeout = "700h"\n`, /etcd\.dial_timeout: "700h" is too long/],
  ];
  for (const [what, toml, why] of cases) {
    test(`refused: ${what}`, () => {
      expect(problems(toml).some((p) => why.test(p))).toBe(true);
    });
  }
  test("a route's connect_timeout is read, and kept by SQLite", () => {
    const c = parseRoutedConfig(`[[listeners]]\naddr = ":18443"\n  [[listeners.routes]]\n  hostname = "a.example.com"\n  backend = "127.0.0.1:1"\n  connect_timeout = "1500ms"\n`, "t.toml");
    expect(c.listeners[0]!.routes[0]!.connectTimeoutMs).toBe(1500);
    const db = SqliteDatabase.open(join(mkdtempSync(join(tmpdir(), "mcproxy-ct-")), "db.sqlite"));
    try {
      db.seed([{ addr: ":18443", maxConnections: 0, routes: c.listeners[0]!.routes }], []);
      expect(db.state().listeners.get(":18443")!.routes[0]!.connectTimeoutMs).toBe(1500);
    } finally {
      db.close();
    }
  });

  test("576h is the longest duration accepted", () => {
    expect(problems(`${one}[proxy]\nshutdown_timeout = "576h"\nidle_timeout = "576h"\n`)).toEqual([]);
  });

  test("trusted_proxies covering every address is a warning, not silence", () => {
    const c = parseRoutedConfig(`[[listeners]]\naddr = ":18443"\nproxy_protocol = true\ntrusted_proxies = ["10.0.0.0/8", "::/0"]\n`, "t.toml");
    expect(c.warnings.length).toBe(1);
    expect(c.warnings[0]).toContain("listeners[0].trusted_proxies");
    expect(c.warnings[0]).toContain("::/0");
    expect(parseRoutedConfig(`[[listeners]]\naddr = ":18443"\nproxy_protocol = true\ntrusted_proxies = ["10.0.0.0/8"]\n`, "t.toml").warnings).toEqual([]);
  });
});

describe("rate limiter: locks and eviction", () => {
  test("a lock held by another loop is never released by a loop that gave up waiting; the supervisor frees a dead loop's locks", () => {
    const buf = new SharedArrayBuffer(new RateLimiter(10, 1000, 4).buffer.byteLength);
    const a = new RateLimiter(10, 1000, 4, buf, 0);
    const locks = new Int32Array(buf, 0, 1);
    // Worker 3 holds the only set's lock (it died inside allow()).
    Atomics.store(locks, 0, 3 + 1);
    expect(a.allow(1, 1, 0)).toBe(true);
    expect(Atomics.load(locks, 0)).toBe(4);
    expect(a.releaseLocksOf(2)).toBe(0);
    expect(a.releaseLocksOf(3)).toBe(1);
    expect(Atomics.load(locks, 0)).toBe(0);
    expect(a.allow(1, 1, 0)).toBe(true);
    expect(Atomics.load(locks, 0)).toBe(0);
  });

  test("under a flood of new clients in one window, a limited client keeps its count", () => {
    // One set of 4 ways: the limited client and a flood of distinct sources.
    const r = new RateLimiter(3, 60_000, 4);
    for (let i = 0; i < 3; i++) expect(r.allow(7, 7, 1000)).toBe(true);
    expect(r.allow(7, 7, 1000)).toBe(false);
    for (let i = 0; i < 1000; i++) r.allow(100 + i, 0, 1000);
    expect(r.allow(7, 7, 1000)).toBe(false);
  });
});

describe("the backend-slot limit is checked before anything is written", () => {
  test("AddRoute past the table's size: RESOURCE_EXHAUSTED, the database and the tables unchanged", async () => {
    const dir = mkdtempSync(join(tmpdir(), "mcproxy-slots-"));
    const port = 20000 + Math.floor(Math.random() * 5000);
    const cfg = parseRoutedConfig(`[[listeners]]\naddr = "127.0.0.1:${port}"\n`, join(dir, "t.toml"));
    const quiet = new Logger("error", "text", { write() {}, flush() {} });
    const srv = await ControlPlane.start(cfg, quiet, { loops: 1, histograms: false, connectionCap: 0, backendSlots: 10 });
    const db = SqliteDatabase.open(join(dir, "db.sqlite"));
    db.seed([{ addr: cfg.listeners[0]!.name, maxConnections: 0, routes: [] }], []);
    const admin = new AdminService(srv, new SqliteConfigStore(db, srv), quiet);
    const pool = (n: number, base: number) => ({ backends: Array.from({ length: n }, (_, i) => ({ addr: `127.0.0.1:${base + i}`, weight: 1 })) });
    try {
      await admin.addRoute({ listener: `127.0.0.1:${port}`, route: { hostname: "a.example.com", backend: "", ...pool(3, 1000) } });
      await admin.addRoute({ listener: `127.0.0.1:${port}`, route: { hostname: "b.example.com", backend: "", ...pool(3, 2000) } });
      const before = JSON.stringify([...db.state().listeners]);
      const e = await admin.addRoute({ listener: `127.0.0.1:${port}`, route: { hostname: "c.example.com", backend: "", ...pool(3, 3000) } }).catch((x) => x);
      expect(e).toBeInstanceOf(AdminError);
      expect((e as AdminError).code).toBe(8); // RESOURCE_EXHAUSTED
      expect((e as AdminError).message).toContain("backend table is full");
      expect(JSON.stringify([...db.state().listeners])).toBe(before);
      expect(
        srv
          .listener(`127.0.0.1:${port}`)!
          .table.routes()
          .map((r) => r.hostname),
      ).toEqual(["a.example.com", "b.example.com"]);
      // Replacing a route's pool frees its old slots first: this fits.
      await admin.addRoute({ listener: `127.0.0.1:${port}`, route: { hostname: "b.example.com", backend: "", ...pool(5, 4000) } });
      expect(
        db
          .state()
          .listeners.get(`127.0.0.1:${port}`)!
          .routes.find((r) => r.hostname === "b.example.com")!.backends.length,
      ).toBe(5);
    } finally {
      srv.shutdown();
      await srv.done;
      db.close();
    }
  });
});

describe("the ClientHello's end in the stream (what a retry may replay)", () => {
  test("split at every offset, with data after it: the end is the hello record's end", () => {
    const hello = records(handshake(clientHelloBody([sniExtension("app.example.com")])), 100);
    const data = new Uint8Array([23, 3, 3, 0, 5, 1, 2, 3, 4, 5]);
    const stream = concat(hello, data);
    for (let cut = 1; cut < stream.length; cut++) {
      const r = new ClientHelloReader();
      let out = r.feed(stream.subarray(0, cut));
      if (out === null) out = r.feed(stream.subarray(cut));
      expect(out?.kind).toBe("hostname");
      expect(r.helloEnd).toBe(hello.length);
    }
    const whole = helloFor("app.example.com");
    expect(ClientHelloReader.wholeEnd(concat(whole, data))).toBe(whole.length);
  });
});

describe("least_connections", () => {
  test("sequential connections (every load 0) go round robin, weights respected", () => {
    const table = new BackendTable(16);
    const spec = {
      hostname: "a",
      ...PLAIN,
      backends: [
        { addr: "h:1", weight: 1, backup: false },
        { addr: "h:2", weight: 1, backup: false },
        { addr: "h:3", weight: 2, backup: false },
      ],
      balance: "least_connections" as const,
      healthCheck: "off" as const,
      check: {},
      retries: null,
      connectTimeoutMs: null,
      sendProxyProtocol: "off" as const,
    };
    const b = bindRoutes(table, 0, [spec], null);
    const p = new RoutePool(b.routes[0]!, POOL_DEFAULTS, table);
    const got = [0, 0, 0];
    for (let i = 0; i < 400; i++) got[p.pick("1.2.3.4", 0, 0)]!++;
    expect(got).toEqual([100, 100, 200]);
    // A loaded backend is still avoided.
    table.take(p.ref(2), 0);
    table.take(p.ref(2), 0);
    table.take(p.ref(2), 0);
    expect(p.pick("1.2.3.4", 0, 0)).not.toBe(2);
  });
});

test("audit fields: every field of the request, nested lists included, strings clipped", () => {
  const f = auditFields({
    listener: "l",
    route: {
      hostname: "x".repeat(100),
      backends: [
        { addr: "127.0.0.1:1", weight: 2 },
        { addr: "[::1]:2", backup: true },
      ],
    },
  });
  expect(f.listener).toBe("l");
  expect(String(f["route.hostname"])).toStartWith(`${"x".repeat(64)}…`);
  expect(f["route.backends[0].addr"]).toBe("127.0.0.1:1");
  expect(f["route.backends[0].weight"]).toBe(2);
  expect(f["route.backends[1].addr"]).toBe("[::1]:2");
  expect(f["route.backends[1].backup"]).toBe(true);
});
