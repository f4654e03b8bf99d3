import { describe, expect, test } from "bun:test";
import { ConfigError, POOL_DEFAULTS } from "../../src/config/config";
import { parseRoutedConfig } from "../../src/routing/route_config";
import { route } from "../helpers/routes";
import { parseDuration } from "../../src/config/duration";

const L = `[[listeners]]\naddr = ":8443"\n`;

describe("parseConfig", () => {
  test("defaults", () => {
    const c = parseRoutedConfig(L, "/etc/mc-proxy/c.toml");
    expect(c.proxy).toEqual({
      connectTimeoutMs: 5000,
      idleTimeoutMs: 300_000,
      quicIdleTimeoutMs: 30_000,
      helloTimeoutMs: 10_000,
      maxHelloBytes: 65536,
      shutdownTimeoutMs: 30_000,
      drainTimeoutMs: 0,
      workers: "auto",
      pool: POOL_DEFAULTS,
    });
    expect(c.firewall.rateLimit).toBe(0);
    expect(c.firewall.rateWindowMs).toBe(1000);
    expect(c.log).toEqual({ level: "info", format: "text" });
    expect(c.grpc).toBeNull();
    expect(c.databasePath).toBe("/etc/mc-proxy/mc-proxy.db");
    expect(c.listeners[0]!.bind).toEqual({ host: "", port: 8443 });
  });
  test("relative paths resolve against the config file's folder", () => {
    const c = parseRoutedConfig(
      `${L}[database]\npath = "data/p.db"\n[firewall]\ngeoip_db = "/abs/g.mmdb"\n`,
      "/srv/x/c.toml",
    );
    expect(c.databasePath).toBe("/srv/x/data/p.db");
    expect(c.firewall.geoipDb).toBe("/abs/g.mmdb");
  });
  test("route host names are normalised; wildcards kept", () => {
    const c = parseRoutedConfig(
      `${L}  [[listeners.routes]]\n  hostname = "Alpha.Example.COM."\n  backend = "[::1]:9000"\n  [[listeners.routes]]\n  hostname = "*.Example.org"\n  backend = "backend.internal:9001"\n`,
      "c.toml",
    );
    expect(c.listeners[0]!.routes).toEqual([
      route("alpha.example.com", "[::1]:9000"),
      route("*.example.org", "backend.internal:9001"),
    ]);
  });
  test("IPv6 listener addresses in brackets", () => {
    const c = parseRoutedConfig(`[[listeners]]\naddr = "[::1]:8443"\n`, "c.toml");
    expect(c.listeners[0]!.bind).toEqual({ host: "::1", port: 8443 });
  });
  test("firewall values are normalised", () => {
    const c = parseRoutedConfig(
      `${L}[firewall]\nblocked_ips = ["::ffff:192.0.2.1"]\nblocked_cidrs = ["2001:DB8::/32"]\n`,
      "c.toml",
    );
    expect(c.firewall.blockedIps).toEqual(["192.0.2.1"]);
    expect(c.firewall.blockedCidrs).toEqual(["2001:db8::/32"]);
  });
  test("env overrides are typed: lists, numbers, durations", () => {
    const c = parseRoutedConfig(L, "c.toml", {
      MCPROXY_FIREWALL_BLOCKED_IPS: "192.0.2.1, 192.0.2.2",
      MCPROXY_FIREWALL_RATE_LIMIT: "20",
      MCPROXY_PROXY_HELLO_TIMEOUT: "2s",
      MCPROXY_LOG_FORMAT: "json",
    });
    expect(c.firewall.blockedIps).toEqual(["192.0.2.1", "192.0.2.2"]);
    expect(c.firewall.rateLimit).toBe(20);
    expect(c.proxy.helloTimeoutMs).toBe(2000);
    expect(c.log.format).toBe("json");
  });
  test("every problem is reported at once, each with the file name", () => {
    try {
      parseRoutedConfig(`[[listeners]]\naddr = "x"\n[proxy]\nidle_timeout = "1y"\nhello_timeout = 5\n`, "bad.toml");
      throw new Error("expected a ConfigError");
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      const p = (e as ConfigError).problems;
      expect(p.length).toBe(3);
      expect((e as ConfigError).message.split("\n").every((l) => l.startsWith("bad.toml: "))).toBe(true);
    }
  });
});

describe("[fingerprints]", () => {
  const problems = (toml: string): string[] => {
    try {
      parseRoutedConfig(`${L}${toml}`, "f.toml");
      return [];
    } catch (e) {
      return (e as ConfigError).problems;
    }
  };
  test("top is bounded at 10,000 places per event loop (a report and its merge stay a few ms each), 0 turns it off", () => {
    for (const top of [0, 1, 1000, 10_000])
      expect(parseRoutedConfig(`${L}[fingerprints]\ntop = ${top}\n`, "f.toml").fingerprints.top).toBe(top);
    for (const top of [10_001, 100_000, -1])
      expect(problems(`[fingerprints]\ntop = ${top}\n`)).toEqual([
        `fingerprints.top: ${top} is out of range 0-10000 (0 turns the table off)`,
      ]);
  });
});

describe("parseDuration", () => {
  test("units and combinations", () => {
    expect(parseDuration("500ms")).toEqual({ ok: true, value: 500 });
    expect(parseDuration("10s")).toEqual({ ok: true, value: 10_000 });
    expect(parseDuration("5m")).toEqual({ ok: true, value: 300_000 });
    expect(parseDuration("1h")).toEqual({ ok: true, value: 3_600_000 });
    expect(parseDuration("1m30s")).toEqual({ ok: true, value: 90_000 });
    expect(parseDuration("1.5s")).toEqual({ ok: true, value: 1500 });
  });
  test("refuses what is not a duration", () => {
    for (const t of ["", "10", "s", "10 s", "10sec", "-1s", "1d", "5m "])
      expect(parseDuration(t)).toEqual({ ok: false, error: expect.stringContaining("is not a duration") });
  });
});
