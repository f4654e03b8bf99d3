// One name per listener (docs/METRICS_AND_LOGS.md "Metrics"): a listener
// with a `name` and one without are each known by one value in the admin
// API, `status`, the metrics' `listener` label, the access log and the audit
// line — the name, else the addr; the default route is `_default` in logs and
// metrics alike. mc_proxy_backend_up follows the health checks, and
// examples/alerts.yml's McProxyBackendDown fires on it (promtool test rules).
// A backend command for a route that does not exist says so.
import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { testCert } from "../helpers/certs";
import { helloFor } from "../helpers/hello_builder";
import { freePort, rawExchange, sleep, waitFor } from "../helpers/net";
import { ensureCommands } from "../helpers/packages";
import { ROOT, runCli, startProxy, tempDir } from "../helpers/proxy";
import { bodyOf, tlsBackend, tlsGet } from "../helpers/tls";

async function scrape(port: number): Promise<string> {
  return (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
}

/** The value of one sample line (exact name and label set as rendered), or undefined. */
function sample(text: string, series: string): number | undefined {
  for (const line of text.split("\n")) if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  return undefined;
}

describe("one name per listener (binary)", () => {
  test("named and unnamed: API, status, metrics, access log and audit agree; the default route is _default; backend_up follows health", async () => {
    const cert = testCert();
    const alpha = tlsBackend("alpha", cert);
    const web = freePort();
    const plain = freePort();
    const mport = freePort();
    const toml = `[[listeners]]
addr = "127.0.0.1:${web}"
name = "web"
default_backend = "127.0.0.1:${alpha.port}"
  [[listeners.routes]]
  hostname = "a.example.com"
  backends = ["127.0.0.1:${alpha.port}", "127.0.0.1:1"]
  health_check = "tcp"

[[listeners]]
addr = "127.0.0.1:${plain}"
  [[listeners.routes]]
  hostname = "a.example.com"
  backend = "127.0.0.1:${alpha.port}"

[grpc]
addr = "unix:admin.sock"

[metrics]
addr = "127.0.0.1:${mport}"

[proxy]
health_check_interval = "100ms"
health_check_fall = 1
`;
    const proxy = await startProxy("binary", toml);
    const cwd = join(proxy.configFile, "..");
    const cli = (...args: string[]) => runCli([args[0]!, ...args.slice(1), "-c", proxy.configFile], { cwd });
    try {
      // Traffic on both listeners: a routed connection each, and the default route on "web".
      expect(bodyOf(await tlsGet(web, "a.example.com", cert))).toBe("hello from alpha\n");
      expect(bodyOf(await tlsGet(plain, "a.example.com", cert))).toBe("hello from alpha\n");
      expect(bodyOf(await tlsGet(web, "other.example.com", cert))).toBe("hello from alpha\n");
      expect((await rawExchange(plain, helloFor("other.example.com"))).end).toBe("reset");
      await waitFor(() => proxy.access().length === 4, 10_000, "4 access records");

      // The admin API and status.
      const routes = JSON.parse(cli("routes", "list", "--json").out) as { listeners: { listener: string }[] };
      expect(routes.listeners.map((l) => l.listener)).toEqual(["web", `127.0.0.1:${plain}`]);
      const status = JSON.parse(cli("status", "--json").out) as {
        listeners: { addr: string; name: string; label: string }[];
      };
      expect(status.listeners.map((l) => [l.label, l.name, l.addr])).toEqual([
        ["web", "web", `127.0.0.1:${web}`],
        [`127.0.0.1:${plain}`, `127.0.0.1:${plain}`, `127.0.0.1:${plain}`],
      ]);
      const human = cli("status").out;
      expect(human).toContain(`  web (127.0.0.1:${web})  routes=1`);
      expect(human).toContain(`  127.0.0.1:${plain}  routes=1`);

      // The access log.
      const access = proxy.access();
      expect(access.map((r) => [r.listener, r.sni, r.route, r.outcome]).sort()).toEqual(
        [
          ["web", "a.example.com", "a.example.com", "ok"],
          ["web", "other.example.com", "_default", "ok"],
          [`127.0.0.1:${plain}`, "a.example.com", "a.example.com", "ok"],
          [`127.0.0.1:${plain}`, "other.example.com", "", "no_route"],
        ].sort(),
      );

      // The metrics: the same names, the default route's bytes under _default.
      const m = await scrape(mport);
      expect(sample(m, `mc_proxy_connections_accepted_total{listener="web"}`)).toBe(2);
      expect(sample(m, `mc_proxy_connections_accepted_total{listener="127.0.0.1:${plain}"}`)).toBe(2);
      expect(m).not.toContain(`listener="127.0.0.1:${web}"`);
      expect(sample(m, `mc_proxy_bytes_total{listener="web",route="_default",direction="to_client"}`)).toBeGreaterThan(
        0,
      );
      expect(
        sample(m, `mc_proxy_bytes_total{listener="web",route="a.example.com",direction="to_client"}`),
      ).toBeGreaterThan(0);

      // backend_up: every backend of every route, the default route's included; the dead one falls.
      const up = (l: string, route: string, backend: string) =>
        `mc_proxy_backend_up{listener="${l}",route="${route}",backend="${backend}"}`;
      let now = m;
      for (let i = 0; i < 100 && sample(now, up("web", "a.example.com", "127.0.0.1:1")) !== 0; i++) {
        await sleep(100);
        now = await scrape(mport);
      }
      expect(sample(now, up("web", "a.example.com", "127.0.0.1:1"))).toBe(0);
      expect(sample(now, up("web", "a.example.com", `127.0.0.1:${alpha.port}`))).toBe(1);
      expect(sample(now, up("web", "_default", `127.0.0.1:${alpha.port}`))).toBe(1);
      // No health check on this one: up until connects fail.
      expect(sample(now, up(`127.0.0.1:${plain}`, "a.example.com", `127.0.0.1:${alpha.port}`))).toBe(1);
      expect(now.split("\n").filter((l) => l.startsWith("mc_proxy_backend_up{"))).toHaveLength(4);
      // The health checker's log names the listener the same way.
      const down = proxy.records().find((r) => r.msg === "backend down");
      expect(down).toMatchObject({ listener: "web", route: "a.example.com", backend: "127.0.0.1:1" });

      // The audit line: a change asked by the listener's addr is written under its name.
      const added = cli("routes", "add", "--listener", `127.0.0.1:${web}`, "b.example.com", `127.0.0.1:${alpha.port}`);
      expect(added.code).toBe(0);
      await waitFor(() => proxy.records().some((r) => r.msg === "admin"), 5000, "the audit line");
      const audit = proxy.records().find((r) => r.msg === "admin")!;
      expect(audit).toMatchObject({ method: "AddRoute", listener: "web", listener_given: `127.0.0.1:${web}` });
      // …and the route it added is counted under the same name.
      expect(await scrape(mport)).toContain(`mc_proxy_bytes_total{listener="web",route="b.example.com"`);
    } finally {
      await proxy.stop();
      alpha.stop();
    }
  }, 60_000);

  test("a backend command for a route that does not exist: no route X on listener Y; a backend the route lacks: has no backend", async () => {
    const port = freePort();
    const toml = `[[listeners]]
addr = "127.0.0.1:${port}"
name = "web"
  [[listeners.routes]]
  hostname = "a.example.com"
  backend = "127.0.0.1:1"

[grpc]
addr = "unix:admin.sock"
`;
    const proxy = await startProxy("binary", toml);
    const cwd = join(proxy.configFile, "..");
    const cli = (...args: string[]) => runCli([args[0]!, ...args.slice(1), "-c", proxy.configFile], { cwd });
    try {
      const missing = cli("backends", "drain", "nope.example.com", "127.0.0.1:1");
      expect(missing.code).not.toBe(0);
      expect(missing.err).toContain('no route "nope.example.com" on listener "web"');
      expect(missing.err).not.toContain("has no backend");
      const lacking = cli("backends", "drain", "a.example.com", "127.0.0.1:2");
      expect(lacking.code).not.toBe(0);
      expect(lacking.err).toContain('route "a.example.com" on listener "web" has no backend "127.0.0.1:2"');
      const listed = cli("backends", "list", "nope.example.com");
      expect(listed.code).not.toBe(0);
      expect(listed.err).toContain("no route nope.example.com on any listener (web)");
    } finally {
      await proxy.stop();
    }
  }, 30_000);
});

describe("alerting rules", () => {
  test("McProxyBackendDown fires after a minute of mc_proxy_backend_up == 0, and not for a backend that is up (promtool test rules)", () => {
    const why = ensureCommands(["promtool"], ["prometheus"]);
    if (why !== null) return void console.warn(`SKIP: promtool: ${why}`);
    const dir = tempDir();
    const tests = join(dir, "backend_down.test.yml");
    writeFileSync(
      tests,
      `rule_files:
  - ${join(ROOT, "examples/alerts.yml")}
evaluation_interval: 15s
tests:
  - interval: 15s
    input_series:
      - series: 'mc_proxy_backend_up{instance="p:9090",job="mc-proxy",listener="web",route="a.example.com",backend="10.0.0.5:443"}'
        values: '1 1 0 0 0 0 0 0'
      - series: 'mc_proxy_backend_up{instance="p:9090",job="mc-proxy",listener="web",route="a.example.com",backend="10.0.0.6:443"}'
        values: '1 1 1 1 1 1 1 1'
    alert_rule_test:
      - eval_time: 45s
        alertname: McProxyBackendDown
        exp_alerts: []
      - eval_time: 105s
        alertname: McProxyBackendDown
        exp_alerts:
          - exp_labels:
              severity: page
              instance: p:9090
              job: mc-proxy
              listener: web
              route: a.example.com
              backend: 10.0.0.5:443
            exp_annotations:
              summary: "backend 10.0.0.5:443 of a.example.com on web is down"
`,
    );
    const r = Bun.spawnSync(["promtool", "test", "rules", tests], { stdout: "pipe", stderr: "pipe" });
    const out = r.stdout.toString() + r.stderr.toString();
    expect(out).toContain("SUCCESS");
    expect(r.exitCode).toBe(0);
  });
});
