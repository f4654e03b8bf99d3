// The command line of the compiled binary: check on valid and invalid
// configs, version, help, usage errors (exit 2).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { writeMmdb } from "../helpers/mmdb_writer";
import { freePort } from "../helpers/net";
import { type RunningProxy, cleanEnv, command, ensureBinary, runCli, startProxy, tempDir } from "../helpers/proxy";

const run = (args: string[], env: Record<string, string> = {}, cwd?: string) => runCli(args, { env, cwd });

function configFile(toml: string): string {
  const dir = tempDir();
  const f = join(dir, "c.toml");
  writeFileSync(f, toml);
  return f;
}

const LISTENER = `[[listeners]]
addr = "127.0.0.1:8443"
  [[listeners.routes]]
  hostname = "a.example.com"
  backend = "127.0.0.1:9001"
`;

/** stderr without any tcp_migrate_req line (check prints none: e2e/migrate_warning): what the config itself caused. */
function ownWarnings(err: string): string {
  return err
    .split("\n")
    .filter((l) => !l.includes("tcp_migrate_req"))
    .join("\n");
}

describe("mc-proxy check", () => {
  test("says nothing of net.ipv4.tcp_migrate_req: only the process that takes over does (e2e/migrate_warning)", () => {
    const r = run(["check", "-c", configFile(LISTENER)]);
    expect(r.code).toBe(0);
    expect(r.out).toContain("OK");
    expect(r.err).not.toContain("tcp_migrate_req");
  });

  test("a valid config passes with a summary", () => {
    const f = configFile(`${LISTENER}\n[proxy]\nidle_timeout = "2m"\n`);
    const r = run(["check", "-c", f]);
    expect(ownWarnings(r.err)).toBe("");
    expect(r.code).toBe(0);
    expect(r.out).toContain("OK");
    expect(r.out).toContain("idle_timeout=2m");
  });

  test("warns when the listeners' max_connections cannot fit in the open-file limit, naming both numbers", () => {
    const f = configFile(`[[listeners]]\naddr = "127.0.0.1:8443"\nmax_connections = 500\n`);
    const r = Bun.spawnSync(["prlimit", "--nofile=512:512", ...command("binary"), "check", "-c", f], {
      env: cleanEnv(),
      stdout: "pipe",
      stderr: "pipe",
    });
    expect(r.exitCode).toBe(0);
    const err = r.stderr.toString();
    expect(err).toContain("warning");
    expect(err).toContain("add up to 500");
    expect(err).toContain("open-file limit is 512");
    expect(ownWarnings(run(["check", "-c", f]).err)).toBe("");
  });

  test("the example config in examples/ is valid", () => {
    const r = run(["check", "-c", join(import.meta.dir, "../../examples/mc-proxy.toml")]);
    expect(ownWarnings(r.err)).toBe("");
    expect(r.code).toBe(0);
  });

  // Each: a config, and the text the error must contain (the key, and the value where there is one).
  const invalid: [string, string, string[]][] = [
    ["bad duration", `${LISTENER}[proxy]\nidle_timeout = "5 minutes"\n`, ["proxy.idle_timeout", "5 minutes"]],
    ["negative timeout", `${LISTENER}[proxy]\nconnect_timeout = "-5s"\n`, ["proxy.connect_timeout", "-5s", "negative"]],
    ["zero hello timeout", `${LISTENER}[proxy]\nhello_timeout = "0s"\n`, ["proxy.hello_timeout", "greater than zero"]],
    ["bare number as duration", `${LISTENER}[proxy]\nidle_timeout = 30\n`, ["proxy.idle_timeout", "30"]],
    [
      "bad CIDR",
      `${LISTENER}[firewall]\nblocked_cidrs = ["10.0.0.0/33"]\n`,
      ["firewall.blocked_cidrs[0]", "10.0.0.0/33"],
    ],
    [
      "non-canonical CIDR",
      `${LISTENER}[firewall]\nblocked_cidrs = ["10.0.0.1/8"]\n`,
      ["firewall.blocked_cidrs[0]", "10.0.0.1/8", "10.0.0.0/8"],
    ],
    ["bad IP", `${LISTENER}[firewall]\nblocked_ips = ["300.1.1.1"]\n`, ["firewall.blocked_ips[0]", "300.1.1.1"]],
    [
      "lower-case country",
      `${LISTENER}[firewall]\ngeoip_db = "g.mmdb"\nblocked_countries = ["kp"]\n`,
      ["firewall.blocked_countries[0]", "kp"],
    ],
    [
      "countries without a GeoIP database",
      `${LISTENER}[firewall]\nblocked_countries = ["KP"]\n`,
      ["firewall.geoip_db"],
    ],
    ["negative rate limit", `${LISTENER}[firewall]\nrate_limit = -1\n`, ["firewall.rate_limit", "-1"]],
    [
      "duplicate hostname on one listener",
      `${LISTENER}  [[listeners.routes]]\n  hostname = "A.example.com"\n  backend = "127.0.0.1:9002"\n`,
      ["listeners[0].routes[1].hostname", "A.example.com", "duplicates"],
    ],
    [
      "bad backend address",
      `[[listeners]]\naddr = ":8443"\n  [[listeners.routes]]\n  hostname = "a.example.com"\n  backend = "127.0.0.1"\n`,
      ["listeners[0].routes[0].backend", "127.0.0.1"],
    ],
    [
      "backend port out of range",
      `[[listeners]]\naddr = ":8443"\n  [[listeners.routes]]\n  hostname = "a.example.com"\n  backend = "127.0.0.1:70000"\n`,
      ["listeners[0].routes[0].backend", "70000"],
    ],
    ["unknown key", `${LISTENER}[proxy]\nidle_timeot = "5m"\n`, ["proxy.idle_timeot", "unknown key"]],
    [
      "unknown route key",
      `[[listeners]]\naddr = ":8443"\n  [[listeners.routes]]\n  hostname = "a.example.com"\n  backend = "127.0.0.1:1"\n  backendz = "x"\n`,
      ["listeners[0].routes[0].backendz", "unknown key"],
    ],
    [
      "backend and backends both",
      `[[listeners]]\naddr = ":8443"\n  [[listeners.routes]]\n  hostname = "a.example.com"\n  backend = "127.0.0.1:1"\n  backends = ["127.0.0.1:2"]\n`,
      ["listeners[0].routes[0]", "both backend and backends"],
    ],
    [
      "a backend twice in a pool",
      `[[listeners]]\naddr = ":8443"\n  [[listeners.routes]]\n  hostname = "a.example.com"\n  backends = ["127.0.0.1:2", { addr = "127.0.0.1:2", weight = 2 }]\n`,
      ["listeners[0].routes[0].backends[1]", "twice"],
    ],
    [
      "weight 0",
      `[[listeners]]\naddr = ":8443"\n  [[listeners.routes]]\n  hostname = "a.example.com"\n  backends = [{ addr = "127.0.0.1:2", weight = 0 }]\n`,
      ["listeners[0].routes[0].backends[0].weight", "1-256"],
    ],
    [
      "unknown balance",
      `[[listeners]]\naddr = ":8443"\n  [[listeners.routes]]\n  hostname = "a.example.com"\n  backends = ["127.0.0.1:2"]\n  balance = "random"\n`,
      ["listeners[0].routes[0].balance", "random"],
    ],
    [
      "unknown health check",
      `[[listeners]]\naddr = ":8443"\n  [[listeners.routes]]\n  hostname = "a.example.com"\n  backends = ["127.0.0.1:2"]\n  health_check = "http"\n`,
      ["listeners[0].routes[0].health_check", "http"],
    ],
    ["unknown section", `${LISTENER}[metrics]\nenabled = true\n`, ["metrics", "unknown key"]],
    [
      "bad wildcard",
      `[[listeners]]\naddr = ":8443"\n  [[listeners.routes]]\n  hostname = "a.*.example.com"\n  backend = "127.0.0.1:1"\n`,
      ["listeners[0].routes[0].hostname", "a.*.example.com", "wildcard"],
    ],
    ["bad listener address", `[[listeners]]\naddr = "localhost"\n`, ["listeners[0].addr", "localhost"]],
    [
      "duplicate listener address",
      `${LISTENER}[[listeners]]\naddr = "127.0.0.1:8443"\n`,
      ["listeners[1].addr", "127.0.0.1:8443"],
    ],
    ["no listeners", `[proxy]\nidle_timeout = "5m"\n`, ["listeners", "required"]],
    ["bad log level", `${LISTENER}[log]\nlevel = "verbose"\n`, ["log.level", "verbose"]],
    [
      "fingerprints top out of range",
      `${LISTENER}[fingerprints]\ntop = 10001\n`,
      ["fingerprints.top", "10001", "0-10000"],
    ],
    ["fingerprints window too short", `${LISTENER}[fingerprints]\nwindow = "5s"\n`, ["fingerprints.window", "10s-24h"]],
    ["max_hello_bytes too small", `${LISTENER}[proxy]\nmax_hello_bytes = 100\n`, ["proxy.max_hello_bytes", "100"]],
    ["TCP admin address without TLS", `${LISTENER}[grpc]\naddr = "127.0.0.1:9090"\n`, ["grpc.tls_cert"]],
    [
      "proxy_protocol without trusted_proxies",
      `[[listeners]]\naddr = ":8443"\nproxy_protocol = true\n`,
      ["listeners[0].trusted_proxies", "required"],
    ],
    [
      "trusted_proxies without proxy_protocol",
      `[[listeners]]\naddr = ":8443"\ntrusted_proxies = ["10.0.0.0/8"]\n`,
      ["listeners[0].trusted_proxies", "proxy_protocol = true"],
    ],
    [
      "empty trusted_proxies",
      `[[listeners]]\naddr = ":8443"\nproxy_protocol = true\ntrusted_proxies = []\n`,
      ["listeners[0].trusted_proxies", "empty"],
    ],
    [
      "non-canonical trusted proxy",
      `[[listeners]]\naddr = ":8443"\nproxy_protocol = true\ntrusted_proxies = ["10.0.0.1/8"]\n`,
      ["listeners[0].trusted_proxies[0]", "10.0.0.0/8"],
    ],
    [
      "trusted proxy with a zone id",
      `[[listeners]]\naddr = ":8443"\nproxy_protocol = true\ntrusted_proxies = ["fe80::1%eth0"]\n`,
      ["listeners[0].trusted_proxies[0]", "zone"],
    ],
    [
      "metrics path without a slash",
      `${LISTENER}[metrics]\naddr = "127.0.0.1:9102"\npath = "metrics"\n`,
      ["metrics.path", "metrics"],
    ],
    [
      "metrics on a proxy listener's address",
      `${LISTENER}[metrics]\naddr = ":8443"\n`,
      ["metrics.addr", "listeners[0]"],
    ],
    [
      "metrics on the admin API's address",
      `${LISTENER}[grpc]\naddr = "unix:a.sock"\n[metrics]\naddr = "unix:a.sock"\n`,
      ["metrics.addr", "grpc.addr"],
    ],
    ["metrics without an address", `${LISTENER}[metrics]\npath = "/m"\n`, ["metrics.addr", "required"]],
    [
      "bad send_proxy_protocol",
      `${LISTENER}  send_proxy_protocol = "v3"\n`,
      ["listeners[0].routes[0].send_proxy_protocol", "v3"],
    ],
    [
      "default_backend_send_proxy_protocol without a default_backend",
      `[[listeners]]\naddr = ":8443"\ndefault_backend_send_proxy_protocol = "v2"\n`,
      ["default_backend_send_proxy_protocol"],
    ],
    ["not TOML", `[[listeners]\naddr = `, ["not valid TOML"]],
    ["wrong type", `[[listeners]]\naddr = ":8443"\nmax_connections = "ten"\n`, ["listeners[0].max_connections", "ten"]],
  ];
  for (const [name, toml, needles] of invalid) {
    test(`rejects: ${name}`, () => {
      const f = configFile(toml);
      const r = run(["check", "-c", f]);
      expect(r.code).toBe(1);
      expect(r.err).toContain(f);
      for (const n of needles) expect(r.err).toContain(n);
    });
  }

  test("a GeoIP database that cannot be opened fails the check", () => {
    const f = configFile(`${LISTENER}[firewall]\ngeoip_db = "missing.mmdb"\nblocked_countries = ["KP"]\n`);
    const r = run(["check", "-c", f]);
    expect(r.code).toBe(1);
    expect(r.err).toContain("missing.mmdb");
  });

  test("admin API certificate files that cannot be read fail the check, naming the key", () => {
    const f = configFile(
      `${LISTENER}[grpc]\naddr = "127.0.0.1:9090"\ntls_cert = "nope.pem"\ntls_key = "nope.key"\nclient_ca = "nope-ca.pem"\n`,
    );
    const r = run(["check", "-c", f]);
    expect(r.code).toBe(1);
    expect(r.err).toContain("grpc.tls_cert");
    expect(r.err).toContain("grpc.tls_key");
  });

  test("a readable GeoIP database passes", () => {
    const f = configFile(`${LISTENER}[firewall]\ngeoip_db = "g.mmdb"\nblocked_countries = ["KP"]\n`);
    writeFileSync(join(f, "../g.mmdb"), writeMmdb([{ cidr: "10.0.0.0/8", record: { country_code: "KP" } }]));
    expect(run(["check", "-c", f]).code).toBe(0);
  });

  test("MCPROXY_<SECTION>_<KEY> overrides a value, and a bad override is named", () => {
    const f = configFile(LISTENER);
    const ok = run(["check", "-c", f], { MCPROXY_PROXY_IDLE_TIMEOUT: "7m" });
    expect(ok.code).toBe(0);
    expect(ok.out).toContain("idle_timeout=7m");
    const bad = run(["check", "-c", f], { MCPROXY_PROXY_IDLE_TIMEOUT: "soon" });
    expect(bad.code).toBe(1);
    expect(bad.err).toContain("proxy.idle_timeout");
    const unknown = run(["check", "-c", f], { MCPROXY_PROXY_IDLE: "1s" });
    expect(unknown.code).toBe(1);
    expect(unknown.err).toContain("MCPROXY_PROXY_IDLE");
  });

  test("server refuses to start on an invalid config and binds nothing", () => {
    const f = configFile(`[[listeners]]\naddr = "127.0.0.1:1"\n[proxy]\nidle_timeout = "x"\n`);
    const r = run(["server", "-c", f]);
    expect(r.code).toBe(1);
    expect(r.err).toContain("proxy.idle_timeout");
    expect(r.err).not.toContain("listening");
  });
});

describe("usage", () => {
  test("version prints the package version", () => {
    const r = run(["version"]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^mc-proxy \d+\.\d+\.\d+/);
  });
  test("--help works at the top and on each command", () => {
    for (const args of [["--help"], ["server", "--help"], ["check", "--help"], ["version", "--help"]]) {
      const r = run(args);
      expect(r.code).toBe(0);
      expect(r.out).toContain("Usage");
    }
  });
  test("a number out of range, a negative one too, is refused with the range; an empty ALPN protocol is refused (exit 2, nothing sent)", () => {
    // An admin API that is not there: a command that got past its arguments would fail to connect (exit 1).
    const f = configFile(`${LISTENER}\n[grpc]\naddr = "unix:${join(tempDir(), "none.sock")}"\n`);
    const add = ["routes", "add", "-c", f];
    for (const [args, needles] of [
      [
        ["fingerprints", "-c", f, "--limit", "-1"],
        ['--limit: "-1"', "from 1 to 10000"],
      ],
      [
        ["fingerprints", "-c", f, "--limit", "-5", "--json"],
        ['--limit: "-5"', "from 1 to 10000"],
      ],
      [["fingerprints", "-c", f, "--limit", "10001"], ["from 1 to 10000"]],
      [
        [...add, "--max-connections", "-1", "h.example.com", "127.0.0.1:9"],
        ["--max-connections: -1", "0 (unlimited) to 2147483647"],
      ],
      [
        [...add, "--max-connections", "2147483648", "h.example.com", "127.0.0.1:9"],
        ["--max-connections: 2147483648", "0 (unlimited) to 2147483647"],
      ],
      [
        [...add, "--max-connections", "x", "h.example.com", "127.0.0.1:9"],
        ['--max-connections: "x"', "0 (unlimited) to 2147483647"],
      ],
      [
        [...add, "--alpn", "", "h.example.com", "127.0.0.1:9"],
        ["--alpn", "empty", "RFC 7301"],
      ],
      [
        [...add, "--alpn=h2,", "h.example.com", "127.0.0.1:9"],
        ["--alpn", "empty", "RFC 7301"],
      ],
      [
        ["routes", "remove", "-c", f, "--alpn", "", "h.example.com"],
        ["--alpn", "empty", "RFC 7301"],
      ],
      [
        ["backends", "drain", "-c", f, "--alpn", "", "h.example.com", "127.0.0.1:9"],
        ["--alpn", "empty", "RFC 7301"],
      ],
      // What the config file refuses (a weight out of 1-256, rise/fall out of 1-100), --backend's options given twice.
      [
        [...add, "w.example.com", "--backend", "127.0.0.1:26032,weight=3,weight=200", "--backend", "127.0.0.1:26034"],
        ["--backend", "weight= given twice"],
      ],
      [
        [...add, "w.example.com", "--backend", "127.0.0.1:26032", "--backend", "127.0.0.1:26034,weight=0"],
        ["--backend", "weight: 0", "from 1 to 256"],
      ],
      [
        [...add, "w.example.com", "--backend", "127.0.0.1:26032,weight=257"],
        ["--backend", "weight: 257", "from 1 to 256"],
      ],
      [
        [...add, "w.example.com", "--backend", "127.0.0.1:26032,backup,backup"],
        ["--backend", "backup given twice"],
      ],
      [
        [...add, "w.example.com", "--backend", "127.0.0.1:26032", "--health-check-fall", "0"],
        ["--health-check-fall: 0", "from 1 to 100"],
      ],
      [
        [...add, "w.example.com", "--backend", "127.0.0.1:26032", "--health-check-rise", "0"],
        ["--health-check-rise: 0", "from 1 to 100"],
      ],
      [
        [...add, "w.example.com", "--backend", "127.0.0.1:26032", "--health-check-rise", "101"],
        ["--health-check-rise: 101", "from 1 to 100"],
      ],
      [
        [...add, "w.example.com", "--backend", "127.0.0.1:26032", "--health-check-interval", ""],
        ["--health-check-interval", "not a duration"],
      ],
    ] as [string[], string[]][]) {
      const r = run(args);
      expect([args.join(" "), r.code]).toEqual([args.join(" "), 2]);
      for (const n of needles) expect(r.err).toContain(n);
      expect(r.err).not.toContain("ambiguous");
    }
  }, 60_000);
  test("--admin ADDR is read as [grpc] addr is, before anything dials: a bad one is a usage error (exit 2)", () => {
    for (const [addr, needle] of [
      ["127.0.0.1", "expected host:port"],
      ["", "no address"],
      ["127.0.0.1:99999", "out of range 1-65535"],
      ["a b:1", "not a valid host name"],
      ["unix:", "names no socket path"],
    ] as const) {
      for (const args of [
        ["status", "--admin", addr],
        ["routes", "list", "--admin", addr],
        ["firewall", "list", "--admin", addr],
      ]) {
        const r = run(args);
        expect([args.join(" "), r.code]).toEqual([args.join(" "), 2]);
        expect(r.err).toContain("--admin");
        expect(r.err).toContain(needle);
        expect(r.err).toContain("Usage");
        expect(r.err).not.toContain("Could not parse target");
      }
    }
  }, 60_000);
  test("every admin command's usage names --admin ADDR and its TLS flags", () => {
    for (const args of [
      ["status", "--help"],
      ["routes", "--help"],
      ["backends", "--help"],
      ["firewall", "--help"],
      ["fingerprints", "--help"],
    ]) {
      const r = run(args);
      expect([args[0], r.code]).toEqual([args[0], 0]);
      expect(r.out).toContain(`mc-proxy ${args[0]}`);
      expect(r.out).toContain("(-c FILE | --admin ADDR)");
      expect(r.out).toContain("--admin ADDR (host:port, or unix:/abs/path/admin.sock)");
      expect(r.out).toContain("--client-cert");
    }
  });
  test("usage errors exit 2 with a clear message", () => {
    for (const [args, needle] of [
      [[], "no command"],
      [["frobnicate"], 'unknown command "frobnicate"'],
      [["server"], "-c FILE is required"],
      [["check", "-c"], "needs a file name"],
      [["check", "--bogus"], "unknown flag --bogus"],
    ] as [string[], string][]) {
      const r = run(args);
      expect(r.code).toBe(2);
      expect(r.err).toContain(needle);
      expect(r.err).toContain("Usage");
    }
  });
});

describe("admin commands (binary, a running server on a unix admin socket)", () => {
  let proxy: RunningProxy;
  let dir: string;
  let sock: string;
  let listener: string;
  const good = () => join(dir, "mc-proxy.toml");

  beforeAll(async () => {
    ensureBinary();
    dir = tempDir();
    sock = join(dir, "admin.sock");
    listener = `127.0.0.1:${freePort()}`;
    proxy = await startProxy(
      "binary",
      `[grpc]\naddr = "unix:admin.sock"\n[[listeners]]\naddr = "${listener}"\n  [[listeners.routes]]\n  hostname = "a.example.com"\n  backend = "127.0.0.1:9001"\n`,
      { dir },
    );
  });
  afterAll(async () => {
    await proxy?.stop();
  });

  test("a file broken outside [grpc] — a bad route, then a TOML syntax error — still lists the routes", () => {
    const body = readFileSync(good(), "utf8");
    for (const broken of [
      `${body}  [[listeners.routes]]\n  hostname = "b.example.com"\n  backend = "nowhere"\n`,
      `${body}[[listeners]\naddr = \n`,
    ]) {
      const f = join(dir, "half-edited.toml");
      writeFileSync(f, broken);
      expect(run(["check", "-c", f]).code).toBe(1);
      const r = run(["routes", "list", "-c", f]);
      expect([r.code, r.err]).toEqual([0, ""]);
      expect(r.out).toContain("a.example.com  ->  127.0.0.1:9001");
    }
  });

  test("--admin unix:/abs/path works with no -c; a relative one, or TLS flags on a unix socket, are usage errors", () => {
    const r = run(["routes", "list", "--admin", `unix:${sock}`]);
    expect([r.code, r.err]).toEqual([0, ""]);
    expect(r.out).toContain(listener);
    expect(run(["status", "--admin", `unix:${sock}`]).out).toContain("listeners:");
    expect(run(["firewall", "list", "--admin", `unix:${sock}`]).code).toBe(0);
    const relative = run(["routes", "list", "--admin", "unix:admin.sock"]);
    expect(relative.code).toBe(2);
    expect(relative.err).toContain("absolute path");
    const tls = run(["routes", "list", "--admin", `unix:${sock}`, "--server-ca", good()]);
    expect(tls.code).toBe(2);
    expect(tls.err).toContain("plaintext");
    const none = run(["routes", "list"]);
    expect(none.code).toBe(2);
    expect(none.err).toContain("-c FILE or --admin ADDR is required");
  });

  test("routes add --backend A --backend B… makes a pool with its settings; a single BACKEND over it says what it replaced", () => {
    const admin = ["--admin", `unix:${sock}`];
    const pool = run([
      "routes",
      "add",
      ...admin,
      "p.example.com",
      "--backend",
      "127.0.0.1:9101",
      "--backend",
      "127.0.0.1:9102,weight=3",
      "--backend=127.0.0.1:9103,backup",
      "--balance",
      "least_connections",
      "--health-check",
      "tcp",
      "--health-check-interval",
      "7s",
      "--health-check-rise",
      "3",
      "--json",
    ]);
    expect([pool.code, pool.err]).toEqual([0, ""]);
    const added = JSON.parse(pool.out) as { route: Record<string, unknown> & { backends: Record<string, unknown>[] } };
    expect(added.route.backends.map((b) => [b.addr, b.weight, b.backup])).toEqual([
      ["127.0.0.1:9101", 1, false],
      ["127.0.0.1:9102", 3, false],
      ["127.0.0.1:9103", 1, true],
    ]);
    expect(added.route).toMatchObject({
      balance: "BALANCE_LEAST_CONNECTIONS",
      health_check: "HEALTH_CHECK_TCP",
      health_check_interval: "7s",
      health_check_rise: 3,
    });
    expect(run(["backends", "list", ...admin, "p.example.com"]).out).toContain("127.0.0.1:9102  weight=3");

    const flat = run(["routes", "add", ...admin, "p.example.com", "127.0.0.1:9109"]);
    expect(flat.code).toBe(0);
    expect(flat.out).toContain("replaced: ");
    expect(flat.out).toContain("was: p.example.com  ->  pool of 3");
    expect(flat.out).toContain("no longer in the pool: 127.0.0.1:9101, 127.0.0.1:9102, 127.0.0.1:9103");

    const bad = run([
      "routes",
      "add",
      ...admin,
      "p.example.com",
      "--backend",
      "127.0.0.1:9101",
      "--health-check-timeout",
      "5",
    ]);
    expect(bad.code).toBe(1);
    expect(bad.err).toContain("route.health_check_timeout");
    const both = run(["routes", "add", ...admin, "p.example.com", "127.0.0.1:1", "--backend", "127.0.0.1:2"]);
    expect(both.code).toBe(2);
    expect(both.err).toContain("BACKEND or --backend, not both");
    expect(run(["routes", "remove", ...admin, "p.example.com"]).code).toBe(0);
  });
});
