// The config file: listeners that are the same endpoint, numbers with a
// range (config/ranges.ts), durations, trusted_proxies that cover everyone.
import { describe, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseRoutedConfig } from "../../src/routing/route_config";
import { problems } from "../helpers/config_problems";
import { SqliteDatabase } from "../../src/store/sqlite_database";

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
      expect(
        p.some((x) => x.startsWith("listeners[1].addr:") && x.includes("same endpoint as listeners[0].addr")),
      ).toBe(true);
    });
  }
  test("different endpoints are fine", () => {
    expect(problems(listeners("127.0.0.1:18443", "127.0.0.2:18443"))).toEqual([]);
    expect(problems(listeners(":18443", ":18444"))).toEqual([]);
  });

  const one = `[[listeners]]\naddr = ":18443"\n`;
  const cases: [string, string, RegExp][] = [
    [
      "shutdown_timeout 600h",
      `${one}[proxy]\nshutdown_timeout = "600h"\n`,
      /proxy\.shutdown_timeout: "600h" is too long \(durations are at most 576h\)/,
    ],
    [
      "a health-check timeout 600h",
      `${one}[proxy]\nhealth_check_timeout = "600h"\n`,
      /proxy\.health_check_timeout: "600h" is too long/,
    ],
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
    [
      "max_connections 4294967301",
      `[[listeners]]\naddr = ":18443"\nmax_connections = 4294967301\n`,
      /listeners\[0\]\.max_connections: 4294967301 must be 0 \(unlimited\) to 2147483647/,
    ],
    [
      "max_connections 3000000000",
      `[[listeners]]\naddr = ":18443"\nmax_connections = 3000000000\n`,
      /listeners\[0\]\.max_connections: 3000000000 must be 0/,
    ],
    [
      "rate_limit 3000000000",
      `${one}[firewall]\nrate_limit = 3000000000\n`,
      /firewall\.rate_limit: 3000000000 is out of range 0-2147483647/,
    ],
    [
      "etcd dial_timeout 700h",
      `${one}[store]\nbackend = "etcd"\n[etcd]\nendpoints = ["http://127.0.0.1:2379"]\nprefix = "/a/"\ndial_timeout = "700h"\n`,
      /etcd\.dial_timeout: "700h" is too long/,
    ],
  ];
  for (const [what, toml, why] of cases) {
    test(`refused: ${what}`, () => {
      expect(problems(toml).some((p) => why.test(p))).toBe(true);
    });
  }
  test("a route's connect_timeout is read, and kept by SQLite", () => {
    const c = parseRoutedConfig(
      `[[listeners]]\naddr = ":18443"\n  [[listeners.routes]]\n  hostname = "a.example.com"\n  backend = "127.0.0.1:1"\n  connect_timeout = "1500ms"\n`,
      "t.toml",
    );
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
    const c = parseRoutedConfig(
      `[[listeners]]\naddr = ":18443"\nproxy_protocol = true\ntrusted_proxies = ["10.0.0.0/8", "::/0"]\n`,
      "t.toml",
    );
    expect(c.warnings.length).toBe(1);
    expect(c.warnings[0]).toContain("listeners[0].trusted_proxies");
    expect(c.warnings[0]).toContain("::/0");
    expect(
      parseRoutedConfig(
        `[[listeners]]\naddr = ":18443"\nproxy_protocol = true\ntrusted_proxies = ["10.0.0.0/8"]\n`,
        "t.toml",
      ).warnings,
    ).toEqual([]);
  });
});
