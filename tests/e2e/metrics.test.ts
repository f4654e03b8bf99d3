// Prometheus metrics end to end: promtool lints a scrape taken
// after traffic of every outcome class (source and binary); a real
// Prometheus scrapes the binary and its HTTP API returns exactly the counts
// sent; bytes grow while a 1 GiB download runs; /readyz turns 503 at SIGTERM
// while /healthz stays 200; unknown SNIs never add series; label children
// exist before traffic. Prometheus and promtool come from Debian's
// `prometheus` package (installed when missing, as root).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Subprocess } from "bun";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { testCert } from "../helpers/certs";
import { clientHelloBody, handshake, helloFor, records, sniExtension } from "../helpers/hello_builder";
import { freePort, rawExchange, sleep, waitFor } from "../helpers/net";
import { ensureCommands } from "../helpers/packages";
import { MODES, ROOT, type RunningProxy, startProxy, tempDir } from "../helpers/proxy";
import { streamBackend } from "../helpers/stream";
import { bodyOf, type TlsBackend, tlsBackend, tlsGet } from "../helpers/tls";

const MiB = 1024 * 1024;

async function scrape(port: number, path = "/metrics"): Promise<string> {
  const r = await fetch(`http://127.0.0.1:${port}${path}`);
  return r.text();
}

/** The value of one sample line (exact name and label set as rendered), or undefined. */
function sample(text: string, series: string): number | undefined {
  for (const line of text.split("\n")) {
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  }
  return undefined;
}

/** Every series (name + labels) in a scrape, without values. */
function series(text: string): string[] {
  return text
    .split("\n")
    .filter((l) => l !== "" && !l.startsWith("#"))
    .map((l) => l.slice(0, l.lastIndexOf(" ")))
    .filter((s) => s.startsWith("mc_proxy_"));
}

function promtool(text: string, dir: string): { code: number; out: string } {
  const f = join(dir, `scrape-${Date.now()}.txt`);
  writeFileSync(f, text);
  const r = Bun.spawnSync(["sh", "-c", `promtool check metrics < ${f}`], { stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode, out: r.stdout.toString() + r.stderr.toString() };
}

const toml = (port: number, metricsPort: number, backendPort: number, extra = "") => `[[listeners]]
addr = "127.0.0.1:${port}"
max_connections = 50
  [[listeners.routes]]
  hostname = "alpha.example.com"
  backend = "127.0.0.1:${backendPort}"
  [[listeners.routes]]
  hostname = "dead.example.com"
  backend = "127.0.0.1:1"

[firewall]
blocked_ips = ["127.0.0.2"]
rate_limit = 10000
rate_window = "1s"

[proxy]
hello_timeout = "500ms"
connect_timeout = "500ms"

[metrics]
addr = "127.0.0.1:${metricsPort}"
path = "/metrics"
${extra}`;

/** One of each outcome class the network can produce. */
async function everyOutcome(port: number, cert: ReturnType<typeof testCert>): Promise<void> {
  expect(bodyOf(await tlsGet(port, "alpha.example.com", cert))).toBe("hello from alpha\n"); // ok
  await tlsGet(port, "alpha.example.com", cert, { localAddress: "127.0.0.2" }); // blocked_ip
  await rawExchange(port, helloFor("unknown.example.com")); // no_route
  await rawExchange(port, helloFor(null)); // no_sni
  await rawExchange(port, new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n")); // not_tls
  await rawExchange(port, records(handshake(clientHelloBody([sniExtension("a.example"), sniExtension("b.example")])))); // malformed: a duplicate extension
  await rawExchange(port, helloFor("dead.example.com")); // connect_failed
  await rawExchange(port, new Uint8Array([22, 3, 1]), { timeoutMs: 1500 }); // hello_timeout
  await rawExchange(port, new Uint8Array([22, 3]), { halfClose: true }); // client_closed
}

describe.each(MODES)("metrics scrape (%s)", (mode) => {
  test("promtool check metrics passes on a scrape after traffic of every outcome class; /healthz, /readyz, 404", async () => {
    const why = ensureCommands(["promtool"], ["prometheus"]);
    if (why !== null) return void console.warn(`SKIP: promtool: ${why}`);
    const cert = testCert();
    const alpha = tlsBackend("alpha", cert);
    const port = freePort();
    const mport = freePort();
    const proxy = await startProxy(mode, toml(port, mport, alpha.port));
    try {
      await everyOutcome(port, cert);
      await waitFor(() => proxy.access().length >= 9, 5000, "9 access records");
      const text = await scrape(mport);
      const lint = promtool(text, tempDir());
      expect(lint.out).toBe("");
      expect(lint.code).toBe(0);
      for (const o of [
        "ok",
        "blocked_ip",
        "no_route",
        "no_sni",
        "not_tls",
        "malformed",
        "connect_failed",
        "hello_timeout",
        "client_closed",
      ]) {
        expect({
          o,
          v: sample(text, `mc_proxy_connections_closed_total{listener="127.0.0.1:${port}",outcome="${o}"}`),
        }).toEqual({ o, v: 1 });
      }
      // Pre-registered at 0.
      expect(
        sample(text, `mc_proxy_connections_closed_total{listener="127.0.0.1:${port}",outcome="idle_timeout"}`),
      ).toBe(0);
      expect(sample(text, `mc_proxy_firewall_blocked_total{reason="ip"}`)).toBe(1);
      expect(sample(text, `mc_proxy_firewall_rules{type="ip"}`)).toBe(1);
      expect(sample(text, `mc_proxy_listener_max_connections{listener="127.0.0.1:${port}"}`)).toBe(50);
      expect(sample(text, `mc_proxy_routes{listener="127.0.0.1:${port}"}`)).toBe(2);
      expect(sample(text, `mc_proxy_connections_accepted_total{listener="127.0.0.1:${port}"}`)).toBe(9);
      expect(
        sample(
          text,
          `mc_proxy_backend_connect_duration_seconds_count{listener="127.0.0.1:${port}",route="alpha.example.com"}`,
        ),
      ).toBe(1);
      expect(sample(text, `mc_proxy_draining`)).toBe(0);
      expect(text).toMatch(/mc_proxy_build_info\{version="\d+\.\d+\.\d+",bun_version="1\.4\.4"\} 1/);
      expect(text).toContain("process_resident_memory_bytes");
      expect(text).not.toContain("nodejs_active_handles_total");
      // Not collected: Bun walks the whole heap for them, stalling the loop (metrics.ts).
      expect(text).not.toContain("nodejs_heap_space_size_");
      expect(text).toContain("nodejs_heap_size_used_bytes");
      // Health endpoints.
      const get = (p: string) => fetch(`http://127.0.0.1:${mport}${p}`).then((r) => r.status);
      expect(await get("/healthz")).toBe(200);
      expect(await get("/readyz")).toBe(200);
      expect(await get("/nope")).toBe(404);
      expect(await get("/metricsx")).toBe(404);
    } finally {
      await proxy.stop();
      alpha.stop();
    }
  }, 30_000);
});

describe("metrics with a real Prometheus (binary)", () => {
  const cert = testCert();
  let skip: string | null = null;
  let alpha: TlsBackend;
  let proxy: RunningProxy;
  let prom: Subprocess | null = null;
  let port = 0;
  let mport = 0;
  let pport = 0;

  beforeAll(async () => {
    skip = ensureCommands(["prometheus"], ["prometheus"]);
    if (skip !== null) return;
    alpha = tlsBackend("alpha", cert);
    port = freePort();
    mport = freePort();
    pport = freePort();
    proxy = await startProxy("binary", toml(port, mport, alpha.port));
    const dir = tempDir();
    mkdirSync(join(dir, "data"));
    writeFileSync(
      join(dir, "prometheus.yml"),
      `global:
  scrape_interval: 1s
scrape_configs:
  - job_name: mc-proxy
    static_configs:
      - targets: ["127.0.0.1:${mport}"]
`,
    );
    prom = Bun.spawn(
      [
        "prometheus",
        `--config.file=${join(dir, "prometheus.yml")}`,
        `--storage.tsdb.path=${join(dir, "data")}`,
        `--web.listen-address=127.0.0.1:${pport}`,
      ],
      {
        stdout: "ignore",
        stderr: "ignore",
      },
    );
  });
  afterAll(async () => {
    prom?.kill();
    await prom?.exited;
    await proxy?.stop();
    alpha?.stop();
  });

  async function query(q: string): Promise<number | null> {
    try {
      const r = (await (
        await fetch(`http://127.0.0.1:${pport}/api/v1/query?query=${encodeURIComponent(q)}`)
      ).json()) as {
        data: { result: { value: [number, string] }[] };
      };
      const v = r.data.result[0]?.value[1];
      return v === undefined ? null : Number(v);
    } catch {
      return null;
    }
  }

  async function until(q: string, want: number): Promise<number | null> {
    const end = Date.now() + 15_000;
    let last: number | null = null;
    while (Date.now() < end) {
      last = await query(q);
      if (last === want) return last;
      await sleep(250);
    }
    return last;
  }

  test("after N routed connections, M unknown-SNI resets and K firewall blocks, Prometheus returns exactly N, M, K; histogram_quantile gives a number", async () => {
    if (skip !== null) return void console.warn(`SKIP: Prometheus: ${skip}`);
    const [N, M, K] = [12, 7, 5];
    for (let i = 0; i < N; i++)
      expect(bodyOf(await tlsGet(port, "alpha.example.com", cert))).toBe("hello from alpha\n");
    for (let i = 0; i < M; i++) expect((await rawExchange(port, helloFor(`u${i}.unknown.test`))).end).toBe("reset");
    for (let i = 0; i < K; i++) await tlsGet(port, "alpha.example.com", cert, { localAddress: "127.0.0.2" });
    const l = `listener="127.0.0.1:${port}"`;
    expect(await until(`sum(mc_proxy_connections_closed_total{${l},outcome="ok"})`, N)).toBe(N);
    expect(await until(`sum(mc_proxy_connections_closed_total{${l},outcome="no_route"})`, M)).toBe(M);
    expect(await until(`sum(mc_proxy_firewall_blocked_total{reason="ip"})`, K)).toBe(K);
    const p99 = await query(
      `histogram_quantile(0.99, sum by (le) (mc_proxy_backend_connect_duration_seconds_bucket{${l},route="alpha.example.com"}))`,
    );
    expect(typeof p99).toBe("number");
    expect(Number.isFinite(p99!)).toBe(true);
    expect(p99!).toBeGreaterThan(0);
  }, 60_000);
});

describe("bytes, readiness and cardinality (binary)", () => {
  test("a 1 GiB download: two scrapes 1 s apart while it runs show mc_proxy_bytes_total growing", async () => {
    const TOTAL = 1024 * MiB;
    const l = streamBackend(3, TOTAL);
    const port = freePort();
    const mport = freePort();
    const proxy = await startProxy("binary", toml(port, mport, l.port));
    let received = 0;
    let finished = false;
    try {
      // A reader that takes ~250 MB/s, so the transfer lasts a few seconds.
      const c = await Bun.connect({
        hostname: "127.0.0.1",
        port,
        socket: {
          data(s, d) {
            received += d.length;
            s.pause();
            setTimeout(() => s.resume(), 2);
          },
          close() {
            finished = true;
          },
        },
      });
      c.write(helloFor("alpha.example.com"));
      await waitFor(() => received > 50 * MiB, 10_000, "download under way");
      const key = `mc_proxy_bytes_total{listener="127.0.0.1:${port}",route="alpha.example.com",direction="to_client"}`;
      const a = sample(await scrape(mport), key)!;
      await sleep(1000);
      const b = sample(await scrape(mport), key)!;
      expect(finished).toBe(false);
      expect(a).toBeGreaterThan(0);
      expect(b).toBeGreaterThan(a);
      c.terminate();
    } finally {
      await proxy.stop();
      l.stop();
    }
  }, 60_000);

  test("/readyz is 200 while serving and 503 within 100 ms of SIGTERM while a connection drains; /healthz 200 throughout; mc_proxy_draining 1", async () => {
    const backend = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const port = freePort();
    const mport = freePort();
    const proxy = await startProxy("binary", toml(port, mport, backend.port));
    try {
      const held = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } });
      held.write(helloFor("alpha.example.com"));
      await sleep(200);
      const status = (p: string) => fetch(`http://127.0.0.1:${mport}${p}`).then((r) => r.status);
      expect(await status("/readyz")).toBe(200);
      const t0 = performance.now();
      proxy.signal("SIGTERM");
      let at = -1;
      while (performance.now() - t0 < 2000) {
        if ((await status("/readyz")) === 503) {
          at = performance.now() - t0;
          break;
        }
      }
      expect(at).toBeGreaterThanOrEqual(0);
      expect(at).toBeLessThan(100);
      expect(await status("/healthz")).toBe(200);
      expect(sample(await scrape(mport), "mc_proxy_draining")).toBe(1);
      held.end();
      expect(await proxy.exited).toBe(0);
      // The last line is "stopped", and it counts the drained connection.
      const recs = proxy.records();
      expect(recs[recs.length - 1]).toMatchObject({ msg: "stopped", connections_total: 1 });
    } finally {
      await proxy.stop();
      backend.stop(true);
    }
  }, 30_000);

  test("cardinality: 10,000 connections with random unknown SNIs leave the series unchanged; 1,000 on known routes create none", async () => {
    const cert = testCert();
    const alpha = tlsBackend("alpha", cert);
    const port = freePort();
    const mport = freePort();
    const proxy = await startProxy(
      "binary",
      toml(port, mport, alpha.port).replace("max_connections = 50", "max_connections = 0"),
    );
    try {
      const before = series(await scrape(mport)).sort();
      // 10,000 unknown names, 100 at a time.
      for (let i = 0; i < 10_000; i += 100) {
        await Promise.all(
          Array.from({ length: 100 }, (_, k) =>
            rawExchange(port, helloFor(`r${i + k}-${Math.random().toString(36).slice(2)}.example.net`), {
              timeoutMs: 3000,
            }),
          ),
        );
      }
      await waitFor(
        () => proxy.access().filter((r) => r.outcome === "no_route").length === 10_000,
        20_000,
        "10,000 no_route records",
      );
      const afterUnknown = series(await scrape(mport)).sort();
      expect(afterUnknown).toEqual(before);
      // 1,000 connections on a known route: its label children existed before the first one.
      for (let i = 0; i < 1000; i += 50) {
        await Promise.all(
          Array.from({ length: 50 }, () => rawExchange(port, helloFor("alpha.example.com"), { timeoutMs: 200 })),
        );
      }
      await waitFor(() => proxy.access().length >= 11_000, 20_000, "11,000 records");
      const text = await scrape(mport);
      expect(series(text).sort()).toEqual(before);
      expect(text).not.toContain(".example.net");
      expect(sample(text, `mc_proxy_connections_accepted_total{listener="127.0.0.1:${port}"}`)).toBe(11_000);
    } finally {
      await proxy.stop();
      alpha.stop();
    }
  }, 120_000);
});

describe("alerting rules", () => {
  test("examples/alerts.yml passes promtool check rules", () => {
    const why = ensureCommands(["promtool"], ["prometheus"]);
    if (why !== null) return void console.warn(`SKIP: promtool: ${why}`);
    const r = Bun.spawnSync(["promtool", "check", "rules", join(ROOT, "examples/alerts.yml")], {
      stdout: "pipe",
      stderr: "pipe",
    });
    expect(r.stdout.toString() + r.stderr.toString()).toContain("SUCCESS");
    expect(r.exitCode).toBe(0);
  });
});
