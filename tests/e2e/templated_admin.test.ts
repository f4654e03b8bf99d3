// End to end: templated routes (docs/ROUTING.md "Templated routes") driven
// from outside, through the command line (docs/COMMAND_LINE.md `routes add
// --pattern`) against a running compiled binary: the route added, listed
// with its settings, serving two apps from the template, kept in SQLite over
// a restart, removed; invalid input refused with the key and the problem,
// and the same reason `check` gives for the config file's hostname_pattern
// (one set of rules); and through an etcd fleet, added on member A and
// served by member B. The template's names resolve through Debian's dnsmasq
// on a loopback port ([dns] servers) to loopback addresses of their own,
// let through the destination guard by --allow-destination
// (docs/SECURITY.md "Destination guard").
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { testCert } from "../helpers/certs";
import { Dnsmasq, haveDnsmasq } from "../helpers/dnsmasq";
import { EtcdCluster, etcdMissing } from "../helpers/etcd";
import { freePort, sleep, waitFor } from "../helpers/net";
import { type LogRecord, type RunningProxy, ensureBinary, runCli, startProxy, tempDir } from "../helpers/proxy";
import { fleetToml } from "../helpers/toml";
import { bodyOf, tlsGet, tlsBackend } from "../helpers/tls";

const hasDnsmasq = haveDnsmasq();
const cert = testCert();

const PATTERN = "^(?<app>[a-z0-9-]{1,63})\\.apps\\.test$";
/** The two apps, each on a loopback address of its own (dnsmasq's answer for APP.svc.test). */
const APPS = { one: "127.0.0.11", two: "127.0.0.12" } as const;
type App = keyof typeof APPS;

/** `routes add` for the pattern route with a backend on `appPort`, its destination guard and drain_timeout. */
function addArgs(appPort: number): string[] {
  return [
    "--pattern",
    PATTERN,
    "--backend",
    `{app}.svc.test:${appPort}`,
    "--allow-destination",
    "127.0.0.0/8",
    "--drain-timeout",
    "2s",
  ];
}

/** The line `routes list` and `routes add` print for the pattern route (docs/COMMAND_LINE.md). */
const routeLine = (appPort: number) =>
  `pattern ${PATTERN}  ->  {app}.svc.test:${appPort}  allow_destinations=127.0.0.0/8  drain_timeout=2s  active=0`;

interface ListedRoute {
  hostname: string;
  hostname_pattern: string;
  backend: string;
  allow_destinations: string[];
  deny_destinations: string[];
  drain_timeout: string;
  alpn: string[];
}
interface Listed {
  listeners: { listener: string; routes: ListedRoute[] }[];
}

function listJson(admin: string[]): Listed {
  const r = runCli(["routes", "list", ...admin, "--json"]);
  expect([r.code, r.err]).toEqual([0, ""]);
  return JSON.parse(r.out) as Listed;
}

const patternRoutes = (l: Listed) => l.listeners.flatMap((x) => x.routes).filter((r) => r.hostname_pattern !== "");

/** An app's name through the proxy on `port` reaches its own backend: the body, and the access record naming the template's route, backend and resolved address. */
async function reachesApp(proxy: RunningProxy, port: number, app: App, appPort: number): Promise<void> {
  const r = await tlsGet(port, `${app}.apps.test`, cert, { timeoutMs: 10_000 });
  expect(bodyOf(r)).toBe(`hello from ${app}\n`);
  const rec = await proxy.waitAccess((x) => x.sni === `${app}.apps.test` && x.outcome === "ok", 10_000);
  expect(rec.route).toBe(PATTERN);
  expect(rec.backend).toBe(`${app}.svc.test:${appPort}`);
  expect(String(rec.resolved)).toContain(APPS[app]);
}

describe.skipIf(!hasDnsmasq)("templated routes through the CLI and SQLite (binary)", () => {
  const dns = new Dnsmasq(60, Object.fromEntries(Object.entries(APPS).map(([a, ip]) => [`${a}.svc.test`, [ip]])));
  const appPort = freePort();
  const port = freePort();
  const dir = tempDir();
  const admin = ["--admin", `unix:${join(dir, "admin.sock")}`];
  const toml = () => `
[dns]
servers = ["${dns.server}"]

[grpc]
addr = "unix:admin.sock"

[[listeners]]
addr = "127.0.0.1:${port}"
  [[listeners.routes]]
  hostname = "plain.test"
  backend = "127.0.0.1:9"
`;
  let proxy: RunningProxy;
  const apps: { stop(): void }[] = [];

  beforeAll(async () => {
    ensureBinary();
    for (const [a, ip] of Object.entries(APPS)) apps.push(tlsBackend(a, cert, { hostname: ip, port: appPort }));
    await dns.start();
    proxy = await startProxy("binary", toml(), { dir });
  }, 60_000);

  afterAll(async () => {
    await proxy?.stop();
    await dns.stop();
    for (const a of apps) a.stop();
  });

  const noRoutes = (sni: string) => proxy.access().filter((x) => x.sni === sni && x.outcome === "no_route").length;

  test("before the route: an app's name is reset (no_route)", async () => {
    expect(bodyOf(await tlsGet(port, "one.apps.test", cert))).toBeNull();
    await waitFor(() => noRoutes("one.apps.test") === 1, 10_000, "a no_route record for one.apps.test");
  });

  test("routes add --pattern: added with its settings, listed (text and --json), both apps routed by the template", async () => {
    const add = runCli(["routes", "add", ...admin, ...addArgs(appPort)]);
    expect([add.code, add.err]).toEqual([0, ""]);
    expect(add.out).toContain(`added: 127.0.0.1:${port}  ${routeLine(appPort)}`);

    const text = runCli(["routes", "list", ...admin]);
    expect([text.code, text.err]).toEqual([0, ""]);
    expect(text.out).toContain(`  ${routeLine(appPort)}`);
    expect(text.out).toContain("plain.test  ->  127.0.0.1:9");

    expect(patternRoutes(listJson(admin))).toEqual([
      expect.objectContaining({
        hostname: PATTERN,
        hostname_pattern: PATTERN,
        backend: `{app}.svc.test:${appPort}`,
        allow_destinations: ["127.0.0.0/8"],
        deny_destinations: [],
        drain_timeout: "2s",
      }),
    ]);

    for (const app of Object.keys(APPS) as App[]) await reachesApp(proxy, port, app, appPort);
  }, 60_000);

  test("invalid input is refused naming the key and the problem, exit 1, the reason `check` gives the config file; nothing written", () => {
    const before = listJson(admin);
    const other = "^(?<app>[a-z0-9-]{1,63})\\.other\\.test$";
    // Each: the flags, the key the error names, text naming the problem; and the same route as TOML lines for `check`
    // (null: not compared).
    const cases: { what: string; flags: string[]; key: string; problem: string[]; toml: string }[] = [
      {
        what: "a pattern without ^",
        flags: ["--pattern", "(?<app>[a-z0-9-]{1,63})\\.other\\.test", "--backend", "{app}.svc.test:443"],
        key: "hostname_pattern",
        problem: ['must start with "^"'],
        toml: `hostname_pattern = '(?<app>[a-z0-9-]{1,63})\\.other\\.test'\n  backend = "{app}.svc.test:443"`,
      },
      {
        what: "a pattern without $",
        flags: ["--pattern", "^(?<app>[a-z0-9-]{1,63})\\.other\\.test", "--backend", "{app}.svc.test:443"],
        key: "hostname_pattern",
        problem: ['end with "$"'],
        toml: `hostname_pattern = '^(?<app>[a-z0-9-]{1,63})\\.other\\.test'\n  backend = "{app}.svc.test:443"`,
      },
      {
        what: "a placeholder naming no capture",
        flags: ["--pattern", other, "--backend", "{nope}.svc.test:443"],
        key: "backends[0]",
        problem: ["placeholder {nope} is not one of {sni}, {app}"],
        toml: `hostname_pattern = '${other}'\n  backend = "{nope}.svc.test:443"`,
      },
      {
        what: "a placeholder in the port",
        flags: ["--pattern", other, "--backend", "{app}.svc.test:{app}"],
        key: "backends[0]",
        problem: ["the port must be a number, not a placeholder"],
        toml: `hostname_pattern = '${other}'\n  backend = "{app}.svc.test:{app}"`,
      },
      {
        what: "a bad CIDR in --deny-destination",
        flags: ["--pattern", other, "--backend", "{app}.svc.test:443", "--deny-destination", "10.0.0.0/33"],
        key: "deny_destinations[0]",
        problem: ['"10.0.0.0/33": prefix length must be 0-32'],
        toml: `hostname_pattern = '${other}'\n  backend = "{app}.svc.test:443"\n  deny_destinations = ["10.0.0.0/33"]`,
      },
      {
        what: "a negative --drain-timeout",
        flags: ["--pattern", other, "--backend", "{app}.svc.test:443", "--drain-timeout", "-2s"],
        key: "drain_timeout",
        problem: ['"-2s" is negative; durations must be positive'],
        toml: `hostname_pattern = '${other}'\n  backend = "{app}.svc.test:443"\n  drain_timeout = "-2s"`,
      },
      {
        what: "a --drain-timeout too long",
        flags: ["--pattern", other, "--backend", "{app}.svc.test:443", "--drain-timeout", "1000h"],
        key: "drain_timeout",
        problem: ['"1000h" is too long (durations are at most 576h)'],
        toml: `hostname_pattern = '${other}'\n  backend = "{app}.svc.test:443"\n  drain_timeout = "1000h"`,
      },
      {
        what: "a --drain-timeout that is no duration",
        flags: ["--pattern", other, "--backend", "{app}.svc.test:443", "--drain-timeout", "2 seconds"],
        key: "drain_timeout",
        problem: ['"2 seconds" is not a duration'],
        toml: `hostname_pattern = '${other}'\n  backend = "{app}.svc.test:443"\n  drain_timeout = "2 seconds"`,
      },
      {
        what: "--pattern with an alpn",
        flags: ["--pattern", other, "--backend", "{app}.svc.test:443", "--alpn", "acme-tls/1"],
        key: "alpn",
        problem: ["a hostname_pattern route takes no alpn"],
        toml: `hostname_pattern = '${other}'\n  backend = "{app}.svc.test:443"\n  alpn = ["acme-tls/1"]`,
      },
    ];
    const checkDir = tempDir();
    for (const c of cases) {
      const r = runCli(["routes", "add", ...admin, ...c.flags]);
      const where = `${c.what}: exit ${r.code}, stderr ${JSON.stringify(r.err)}`;
      // docs/COMMAND_LINE.md: an error from the server is one line, "mc-proxy: AddRoute failed: INVALID_ARGUMENT: route.KEY: ...", exit 1.
      expect(r.code, where).toBe(1);
      expect(r.out, where).toBe("");
      const line = r.err.trim();
      expect(line.split("\n"), where).toHaveLength(1);
      expect(line, where).toStartWith(`mc-proxy: AddRoute failed: INVALID_ARGUMENT: route.${c.key}: `);
      for (const p of c.problem) expect(line, where).toContain(p);
      // The config file's check says the same after the key: one set of rules.
      const f = join(checkDir, "c.toml");
      writeFileSync(f, `[[listeners]]\naddr = "127.0.0.1:8443"\n  [[listeners.routes]]\n  ${c.toml}\n`);
      const chk = runCli(["check", "-c", f]);
      expect(chk.code, `check, ${c.what}: ${chk.out}${chk.err}`).toBe(1);
      const reason = line.slice(line.indexOf(`route.${c.key}`) + `route.${c.key}`.length);
      expect(chk.out + chk.err, `check, ${c.what}`).toContain(`listeners[0].routes[0].${c.key}${reason}`);
    }
    expect(listJson(admin)).toEqual(before);
  }, 60_000);

  test("a restart on the same database keeps the route, and it still routes", async () => {
    await proxy.stop();
    proxy = await startProxy("binary", toml(), { dir });
    const text = runCli(["routes", "list", ...admin]);
    expect([text.code, text.err]).toEqual([0, ""]);
    expect(text.out).toContain(`  ${routeLine(appPort)}`);
    for (const app of Object.keys(APPS) as App[]) await reachesApp(proxy, port, app, appPort);
  }, 60_000);

  test("routes remove --pattern removes it; the name is then reset (no_route)", async () => {
    const rm = runCli(["routes", "remove", ...admin, "--pattern", PATTERN]);
    expect([rm.code, rm.err]).toEqual([0, ""]);
    expect(rm.out).toContain(`removed: 127.0.0.1:${port}  ${PATTERN}`);
    expect(patternRoutes(listJson(admin))).toEqual([]);
    expect(runCli(["routes", "list", ...admin]).out).not.toContain("pattern ");
    const r = await tlsGet(port, "one.apps.test", cert);
    expect(bodyOf(r)).toBeNull();
    await waitFor(() => noRoutes("one.apps.test") === 1, 10_000, "a no_route record for one.apps.test after removal");
  }, 60_000);
});

describe.skipIf(!hasDnsmasq)("templated routes through an etcd fleet (binary)", () => {
  let etcd: EtcdCluster | null = null;
  let skip: string | null = null;
  const dns = new Dnsmasq(60, Object.fromEntries(Object.entries(APPS).map(([a, ip]) => [`${a}.svc.test`, [ip]])));
  const appPort = freePort();
  const apps: { stop(): void }[] = [];

  beforeAll(async () => {
    skip = etcdMissing();
    if (skip !== null) return;
    ensureBinary();
    etcd = new EtcdCluster(1);
    await etcd.startAll();
    for (const [a, ip] of Object.entries(APPS)) apps.push(tlsBackend(a, cert, { hostname: ip, port: appPort }));
    await dns.start();
  }, 60_000);
  afterAll(async () => {
    await etcd?.stopAll();
    await dns.stop();
    for (const a of apps) a.stop();
  });

  test("a pattern route added on member A by the CLI is served by member B, with its settings", async () => {
    if (skip !== null) return void console.warn(`SKIP templated routes through etcd: ${skip}`);
    const members: { proxy: RunningProxy; port: number; admin: string[] }[] = [];
    try {
      for (let i = 0; i < 2; i++) {
        const port = freePort();
        const dir = tempDir();
        const toml = fleetToml(etcd!.endpoints, "/mc-templated/", port, {
          extra: `\n[dns]\nservers = ["${dns.server}"]\n`,
        });
        const proxy = await startProxy("binary", toml, { dir });
        members.push({ proxy, port, admin: ["--admin", `unix:${join(dir, "admin.sock")}`] });
      }
      const [a, b] = members as [(typeof members)[0], (typeof members)[0]];
      // B has no such route yet: reset.
      expect(bodyOf(await tlsGet(b.port, "one.apps.test", cert))).toBeNull();
      await b.proxy.waitAccess((x: LogRecord) => x.sni === "one.apps.test" && x.outcome === "no_route", 10_000);

      const add = runCli(["routes", "add", ...a.admin, ...addArgs(appPort)]);
      expect([add.code, add.err]).toEqual([0, ""]);
      // B learns it through etcd: poll B's own connections (bounded), no fixed sleep.
      const end = Date.now() + 15_000;
      let body: string | null = null;
      while (body !== `hello from one\n` && Date.now() < end) {
        body = bodyOf(await tlsGet(b.port, "one.apps.test", cert, { timeoutMs: 5000 }));
        if (body !== `hello from one\n`) await sleep(100);
      }
      expect(body).toBe("hello from one\n");
      for (const app of Object.keys(APPS) as App[]) await reachesApp(b.proxy, b.port, app, appPort);
      const listed = runCli(["routes", "list", ...b.admin]);
      expect([listed.code, listed.err]).toEqual([0, ""]);
      expect(listed.out).toContain(`  ${routeLine(appPort)}`);
    } finally {
      for (const m of members) await m.proxy.stop();
    }
  }, 90_000);
});
