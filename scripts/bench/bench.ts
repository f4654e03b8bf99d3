// `bun run bench [-- --quick] [--rounds N] [--only direct,haproxy,...] [--baseline REF | --base-binary PATH] [--dashboard] [--templated]`
// `bun run bench -- --soak [--minutes N]`: the soak report (soak.ts).
// `bun run bench -- --scaling [--rounds N] [--seconds S]`: 1 vs 2 event loops (scaling.ts).
// `bun run bench -- --profile [--seconds S]`: a CPU profile and flame graph (profile.ts).
// `bun run bench -- --breakdown [--rounds N] [--seconds S] [--baseline REF]`: the CPU each stage adds per connection (breakdown.ts).
// `bun run bench -- --quic [--rounds N] [--seconds S]`: datagrams through a QUIC listener vs direct and nginx UDP (quic.ts).
//
// Side-by-side SNI-router benchmark on loopback: direct (no proxy, the
// ceiling), HAProxy (mode tcp + req.ssl_sni), nginx (stream + ssl_preread)
// and mc-proxy (the compiled binary, realistic firewall and access log).
// Systems are interleaved in every round (A/B/C/D, then rotated); medians of
// the rounds are reported with ratios to direct and to HAProxy. CPU cost is
// read from /proc (utime + stime of the proxy's processes); CPU used by any
// other process during a measurement is recorded, and a measurement where it
// exceeds 10 % of a core is flagged as disturbed.
//
// Every load is bounded in time; everything runs on 127.0.0.1.

import { buildRef } from "../build_ref";
import type { Subprocess } from "bun";
import { existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { DashboardViewers } from "./dashboard_viewers";
import { allProcessCpu, machineBusySeconds, processTree, settledRss, stopProcess, treeCpu } from "./procstat";
import { median, spread } from "./stats";
import { type Files, HOST, PORTS, ROOT, USER_ENV, WORK, ensureHost, ensurePackages, prepare } from "./setup";

/**
 * mc-proxy-w2: two workers (not in the default set: `--only …,mc-proxy-w2`).
 * mc-proxy-metrics: [metrics] on, scraped every second while measured.
 * mc-proxy-pp: PROXY protocol both ways (an untimed HAProxy in front sends
 * v2, mc-proxy sends v2 to the backend). mc-proxy-base: the binary built
 * from `--baseline REF`, for an A/B of the current code in the same run.
 * mc-proxy+dashboard: [dashboard] on loopback with DASHBOARD_VIEWERS users
 * logged in and reading its event stream while measured (`--dashboard` adds
 * it to the default set; dashboard_viewers.ts).
 * mc-proxy-templated: its route a templated one (pattern, backend filled from
 * the name, resolved, checked by the destination guard; `--templated` adds it).
 */
type SystemName =
  | "direct"
  | "haproxy"
  | "nginx"
  | "mc-proxy"
  | "mc-proxy-w2"
  | "mc-proxy-metrics"
  | "mc-proxy-pp"
  | "mc-proxy-base"
  | "mc-proxy+dashboard"
  | "mc-proxy-templated";
const SYSTEMS: SystemName[] = ["direct", "haproxy", "nginx", "mc-proxy", "mc-proxy-metrics", "mc-proxy-pp"];

interface Settings {
  quick: boolean;
  rounds: number;
  loadSeconds: number;
  warmupSeconds: number;
  c1Seconds: number;
  bigBytes: number;
  idleConnections: number;
  only: SystemName[];
  /** --baseline REF: also run the binary built from that git ref, as mc-proxy-base. */
  baseline: string | null;
  /**
   * --base-binary PATH: run that already built binary as mc-proxy-base
   * (e.g. the same source compiled by another Bun).
   */
  baseBinary: string | null;
}

function settings(argv: string[]): Settings {
  const quick = argv.includes("--quick");
  const opt = (name: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const baseline = opt("--baseline");
  const baseBinary = opt("--base-binary");
  if (baseline !== undefined && baseBinary !== undefined) throw new Error("--baseline and --base-binary: choose one");
  const withBase = baseline !== undefined || baseBinary !== undefined;
  const only = (opt("--only")?.split(",") as SystemName[] | undefined) ?? [
    ...SYSTEMS,
    ...(withBase ? (["mc-proxy-base"] as SystemName[]) : []),
    ...(argv.includes("--dashboard") ? (["mc-proxy+dashboard"] as SystemName[]) : []),
    ...(argv.includes("--templated") ? (["mc-proxy-templated"] as SystemName[]) : []),
  ];
  return {
    quick,
    rounds: Number(opt("--rounds") ?? (quick ? 1 : 3)),
    loadSeconds: quick ? 4 : 10,
    warmupSeconds: quick ? 2 : 5,
    c1Seconds: quick ? 3 : 5,
    bigBytes: (quick ? 256 : 1024) * 1024 * 1024,
    idleConnections: Number(opt("--idle") ?? 5000),
    only,
    baseline: baseline ?? null,
    baseBinary: baseBinary === undefined ? null : resolve(baseBinary),
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The binary built from `--baseline REF` (a git ref) or given by `--base-binary`, or null. */
let baselineBinary: string | null = null;

function baselineConf(f: Files): string {
  const conf = join(WORK, "mc-proxy-base.toml");
  const db = join(WORK, "run/mc-proxy-base.db");
  for (const x of ["", "-wal", "-shm"]) rmSync(db + x, { force: true });
  writeFileSync(
    conf,
    readFileSync(f.mcproxyConf, "utf8").replace(`path = "${WORK}/run/mc-proxy.db"`, `path = "${db}"`),
  );
  return conf;
}

/** Build the binary at git REF (scripts/build_ref.ts): the A/B baseline. */
function buildBaseline(ref: string): string {
  const out = buildRef(ref, WORK);
  console.log(`bench: baseline ${ref} built: ${out}`);
  return out;
}

/** Run a command under a raised fd limit. */
function withFds(cmd: string[]): string[] {
  return ["sh", "-c", `ulimit -n "$(ulimit -Hn)" && exec "$@"`, "sh", ...cmd];
}

async function waitPort(port: number, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = require("node:net").createConnection({ host: "127.0.0.1", port });
      s.on("connect", () => {
        s.destroy();
        resolve(true);
      });
      s.on("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > end) throw new Error(`nothing listening on ${port} after ${ms} ms`);
    // Fine enough to time a start (the "start to listening" row); a refused connect costs microseconds.
    await sleep(5);
  }
}

interface Running {
  name: SystemName;
  port: number;
  proc: Subprocess | null;
  /** The processes whose CPU and memory count as "the proxy". */
  pids(): number[];
  /** Helpers that are part of the setup, not measured and not "other" (the HAProxy in front of mc-proxy-pp). */
  helperPids(): number[];
  /** Milliseconds from spawn to the port accepting connections; NaN for direct. */
  startMs: number;
  stop(): Promise<void>;
}

async function startSystem(name: SystemName, f: Files): Promise<Running> {
  if (name === "direct")
    return {
      name,
      port: PORTS.backend,
      proc: null,
      pids: () => [],
      helperPids: () => [],
      startMs: Number.NaN,
      stop: async () => {},
    };
  let cmd: string[];
  let port: number;
  let stderr: number | "ignore" = "ignore";
  if (name === "haproxy") {
    cmd = ["haproxy", "-db", "-f", f.haproxyConf];
    port = PORTS.haproxy;
  } else if (name === "nginx") {
    cmd = ["nginx", "-c", f.nginxConf];
    port = PORTS.nginx;
  } else if (name === "mc-proxy-w2") {
    cmd = [join(ROOT, "dist/mc-proxy"), "server", "-c", f.mcproxyW2Conf];
    port = PORTS.mcproxy;
    stderr = openSync(f.mcproxyLog, "a");
  } else if (name === "mc-proxy-metrics") {
    cmd = [join(ROOT, "dist/mc-proxy"), "server", "-c", f.mcproxyMetricsConf];
    port = PORTS.mcproxy;
    stderr = openSync(f.mcproxyLog, "a");
  } else if (name === "mc-proxy+dashboard") {
    cmd = [join(ROOT, "dist/mc-proxy"), "server", "-c", f.mcproxyDashboardConf];
    port = PORTS.mcproxy;
    stderr = openSync(f.mcproxyLog, "a");
  } else if (name === "mc-proxy-templated") {
    cmd = [join(ROOT, "dist/mc-proxy"), "server", "-c", f.mcproxyTemplatedConf];
    port = PORTS.mcproxy;
    stderr = openSync(f.mcproxyLog, "a");
  } else if (name === "mc-proxy-pp") {
    cmd = [join(ROOT, "dist/mc-proxy"), "server", "-c", f.mcproxyPpConf];
    port = PORTS.mcproxyPp;
    stderr = openSync(f.mcproxyLog, "a");
  } else {
    // The baseline gets a database of its own: an older binary refuses a newer schema.
    cmd =
      name === "mc-proxy-base"
        ? [baselineBinary!, "server", "-c", baselineConf(f)]
        : [join(ROOT, "dist/mc-proxy"), "server", "-c", f.mcproxyConf];
    port = PORTS.mcproxy;
    stderr = openSync(f.mcproxyLog, "a");
  }
  const spawnedAt = performance.now();
  const proc = Bun.spawn(withFds(cmd), {
    stdout: "ignore",
    stderr,
    stdin: "ignore",
    env: USER_ENV,
  });
  await waitPort(port);
  const startMs = performance.now() - spawnedAt;
  // mc-proxy-pp is reached through an HAProxy that adds the PROXY header; only mc-proxy is measured.
  const front =
    name === "mc-proxy-pp"
      ? Bun.spawn(withFds(["haproxy", "-db", "-f", f.ppFrontConf]), {
          stdout: "ignore",
          stderr: "ignore",
          stdin: "ignore",
        })
      : null;
  if (front !== null) {
    port = PORTS.ppFront;
    await waitPort(port);
  }
  await sleep(300);
  // Logged-in dashboard pages reading the live stream for mc-proxy+dashboard (their cost is part of the measurement).
  const viewers =
    name === "mc-proxy+dashboard"
      ? await DashboardViewers.start(PORTS.dashboard).catch(async (e) => {
          await stopProcess(proc);
          throw e;
        })
      : null;
  // A Prometheus-like scrape every second for mc-proxy-metrics (its cost is part of the measurement).
  let scraping = name === "mc-proxy-metrics";
  if (scraping) {
    void (async () => {
      while (scraping) {
        await fetch(`http://127.0.0.1:${PORTS.metrics}/metrics`)
          .then((r) => r.text())
          .catch(() => "");
        await sleep(1000);
      }
    })();
  }
  return {
    name,
    port,
    proc,
    pids: () => processTree(proc.pid),
    helperPids: () => (front === null ? [] : processTree(front.pid)),
    startMs,
    stop: async () => {
      scraping = false;
      try {
        if (viewers !== null) {
          const v = await viewers.stop();
          console.log(
            `bench: ${name}: ${v.viewers} dashboard viewers read ${v.events} events (${(v.bytes / 1e6).toFixed(1)} MB) in ${v.seconds.toFixed(0)} s${v.reconnects > 0 ? `; ${v.reconnects} streams ended by the server and reopened (last: ${v.lastEnd})` : ""}`,
          );
        }
      } finally {
        if (front !== null) await stopProcess(front);
        await stopProcess(proc);
      }
    },
  };
}

interface Sample {
  wall: number;
  proxyCpu: number;
  otherCpu: number;
  disturbed: boolean;
}

/**
 * Measure `work`, accounting CPU: the proxy's processes, the known
 * participants (backend, load tools), and everyone else.
 */
async function measure(sys: Running, backendPids: number[], work: () => Promise<number[]>): Promise<Sample> {
  const proxyPids = sys.pids();
  const before = allProcessCpu();
  const busy0 = machineBusySeconds();
  const p0 = treeCpu(proxyPids);
  const t0 = performance.now();
  const toolPids = await work();
  const wall = (performance.now() - t0) / 1000;
  const busy1 = machineBusySeconds();
  const after = allProcessCpu();
  const proxyCpu = treeCpu(proxyPids) - p0;
  // Participants: proxy, backend, load tools, this script. Everything else is "other".
  const known = new Set([...proxyPids, ...sys.helperPids(), ...backendPids, ...toolPids, process.pid]);
  let knownCpu = 0;
  for (const [pid, t] of after) if (known.has(pid)) knownCpu += t - (before.get(pid) ?? 0);
  // Tools that exited during the measurement are gone from /proc; their CPU is
  // reported by the tool itself (returned in toolCpu) — approximated via the busy delta.
  const otherCpu = Math.max(0, busy1 - busy0 - knownCpu - toolCpuGone);
  toolCpuGone = 0;
  return { wall, proxyCpu, otherCpu, disturbed: otherCpu / wall > 0.1 };
}

/** CPU seconds of load-tool processes that exited during the current measurement. */
let toolCpuGone = 0;

/** Run a child to completion, adding its CPU (from rusage) to toolCpuGone. */
async function runTool(cmd: string[]): Promise<{ out: string; pid: number }> {
  const p = Bun.spawn(withFds(cmd), { stdout: "pipe", stderr: "pipe" });
  const out = await new Response(p.stdout).text();
  await p.exited;
  const ru = p.resourceUsage();
  if (ru !== undefined) toolCpuGone += Number(ru.cpuTime.user + ru.cpuTime.system) / 1e6;
  if (p.exitCode !== 0)
    throw new Error(`${cmd.join(" ")} exited ${p.exitCode}: ${await new Response(p.stderr).text()}`);
  return { out, pid: p.pid };
}

interface WrkResult {
  requests: number;
  seconds: number;
  p50ms: number;
  p99ms: number;
  errors: number;
}

function parseWrk(out: string): WrkResult {
  const num = (re: RegExp) => {
    const m = re.exec(out);
    return m === null ? NaN : Number(m[1]);
  };
  const latency = (pct: string) => {
    const m = new RegExp(`^\\s+${pct}%\\s+([\\d.]+)(us|ms|s)`, "m").exec(out);
    if (m === null) return NaN;
    const v = Number(m[1]);
    return m[2] === "us" ? v / 1000 : m[2] === "s" ? v * 1000 : v;
  };
  const m = /(\d+) requests in ([\d.]+)(s|m)/.exec(out);
  const errs = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const non2xx = num(/Non-2xx or 3xx responses: (\d+)/);
  return {
    requests: m === null ? 0 : Number(m[1]),
    seconds: m === null ? 0 : Number(m[2]) * (m[3] === "m" ? 60 : 1),
    p50ms: latency("50"),
    p99ms: latency("99"),
    errors:
      (errs === null ? 0 : Number(errs[1]) + Number(errs[2]) + Number(errs[3]) + Number(errs[4])) +
      (Number.isNaN(non2xx) ? 0 : non2xx),
  };
}

const url = (port: number, path: string) => `https://${HOST}:${port}${path}`;

type Metrics = Record<string, number>;

/** What a round measured, and the phases another process disturbed. */
interface Round {
  m: Metrics;
  disturbed: string[];
  sys: Running;
  backendPids: number[];
}

function note(r: Round, what: string, x: Sample): void {
  if (x.disturbed) r.disturbed.push(`${what} (other CPU ${((x.otherCpu / x.wall) * 100).toFixed(0)}% of a core)`);
}

/** One wrk run, measured: its result and the CPU the proxy used for it. */
async function wrkPhase(r: Round, what: string, args: string[]): Promise<{ w: WrkResult; x: Sample }> {
  let w!: WrkResult;
  const x = await measure(r.sys, r.backendPids, async () => {
    const run = await runTool(["wrk", ...args]);
    w = parseWrk(run.out);
    return [run.pid];
  });
  note(r, what, x);
  return { w, x };
}

/**
 * Warm-up, the same for every system: a JIT runtime should be measured
 * warm, as it runs in production; the others lose nothing by it.
 */
async function warmUp(sys: Running, s: Settings): Promise<void> {
  await runTool([
    "wrk",
    "-t",
    WRK_THREADS,
    "-c",
    "50",
    "-d",
    `${s.warmupSeconds}s`,
    "-H",
    "Connection: close",
    url(sys.port, "/small"),
  ]);
  await runTool(["wrk", "-t", WRK_THREADS, "-c", "50", "-d", `${s.warmupSeconds}s`, url(sys.port, "/small")]);
  toolCpuGone = 0;
}

/** New TLS connections: full handshake + small request + close, 50 concurrent. */
async function newConnections(r: Round, s: Settings): Promise<void> {
  const { w, x } = await wrkPhase(r, "new connections", [
    "-t",
    WRK_THREADS,
    "-c",
    "50",
    "-d",
    `${s.loadSeconds}s`,
    "--latency",
    "-H",
    "Connection: close",
    url(r.sys.port, "/small"),
  ]);
  r.m.newconn_per_s = w.requests / w.seconds;
  r.m.newconn_p50_ms = w.p50ms;
  r.m.newconn_p99_ms = w.p99ms;
  r.m.newconn_errors = w.errors;
  r.m.cpu_ms_per_1000_newconn = (x.proxyCpu * 1000) / (w.requests / 1000);
}

/** Keep-alive requests over 50 long-lived TLS connections. */
async function keepAlive(r: Round, s: Settings): Promise<void> {
  const { w, x } = await wrkPhase(r, "keep-alive", [
    "-t",
    WRK_THREADS,
    "-c",
    "50",
    "-d",
    `${s.loadSeconds}s`,
    "--latency",
    url(r.sys.port, "/small"),
  ]);
  r.m.keepalive_req_per_s = w.requests / w.seconds;
  r.m.keepalive_p99_ms = w.p99ms;
  r.m.keepalive_errors = w.errors;
  r.m.cpu_us_per_keepalive_req = (x.proxyCpu * 1e6) / w.requests;
}

/** One unloaded connection: the latency the proxy adds. */
async function unloadedLatency(r: Round, s: Settings): Promise<void> {
  const { w } = await wrkPhase(r, "c=1 latency", [
    "-t",
    "1",
    "-c",
    "1",
    "-d",
    `${s.c1Seconds}s`,
    "--latency",
    url(r.sys.port, "/small"),
  ]);
  r.m.c1_p50_ms = w.p50ms;
}

/** Bulk download or upload with `streams` curl processes at once; throws unless every byte arrived. `key` names the metrics (default: direction and streams). */
async function bulk(
  r: Round,
  f: Files,
  dir: "download" | "upload",
  streams: number,
  key = `${dir}_${streams}s`,
): Promise<void> {
  let bytes = 0;
  const x = await measure(r.sys, r.backendPids, async () => {
    const runs = await Promise.all(
      Array.from({ length: streams }, () =>
        runTool(
          dir === "download"
            ? [
                "curl",
                "-sk",
                "--max-time",
                "120",
                "-o",
                "/dev/null",
                "-w",
                "%{size_download}",
                url(r.sys.port, `/big-${f.bigBytes}`),
              ]
            : [
                "curl",
                "-sk",
                "--max-time",
                "120",
                "-o",
                "/dev/null",
                "-w",
                "%{size_upload}",
                "-T",
                f.uploadFile,
                url(r.sys.port, "/upload"),
              ],
        ),
      ),
    );
    for (const run of runs) bytes += Number(run.out.trim());
    return runs.map((run) => run.pid);
  });
  if (bytes !== f.bigBytes * streams)
    throw new Error(`${r.sys.name}: ${dir} x${streams} moved ${bytes} bytes, expected ${f.bigBytes * streams}`);
  r.m[`${key}_MBps`] = bytes / 1e6 / x.wall;
  r.m[`cpu_s_per_GB_${key}`] = x.proxyCpu / (bytes / 1e9);
  note(r, `${dir} x${streams}`, x);
}

const WRK_THREADS = "2";

async function runRound(
  sys: Running,
  s: Settings,
  f: Files,
  backendPids: number[],
): Promise<{ metrics: Metrics; disturbed: string[] }> {
  const r: Round = { m: {}, disturbed: [], sys, backendPids };
  // The first transfer after start, before anything warms the system up: what
  // a short-lived process or a fresh takeover pays (docs/PERFORMANCE.md "The allocator").
  await bulk(r, f, "download", 1, "first_download");
  await warmUp(sys, s);
  await newConnections(r, s);
  await keepAlive(r, s);
  await unloadedLatency(r, s);
  for (const dir of ["download", "upload"] as const) for (const streams of [1, 4]) await bulk(r, f, dir, streams);
  // Bulk CPU per GB over all four transfer phases of a direction (5 GB at
  // full size): one 1-stream phase alone moves too little for a steady figure.
  for (const dir of ["download", "upload"]) {
    const gb = (5 * f.bigBytes) / 1e9;
    r.m[`cpu_s_per_GB_${dir}`] =
      (r.m[`cpu_s_per_GB_${dir}_1s`]! * (f.bigBytes / 1e9) +
        r.m[`cpu_s_per_GB_${dir}_4s`]! * ((4 * f.bigBytes) / 1e9)) /
      gb;
  }
  return { metrics: r.m, disturbed: r.disturbed };
}

/** One idle_clients.ts process: holds COUNT TLS connections until asked to check them. */
class IdleHolder {
  private readonly proc;
  private readonly reader;
  private buf = "";
  private readonly dec = new TextDecoder();

  constructor(port: number, count: number) {
    this.proc = Bun.spawn(
      withFds([process.execPath, join(import.meta.dir, "idle_clients.ts"), String(port), String(count), HOST]),
      {
        stdin: "pipe",
        stdout: "pipe",
        stderr: "inherit",
      },
    );
    this.reader = this.proc.stdout.getReader();
  }

  private async line(): Promise<string> {
    for (;;) {
      const nl = this.buf.indexOf("\n");
      if (nl >= 0) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        return line;
      }
      const { value, done } = await this.reader.read();
      if (done) throw new Error("idle client exited early");
      this.buf += this.dec.decode(value);
    }
  }

  /** Once every handshake is done: how many are open and how many failed. */
  async ready(): Promise<{ open: number; failed: number }> {
    const r = (await this.line()).split(" ");
    return { open: Number(r[1]), failed: Number(r[2]) };
  }

  /** One request on each held connection; how many answered. The holder exits. */
  async check(): Promise<number> {
    this.proc.stdin.write("check\n");
    this.proc.stdin.flush();
    const ok = Number((await this.line()).split(" ")[1]);
    await this.proc.exited;
    return ok;
  }
}

/**
 * Memory per idle connection, on a freshly started system so that garbage
 * left by earlier phases (and its collection) does not blur the difference.
 * Two holders of half the connections each: the whole figure is the growth
 * over all of them from the fresh start; the marginal one is the growth
 * over the second half only, so one-time costs paid by the first
 * connections (JIT-compiled code, the first heap blocks, each worker's
 * buffers) are left out — that is the cost of one more connection. Each
 * reading waits for the RSS to settle (settledRss).
 */
async function idleRound(sys: Running, s: Settings): Promise<Metrics> {
  const pids = sys.pids();
  const rss0 = await settledRss(pids);
  const half = Math.floor(s.idleConnections / 2);
  const first = new IdleHolder(sys.port, half);
  const r1 = await first.ready();
  const rssMid = await settledRss(pids);
  const second = new IdleHolder(sys.port, s.idleConnections - half);
  const r2 = await second.ready();
  const rss1 = await settledRss(pids);
  const [ok1, ok2] = await Promise.all([first.check(), second.check()]);
  return {
    idle_open: r1.open + r2.open,
    idle_failed: r1.failed + r2.failed,
    idle_working_after: ok1 + ok2,
    idle_bytes_per_conn: (rss1 - rss0) / Math.max(1, r1.open + r2.open),
    idle_marginal_bytes_per_conn: (rss1 - rssMid) / Math.max(1, r2.open),
  };
}

const ROWS: [string, string, number][] = [
  // key, label, decimals
  ["newconn_per_s", "new TLS conn/s (c=50)", 0],
  ["newconn_p50_ms", "  p50 latency ms", 2],
  ["newconn_p99_ms", "  p99 latency ms", 2],
  ["cpu_ms_per_1000_newconn", "  proxy CPU ms / 1000 conns", 0],
  ["keepalive_req_per_s", "keep-alive req/s (c=50)", 0],
  ["keepalive_p99_ms", "  p99 latency ms", 2],
  ["cpu_us_per_keepalive_req", "  proxy CPU µs / request", 1],
  ["c1_p50_ms", "c=1 p50 latency ms", 3],
  ["download_1s_MBps", "download MB/s, 1 stream", 0],
  ["download_4s_MBps", "download MB/s, 4 streams", 0],
  ["upload_1s_MBps", "upload MB/s, 1 stream", 0],
  ["upload_4s_MBps", "upload MB/s, 4 streams", 0],
  ["cpu_s_per_GB_download", "proxy CPU s / GB down (all bulk phases)", 2],
  ["cpu_s_per_GB_first_download", "  the first transfer after start (down, 1 stream)", 2],
  ["cpu_s_per_GB_upload", "proxy CPU s / GB up (all bulk phases)", 2],
  ["cpu_s_per_GB_download_1s", "  down, 1 stream", 2],
  ["cpu_s_per_GB_download_4s", "  down, 4 streams", 2],
  ["cpu_s_per_GB_upload_1s", "  up, 1 stream", 2],
  ["cpu_s_per_GB_upload_4s", "  up, 4 streams", 2],
  ["idle_bytes_per_conn", "memory per idle conn, bytes", 0],
  ["idle_marginal_bytes_per_conn", "  marginal (second half only)", 0],
  ["idle_working_after", "  idle conns still working", 0],
  ["start_ms", "start to listening, ms (spawn to the port accepting)", 0],
];

function fmt(v: number | undefined, d: number): string {
  return v === undefined || Number.isNaN(v) ? "–" : v.toFixed(d);
}

async function main(): Promise<void> {
  const s = settings(process.argv.slice(2));
  ensurePackages();
  ensureHost();
  if (!existsSync(join(ROOT, "dist/mc-proxy"))) {
    const b = Bun.spawnSync([process.execPath, "run", "build"], { cwd: ROOT, stdout: "inherit", stderr: "inherit" });
    if (b.exitCode !== 0) throw new Error("bun run build failed");
  }
  mkdirSync(WORK, { recursive: true });
  if (process.argv.includes("--profile")) {
    const { profile } = await import("./profile");
    const i = process.argv.indexOf("--seconds");
    return profile(prepare(256 * 1024 * 1024), i >= 0 ? Number(process.argv[i + 1]) : 10, withFds, waitPort);
  }
  if (process.argv.includes("--breakdown")) {
    const { breakdown } = await import("./breakdown");
    const i = process.argv.indexOf("--seconds");
    const base = s.baseline === null ? null : { ref: s.baseline, binary: buildBaseline(s.baseline) };
    return breakdown(
      prepare(256 * 1024 * 1024),
      s.rounds,
      i >= 0 ? Number(process.argv[i + 1]) : s.quick ? 3 : 5,
      { withFds, waitPort },
      base,
    );
  }
  if (process.argv.includes("--scaling")) {
    const { scaling } = await import("./scaling");
    const i = process.argv.indexOf("--seconds");
    return scaling(
      prepare(s.bigBytes),
      s.rounds,
      i >= 0 ? Number(process.argv[i + 1]) : s.quick ? 4 : 8,
      withFds,
      waitPort,
    );
  }
  if (process.argv.includes("--quic")) {
    const { quicBench } = await import("./quic");
    const i = process.argv.indexOf("--seconds");
    return quicBench(s.rounds, i >= 0 ? Number(process.argv[i + 1]) : s.quick ? 3 : 5, withFds);
  }
  if (process.argv.includes("--soak")) {
    const i = process.argv.indexOf("--minutes");
    const { soak } = await import("./soak");
    return soak(prepare(256 * 1024 * 1024), i >= 0 ? Number(process.argv[i + 1]) : 5, withFds);
  }
  const f = prepare(s.bigBytes);
  if (s.baseline !== null) baselineBinary = buildBaseline(s.baseline);
  if (s.baseBinary !== null) {
    if (!existsSync(s.baseBinary)) throw new Error(`--base-binary ${s.baseBinary}: no such file`);
    baselineBinary = s.baseBinary;
  }
  console.log(
    `bench: ${s.quick ? "quick" : "full"} run, ${s.rounds} round(s), ${s.loadSeconds}s loads, ${s.bigBytes / 2 ** 20} MiB transfers, ${s.idleConnections} idle connections`,
  );

  const backend = Bun.spawn(withFds(["nginx", "-c", f.backendConf]), { stdout: "ignore", stderr: "inherit" });
  await waitPort(PORTS.backend);
  const backendPids = () => processTree(backend.pid);
  const results: Record<string, Metrics[]> = {};
  const disturbedLog: string[] = [];
  const started = Date.now();
  try {
    for (let round = 0; round < s.rounds; round++) {
      // Rotate the order every round so no system always runs first or last.
      const order = s.only.map((_, i) => s.only[(i + round) % s.only.length]!);
      for (const name of order) {
        const t = Date.now();
        const sys = await startSystem(name, f);
        let r: Awaited<ReturnType<typeof runRound>>;
        try {
          r = await runRound(sys, s, f, backendPids());
        } finally {
          await sys.stop();
        }
        if (name !== "direct") {
          const fresh = await startSystem(name, f);
          // Two starts a round (the load round's, the idle round's): their mean.
          r.metrics.start_ms = (sys.startMs + fresh.startMs) / 2;
          try {
            Object.assign(r.metrics, await idleRound(fresh, s));
          } finally {
            await fresh.stop();
          }
        }
        (results[name] ??= []).push(r.metrics);
        for (const d of r.disturbed) disturbedLog.push(`round ${round + 1}, ${name}: ${d}`);
        console.log(`bench: round ${round + 1}/${s.rounds} ${name} done in ${((Date.now() - t) / 1000).toFixed(0)} s`);
      }
    }
  } finally {
    backend.kill("SIGTERM");
    await backend.exited;
  }

  const med: Record<string, Metrics> = {};
  const spreads: Record<string, Metrics> = {};
  for (const [name, rounds] of Object.entries(results)) {
    med[name] = {};
    spreads[name] = {};
    for (const key of Object.keys(rounds[0]!)) {
      med[name]![key] = median(rounds.map((r) => r[key]!));
      spreads[name]![key] = spread(rounds.map((r) => r[key]!));
    }
  }
  const machine = {
    cpus: require("node:os").cpus().length,
    cpu_model: require("node:os").cpus()[0]?.model,
    kernel: require("node:os").release(),
    bun: Bun.version,
    haproxy: Bun.spawnSync(["haproxy", "-v"]).stdout.toString().split("\n")[0],
    nginx: Bun.spawnSync(["nginx", "-v"]).stderr.toString().trim(),
    wrk:
      Bun.spawnSync(["wrk", "-v"]).stdout.toString().split("\n")[0] ||
      Bun.spawnSync(["wrk", "-v"]).stderr.toString().split("\n")[0],
    mc_proxy: Bun.spawnSync([join(ROOT, "dist/mc-proxy"), "version"])
      .stdout.toString()
      .trim(),
  };
  const table = markdown(med, s);
  console.log(`\n${table}`);
  console.log(`\nPer-round values:\n\n${perRound(results)}`);
  if (disturbedLog.length > 0)
    console.log(
      `\nDisturbed measurements (other processes used > 10 % of a core):\n${disturbedLog.map((d) => `- ${d}`).join("\n")}`,
    );
  else console.log("\nNo measurement was disturbed by other processes (> 10 % of a core).");
  const out = join(WORK, `results-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
  writeFileSync(
    out,
    JSON.stringify(
      {
        settings: s,
        machine,
        seconds: (Date.now() - started) / 1000,
        medians: med,
        spread: spreads,
        rounds: results,
        disturbed: disturbedLog,
        table,
      },
      null,
      2,
    ),
  );
  console.log(`\nbench: results written to ${out} (${((Date.now() - started) / 1000).toFixed(0)} s)`);
}

/** Ratio columns: [label, numerator system, denominator system]; shown when both ran. */
const RATIOS: [string, SystemName, SystemName][] = [
  ["mc-proxy × direct", "mc-proxy", "direct"],
  ["mc-proxy × HAProxy", "mc-proxy", "haproxy"],
  ["mc-proxy-metrics × mc-proxy", "mc-proxy-metrics", "mc-proxy"],
  ["mc-proxy-w2 × mc-proxy", "mc-proxy-w2", "mc-proxy"],
  ["mc-proxy+dashboard × mc-proxy", "mc-proxy+dashboard", "mc-proxy"],
  ["mc-proxy-templated × mc-proxy", "mc-proxy-templated", "mc-proxy"],
  ["mc-proxy-pp × HAProxy", "mc-proxy-pp", "haproxy"],
  ["mc-proxy-pp × mc-proxy", "mc-proxy-pp", "mc-proxy"],
  ["mc-proxy × mc-proxy-base", "mc-proxy", "mc-proxy-base"],
];

function markdown(med: Record<string, Metrics>, s: Settings): string {
  const systems = s.only;
  const ratios = RATIOS.filter(([, a, b]) => systems.includes(a) && systems.includes(b));
  const head = `| metric | ${systems.join(" | ")} | ${ratios.map((r) => r[0]).join(" | ")} |`;
  const sep = `|---|${systems.map(() => "---:").join("|")}|${ratios.map(() => "---:").join("|")}|`;
  const lines = ROWS.map(([key, label, d]) => {
    const vals = systems.map((n) => fmt(med[n]?.[key], d));
    const ratio = (a: SystemName, b: SystemName) => {
      const x = med[a]?.[key];
      const y = med[b]?.[key];
      return x === undefined || y === undefined || !y || Number.isNaN(y) ? "–" : `${(x / y).toFixed(2)}×`;
    };
    return `| ${label} | ${vals.join(" | ")} | ${ratios.map(([, a, b]) => ratio(a, b)).join(" | ")} |`;
  });
  return [head, sep, ...lines].join("\n");
}

/** Per-round values of the cost rows, to judge the spread. */
function perRound(results: Record<string, Metrics[]>): string {
  const keys: [string, string, number][] = [
    ["cpu_ms_per_1000_newconn", "CPU ms / 1000 new conns", 0],
    ["cpu_us_per_keepalive_req", "CPU µs / keep-alive request", 1],
    ["cpu_s_per_GB_download", "CPU s / GB down", 2],
    ["cpu_s_per_GB_upload", "CPU s / GB up", 2],
    ["idle_bytes_per_conn", "bytes / idle conn", 0],
    ["idle_marginal_bytes_per_conn", "marginal bytes / idle conn", 0],
    ["cpu_s_per_GB_first_download", "CPU s / GB, first transfer after start", 2],
    ["start_ms", "start to listening, ms", 0],
  ];
  const names = Object.keys(results).filter((n) => n !== "direct");
  const head = `| metric | ${names.join(" | ")} |\n|---|${names.map(() => "---").join("|")}|`;
  return [
    head,
    ...keys.map(
      ([k, label, d]) =>
        `| ${label} | ${names.map((n) => results[n]!.map((r) => fmt(r[k], d)).join(", ")).join(" | ")} |`,
    ),
  ].join("\n");
}

await main();
