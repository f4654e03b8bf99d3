// `bun run bench -- --soak [--minutes N]` (default 5): mc-proxy (the compiled
// binary, the bench's realistic firewall and access log, plus the admin API
// on a unix socket) under steady mixed traffic, reporting its RSS, open fds
// and CPU every 10 s and flagging upward drift. Not a test: a report.
//
// Traffic, all on loopback and bounded in time:
//   new TLS connections (one request, close)        40/s
//   keep-alive: 4 connections, one request each    every 50 ms
//   bulk: one 256 MiB download                     every 20 s
//   idle holders: 300 TLS connections               for the whole run
//   unknown SNI (reset by the proxy)                10/s
//   blocked source 127.0.0.2 (reset by firewall)    5/s
//   admin mutations (route / rule add + remove)     every 1 s
//   SIGHUP (GeoIP reload)                           every 10 s
import type { Subprocess } from "bun";
import { openSync, readdirSync, writeFileSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { type ConnectionOptions, connect as tlsConnect } from "node:tls";
import { AdminClient } from "../../src/cli/admin_client";
import { cpuSeconds, rssBytes } from "./procstat";
import { HOST, PORTS, ROOT, WORK, type Files } from "./setup";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Counts {
  ok: number;
  failed: number;
  reset: number;
  unexpected: number;
}

/** One TLS request through the proxy; resolves "ok", "reset" or "failed". */
function tlsRequest(port: number, servername: string, localAddress?: string): Promise<"ok" | "reset" | "failed"> {
  return new Promise((resolve) => {
    let text = "";
    // localAddress is passed through to net.connect (not in tls's option type).
    const s = tlsConnect({
      host: "127.0.0.1",
      port,
      servername,
      rejectUnauthorized: false,
      ...(localAddress === undefined ? {} : { localAddress }),
    } as ConnectionOptions);
    const t = setTimeout(() => done("failed"), 5000);
    const done = (r: "ok" | "reset" | "failed") => {
      clearTimeout(t);
      s.destroy();
      resolve(r);
    };
    s.on("secureConnect", () => s.write(`GET /small HTTP/1.1\r\nHost: ${servername}\r\nConnection: close\r\n\r\n`));
    s.on("data", (d: Buffer) => (text += d.toString("latin1")));
    s.on("end", () => done(text.startsWith("HTTP/1.1 200") ? "ok" : "failed"));
    s.on("error", (e: NodeJS.ErrnoException) => done(e.code === "ECONNRESET" ? "reset" : "failed"));
  });
}

/** A keep-alive TLS connection answering one request per call. */
async function keepAlive(port: number): Promise<() => Promise<boolean>> {
  const s = tlsConnect({ host: "127.0.0.1", port, servername: HOST, rejectUnauthorized: false });
  await new Promise<void>((r, j) => {
    s.once("secureConnect", () => r());
    s.once("error", j);
  });
  let waiting: ((ok: boolean) => void) | null = null;
  let text = "";
  s.on("data", (d: Buffer) => {
    text += d.toString("latin1");
    const end = text.indexOf("\r\n\r\n");
    if (end >= 0 && text.length >= end + 4 + 64) {
      text = "";
      waiting?.(true);
    }
  });
  s.on("error", () => waiting?.(false));
  return () =>
    new Promise((resolve) => {
      const t = setTimeout(() => resolve(false), 5000);
      waiting = (ok) => {
        clearTimeout(t);
        waiting = null;
        resolve(ok);
      };
      s.write(`GET /small HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
    });
}

function fdCount(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return 0;
  }
}

export async function soak(f: Files, minutes: number, withFds: (cmd: string[]) => string[]): Promise<void> {
  const conf = join(WORK, "mc-proxy-soak.toml");
  const sock = join(WORK, "run/admin-soak.sock");
  writeFileSync(
    conf,
    `${readFileSync(f.mcproxyConf, "utf8")
      .replace(`path = "${WORK}/run/mc-proxy.db"`, `path = "${WORK}/run/mc-proxy-soak.db"`)
      .replace(
        `blocked_ips = ["192.0.2.1"]`,
        `blocked_ips = ["192.0.2.1", "127.0.0.2"]`,
      )}\n[grpc]\naddr = "unix:${sock}"\n`,
  );
  for (const suffix of ["", "-wal", "-shm"]) Bun.spawnSync(["rm", "-f", `${WORK}/run/mc-proxy-soak.db${suffix}`]);
  const backend = Bun.spawn(withFds(["nginx", "-c", f.backendConf]), { stdout: "ignore", stderr: "inherit" });
  const log = join(WORK, "logs/mc-proxy-soak.log");
  const proxy: Subprocess = Bun.spawn([join(ROOT, "dist/mc-proxy"), "server", "-c", conf], {
    stdout: "ignore",
    stderr: openSync(log, "w"),
    stdin: "ignore",
  });
  const pid = proxy.pid;
  await sleep(1500);
  const port = PORTS.mcproxy;
  const admin = new AdminClient({
    addr: `unix:${sock}`,
    tlsCert: null,
    tlsKey: null,
    clientCa: null,
    clientCert: null,
    clientKey: null,
    serverCa: null,
    allowUnauthenticatedAdmin: false,
    adminClients: null,
  });
  const listener = `127.0.0.1:${port}`;
  const totals: Record<string, Counts> = {};
  const count = (k: string, r: "ok" | "reset" | "failed" | "unexpected") => {
    const c = (totals[k] ??= { ok: 0, failed: 0, reset: 0, unexpected: 0 });
    c[r]++;
  };
  const endAt = Date.now() + minutes * 60_000;
  const running = () => Date.now() < endAt;
  const loops: Promise<void>[] = [];
  const every = (ms: number, fn: () => Promise<void> | void) =>
    loops.push(
      (async () => {
        while (running()) {
          const t = Date.now();
          await fn();
          await sleep(Math.max(0, ms - (Date.now() - t)));
        }
      })(),
    );
  const paced = (perSecond: number, fn: () => Promise<void>) => {
    // Fire without waiting for completion, so a slow answer never lowers the rate.
    every(1000 / perSecond, () => void fn());
  };

  const holder = Bun.spawn(
    withFds([process.execPath, join(import.meta.dir, "idle_clients.ts"), String(port), "300", HOST]),
    { stdin: "pipe", stdout: "pipe", stderr: "inherit" },
  );
  paced(40, async () => count("new TLS", await tlsRequest(port, HOST)));
  paced(10, async () => {
    const r = await tlsRequest(port, `u${Math.floor(Math.random() * 1e9)}.unknown.test`);
    count("unknown SNI", r === "reset" ? "ok" : "unexpected");
  });
  paced(5, async () => {
    const r = await tlsRequest(port, HOST, "127.0.0.2");
    count("blocked source", r === "reset" ? "ok" : "unexpected");
  });
  for (let i = 0; i < 4; i++) {
    const ask = await keepAlive(port);
    every(50, async () => count("keep-alive", (await ask()) ? "ok" : "failed"));
  }
  every(20_000, async () => {
    const r = Bun.spawn(
      [
        "curl",
        "-sk",
        "--max-time",
        "60",
        "-o",
        "/dev/null",
        "-w",
        "%{size_download}",
        `https://${HOST}:${port}/big-${f.bigBytes}`,
      ],
      { stdout: "pipe" },
    );
    const n = Number((await new Response(r.stdout).text()).trim());
    count("bulk", n === f.bigBytes ? "ok" : "failed");
  });
  let flip = 0;
  every(1000, async () => {
    const i = flip++;
    try {
      if (i % 4 === 0)
        await admin.call("AddRoute", {
          listener,
          route: { hostname: `soak${i % 64}.example.com`, backend: "127.0.0.1:9" },
        });
      else if (i % 4 === 1) await admin.call("RemoveRoute", { listener, hostname: `soak${(i - 1) % 64}.example.com` });
      else if (i % 4 === 2)
        await admin.call("AddFirewallRule", { rule: { type: "FIREWALL_RULE_TYPE_CIDR", value: "203.0.113.0/24" } });
      else
        await admin.call("RemoveFirewallRule", { rule: { type: "FIREWALL_RULE_TYPE_CIDR", value: "203.0.113.0/24" } });
      count("admin", "ok");
    } catch {
      count("admin", "failed");
    }
  });
  every(10_000, () => void proxy.kill("SIGHUP"));

  // RSS is sampled every second: it swings with each bulk transfer and
  // garbage collection, so each 10 s line shows its floor (min) and peak, and
  // drift is judged on the floor — what stays allocated after collection.
  const samples: { t: number; rssMin: number; rssMax: number; fds: number; cpu: number }[] = [];
  const t0 = Date.now();
  let cpu0 = cpuSeconds(pid);
  console.log(`soak: ${minutes} min of mixed traffic through mc-proxy (pid ${pid}); a line every 10 s`);
  console.log("| t (s) | RSS MiB min | RSS MiB max | fds | CPU % of a core |");
  console.log("|---:|---:|---:|---:|---:|");
  while (running()) {
    let rssMin = Number.POSITIVE_INFINITY;
    let rssMax = 0;
    const lineEnd = Math.min(Date.now() + 10_000, endAt);
    const lineStart = Date.now();
    while (Date.now() < lineEnd) {
      await sleep(Math.min(1000, lineEnd - Date.now()));
      const r = rssBytes(pid);
      rssMin = Math.min(rssMin, r);
      rssMax = Math.max(rssMax, r);
    }
    const cpu = cpuSeconds(pid);
    const s = {
      t: Math.round((Date.now() - t0) / 1000),
      rssMin,
      rssMax,
      fds: fdCount(pid),
      cpu: ((cpu - cpu0) / ((Date.now() - lineStart) / 1000)) * 100,
    };
    cpu0 = cpu;
    samples.push(s);
    console.log(
      `| ${s.t} | ${(s.rssMin / 2 ** 20).toFixed(1)} | ${(s.rssMax / 2 ** 20).toFixed(1)} | ${s.fds} | ${s.cpu.toFixed(1)} |`,
    );
  }
  await Promise.all(loops);
  holder.kill();
  admin.close();
  proxy.kill("SIGTERM");
  const code = await proxy.exited;
  backend.kill("SIGTERM");
  await backend.exited;

  // Drift over the last 4 minutes (the whole run when shorter): the RSS
  // floor of the window's first minute against that of its last minute.
  const lastT = samples[samples.length - 1]!.t;
  const window = samples.filter((s) => s.t > lastT - 240);
  const head = window.filter((s) => s.t <= window[0]!.t + 60);
  const tail = window.filter((s) => s.t > lastT - 60);
  const floor = (xs: typeof samples) => Math.min(...xs.map((s) => s.rssMin));
  const from = { t: window[0]!.t, rss: floor(head), fds: head[0]!.fds };
  const last = { t: lastT, rss: floor(tail), fds: tail[tail.length - 1]!.fds };
  const rssGrowth = (last.rss - from.rss) / from.rss;
  const fdGrowth = last.fds - from.fds;
  console.log(`\nTraffic (ok / failed / reset / unexpected):`);
  for (const [k, c] of Object.entries(totals))
    console.log(`- ${k}: ${c.ok} / ${c.failed} / ${c.reset} / ${c.unexpected}`);
  console.log(
    `\nRSS floor ${(from.rss / 2 ** 20).toFixed(1)} MiB (minute from ${from.t} s) → ${(last.rss / 2 ** 20).toFixed(1)} MiB (minute to ${last.t} s): ${(rssGrowth * 100).toFixed(1)} %${rssGrowth > 0.05 ? "  ** DRIFT: over 5 % **" : " (no drift: ≤ 5 %)"}`,
  );
  console.log(`fds ${from.fds} → ${last.fds}${fdGrowth > 10 ? "  ** DRIFT **" : " (steady)"}`);
  console.log(`mc-proxy exited ${code} after SIGTERM`);
}
