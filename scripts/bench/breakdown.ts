// `bun run bench -- --breakdown [--rounds N] [--seconds S]`: what
// each stage of mc-proxy costs per connection. mc-proxy runs with one worker
// and every stage off ("base": no firewall rules, no GeoIP, no rate limiter,
// log level warn so no access records, no metrics, no PROXY header, one
// backend), then with one stage on at a time, then with all of them on. Each
// variant, HAProxy and a bare Bun relay (the runtime's floor, bare_relay.ts)
// run the bench's two per-connection scenarios — new TLS connections
// (`Connection: close`) and keep-alive requests, wrk at c=50 — interleaved,
// the order rotating every round. The marginal cost of a stage is its
// variant minus base, per round and as the median. `--only a,b` runs some
// (HAProxy and base are always kept); `--baseline REF` adds base and the realistic config
// run by the binary built at REF, for a before/after in the same run.
import type { Subprocess } from "bun";
import { openSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { processTree, stopProcess, treeCpu } from "./procstat";
import { median } from "./stats";
import { type Files, HOST, PORTS, ROOT, USER_ENV, WORK, tcpFront } from "./setup";

const STAGES = ["cidrs", "geoip", "rate", "log", "metrics", "pp", "pool3", "alpn", "policy", "ja4", "top"] as const;
type Stage = (typeof STAGES)[number];

const DESCRIBE: Record<Stage, string> = {
  cidrs: "firewall: 1,000 blocked CIDRs + 1 IP",
  geoip: "GeoIP: country database, 5 blocked countries",
  rate: "rate limiter (1,000,000 / 1 s: never refuses)",
  log: "access log (text, to a file)",
  metrics: "metrics endpoint, scraped every second",
  pp: "PROXY v2 received (from an HAProxy in front, not counted) and sent",
  pool3: "pool of 3 backends (round robin, health checks on)",
  alpn: "an ALPN route (acme-tls/1) beside the name's plain route (wrk offers no ALPN: the plain route serves)",
  policy: "the route's allow list of 1,000 entries (prefixes /8–/32), a deny entry, max_connections",
  ja4: "100 ja4 firewall rules (90 exact, 10 patterns; none matches): every hello fingerprinted and judged",
  top: "the top-fingerprints table (1,000 places, the default): every hello fingerprinted and counted",
};

interface System {
  name: string;
  stages: readonly Stage[];
  /** Reached through the HAProxy in front (without a PROXY header): the reference for +pp. */
  fronted?: boolean;
  /** An mc-proxy binary other than dist/mc-proxy (--baseline REF). */
  binary?: string;
}

function systems(baseline: { ref: string; binary: string } | null): System[] {
  const list: System[] = [
    { name: "haproxy", stages: [] },
    { name: "bare-bun-relay", stages: [] },
    { name: "base", stages: [] },
    ...STAGES.map((s) => ({ name: `+${s}`, stages: [s] })),
    // A client behind a TCP proxy talks differently (segments, close order):
    // the PROXY stage is measured against base behind the same front.
    { name: "base-fronted", stages: [], fronted: true },
    { name: "all", stages: STAGES },
    // The bench's realistic config (the starting point of the per-GB work), for a before/after with --baseline.
    { name: "realistic", stages: REALISTIC },
  ];
  if (baseline !== null) {
    // An older release may not know pools, PROXY or metrics: base and realistic only.
    list.push({ name: `base@${baseline.ref}`, stages: [], binary: baseline.binary });
    list.push({ name: `realistic@${baseline.ref}`, stages: REALISTIC, binary: baseline.binary });
  }
  const only = process.argv.indexOf("--only");
  if (only < 0) return list;
  const want = new Set((process.argv[only + 1] ?? "").split(","));
  // Ratios are to HAProxy and deltas to base (and base-fronted for +pp): keep them, in list order.
  for (const ref of ["haproxy", "base", ...(want.has("+pp") ? ["base-fronted"] : [])]) want.add(ref);
  return list.filter((x) => want.has(x.name));
}

/** With the defaults a release ships: the top-fingerprints table is on by default. */
const REALISTIC: readonly Stage[] = ["cidrs", "geoip", "rate", "log", "top"];

function mcproxyConf(sys: System, f: Files): string {
  const on = (s: Stage) => sys.stages.includes(s);
  const db = join(WORK, `run/breakdown-${sys.name.replace("+", "")}.db`);
  for (const x of ["", "-wal", "-shm"]) rmSync(db + x, { force: true });
  const backends = (port: number) =>
    on("pool3")
      ? `backends = ["127.0.0.1:${port}", "127.0.0.2:${port}", "127.0.0.3:${port}"]\n  balance = "round_robin"`
      : `backend = "127.0.0.1:${port}"`;
  const cidrs = Array.from({ length: 1000 }, (_, i) => `"10.${i >> 8}.${i & 255}.0/24"`).join(", ");
  // 90 fingerprints and 10 patterns that no client of the bench sends.
  const hex = (i: number, n: number) => ((i * 2654435761) >>> 0).toString(16).padStart(8, "0").repeat(2).slice(0, n);
  const ja4Rules = [
    ...Array.from(
      { length: 90 },
      (_, i) =>
        `"t13d${String(10 + (i % 80)).padStart(2, "0")}${String(i % 20).padStart(2, "0")}h2_${hex(i + 1, 12)}_${hex(i + 7, 12)}"`,
    ),
    ...Array.from({ length: 10 }, (_, i) => `"t1${i % 2 === 0 ? "1" : "0"}*_${hex(i + 3, 6)}*_*"`),
  ].join(", ");
  // 999 blocks of every prefix length from /8 to /32 (one probe per distinct length), then loopback.
  const allow = [
    ...Array.from({ length: 999 }, (_, i) => {
      const len = 8 + (i % 25);
      const n = ((11 + (i % 100)) * 2 ** 24 + i * 65_537) >>> 0;
      const net = len === 0 ? 0 : (n & (0xffffffff << (32 - len))) >>> 0;
      return `"${net >>> 24}.${(net >>> 16) & 255}.${(net >>> 8) & 255}.${net & 255}/${len}"`;
    }),
    '"127.0.0.0/8"',
  ].join(", ");
  const conf = `# --breakdown variant ${sys.name}: ${sys.stages.join(", ") || "every stage off"}
[database]
path = "${db}"

[[listeners]]
addr = "127.0.0.1:${on("pp") ? PORTS.breakdownPp : PORTS.breakdown}"
${on("pp") ? `proxy_protocol = true\ntrusted_proxies = ["127.0.0.1"]\n` : ""}  [[listeners.routes]]
  hostname = "${HOST}"
  ${backends(on("pp") ? PORTS.backendPp : PORTS.backend)}
${on("pp") ? `  send_proxy_protocol = "v2"\n` : ""}${on("policy") ? `  allow = [${allow}]\n  deny = ["127.0.0.2"]\n  max_connections = 1000000\n` : ""}${on("alpn") ? `  [[listeners.routes]]\n  hostname = "${HOST}"\n  alpn = ["acme-tls/1"]\n  backend = "127.0.0.1:1"\n` : ""}
[firewall]
${on("cidrs") ? `blocked_ips = ["192.0.2.1"]\nblocked_cidrs = [${cidrs}]\n` : ""}${on("geoip") ? `geoip_db = "${f.geoDb}"\nblocked_countries = ["KP", "IR", "SY", "CU", "RU"]\n` : ""}${on("rate") ? `rate_limit = 1000000\nrate_window = "1s"\n` : ""}${on("ja4") ? `blocked_ja4 = [${ja4Rules}]\n` : ""}
[fingerprints]
top = ${on("top") ? 1000 : 0}

[proxy]
idle_timeout = "10m"
workers = 1

[log]
level = "${on("log") ? "info" : "warn"}"
format = "text"
${on("metrics") ? `\n[metrics]\naddr = "127.0.0.1:${PORTS.breakdownMetrics}"\n` : ""}`;
  const path = join(WORK, `breakdown-${sys.name.replace("+", "")}.toml`);
  writeFileSync(path, conf);
  // A release before workers (or the fingerprint table) refuses the key; it ran one event loop (and no table) anyway.
  if (sys.binary !== undefined && Bun.spawnSync([sys.binary, "check", "-c", path]).exitCode !== 0)
    writeFileSync(path, conf.replace("workers = 1\n", "").replace(/\[fingerprints\]\ntop = \d+\n\n/, ""));
  return path;
}

function frontConf(sendProxy: boolean): string {
  const path = join(WORK, `breakdown-front${sendProxy ? "-pp" : ""}.cfg`);
  writeFileSync(
    path,
    tcpFront(
      `breakdown ${sendProxy ? "+pp" : "base-fronted"}`,
      PORTS.breakdownFront,
      sendProxy ? PORTS.breakdownPp : PORTS.breakdown,
      sendProxy,
    ),
  );
  return path;
}

interface Result {
  newconnMsPer1000: number;
  keepaliveUsPerReq: number;
  errors: number;
}

type Helpers = { withFds: (c: string[]) => string[]; waitPort: (p: number) => Promise<void> };

async function wrk(
  h: Helpers,
  port: number,
  seconds: number,
  close: boolean,
): Promise<{ requests: number; errors: number }> {
  const cmd = [
    "wrk",
    "-t",
    "2",
    "-c",
    "50",
    "-d",
    `${seconds}s`,
    ...(close ? ["-H", "Connection: close"] : []),
    `https://${HOST}:${port}/small`,
  ];
  const p = Bun.spawn(h.withFds(cmd), { stdout: "pipe", stderr: "inherit" });
  const out = await new Response(p.stdout).text();
  await p.exited;
  const m = /(\d+) requests in/.exec(out);
  const e = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  return {
    requests: m === null ? 0 : Number(m[1]),
    errors:
      (e === null ? 0 : e.slice(1).reduce((a, b) => a + Number(b), 0)) + (non2xx === null ? 0 : Number(non2xx[1])),
  };
}

async function measure(sys: System, f: Files, seconds: number, warmup: number, h: Helpers): Promise<Result> {
  let proc: Subprocess;
  let front: Subprocess | null = null;
  let port: number;
  if (sys.name === "haproxy") {
    proc = Bun.spawn(h.withFds(["haproxy", "-db", "-f", f.haproxyConf]), {
      stdout: "ignore",
      stderr: "ignore",
      stdin: "ignore",
    });
    port = PORTS.haproxy;
  } else if (sys.name === "bare-bun-relay") {
    proc = Bun.spawn(
      h.withFds([process.execPath, join(import.meta.dir, "bare_relay.ts"), String(PORTS.bare), String(PORTS.backend)]),
      { stdout: "ignore", stderr: "inherit", stdin: "ignore" },
    );
    port = PORTS.bare;
  } else {
    const log = openSync(join(WORK, "logs/breakdown-access.log"), "a");
    proc = Bun.spawn(h.withFds([sys.binary ?? join(ROOT, "dist/mc-proxy"), "server", "-c", mcproxyConf(sys, f)]), {
      stdout: "ignore",
      stderr: log,
      stdin: "ignore",
      env: USER_ENV,
    });
    port = sys.stages.includes("pp") ? PORTS.breakdownPp : PORTS.breakdown;
  }
  let scraping = sys.stages.includes("metrics");
  try {
    await h.waitPort(port);
    if (sys.stages.includes("pp") || sys.fronted === true) {
      front = Bun.spawn(h.withFds(["haproxy", "-db", "-f", frontConf(sys.stages.includes("pp"))]), {
        stdout: "ignore",
        stderr: "ignore",
        stdin: "ignore",
      });
      port = PORTS.breakdownFront;
      await h.waitPort(port);
    }
    await Bun.sleep(300);
    if (scraping) {
      void (async () => {
        while (scraping) {
          await fetch(`http://127.0.0.1:${PORTS.breakdownMetrics}/metrics`)
            .then((r) => r.text())
            .catch(() => "");
          await Bun.sleep(1000);
        }
      })();
    }
    // Warm-up, the same for every system: a JIT runtime is measured warm, as
    // it runs in production (JSC's compiler threads still take ~5 % of the
    // process in its first 10 s of this load, ~0 after 15 s).
    await wrk(h, port, warmup, true);
    await wrk(h, port, Math.max(1, warmup >> 1), false);
    const cpu = () => treeCpu(processTree(proc.pid));
    let c0 = cpu();
    const n = await wrk(h, port, seconds, true);
    const newconnCpu = cpu() - c0;
    c0 = cpu();
    const k = await wrk(h, port, seconds, false);
    const keepaliveCpu = cpu() - c0;
    return {
      newconnMsPer1000: (newconnCpu * 1000) / (n.requests / 1000),
      keepaliveUsPerReq: (keepaliveCpu * 1e6) / k.requests,
      errors: n.errors + k.errors,
    };
  } finally {
    scraping = false;
    if (front !== null) await stopProcess(front);
    await stopProcess(proc);
  }
}

/** The variant a system's marginal cost is taken against: base, or base behind the front for +pp. */
function reference(sys: System): string | null {
  if (sys.name === "haproxy" || sys.name === "bare-bun-relay" || sys.name === "base") return null;
  if (sys.name === "+pp") return "base-fronted";
  return "base";
}

export async function breakdown(
  f: Files,
  rounds: number,
  seconds: number,
  h: Helpers,
  baseline: { ref: string; binary: string } | null,
): Promise<void> {
  const started = Date.now();
  const SYSTEMS = systems(baseline);
  const warmup = seconds >= 5 ? 6 : 2;
  const backend = Bun.spawn(h.withFds(["nginx", "-c", f.backendConf]), { stdout: "ignore", stderr: "inherit" });
  const results = new Map<string, Result[]>();
  try {
    await h.waitPort(PORTS.backend);
    for (let round = 0; round < rounds; round++) {
      const order = SYSTEMS.map((_, i) => SYSTEMS[(i + round * 3) % SYSTEMS.length]!);
      for (const sys of order) {
        const r = await measure(sys, f, seconds, warmup, h);
        if (!results.has(sys.name)) results.set(sys.name, []);
        results.get(sys.name)!.push(r);
        console.log(
          `breakdown: round ${round + 1}/${rounds} ${sys.name}: ${r.newconnMsPer1000.toFixed(1)} ms / 1000 new, ${r.keepaliveUsPerReq.toFixed(2)} µs / keep-alive request${r.errors > 0 ? `, ${r.errors} errors` : ""}`,
        );
      }
    }
  } finally {
    await stopProcess(backend);
  }
  const get = (name: string) => results.get(name)!;
  const hap = get("haproxy");
  const fmtRounds = (v: number[], d: number) => v.map((x) => x.toFixed(d)).join(" / ");
  const lines = [
    `\`bun run bench -- --breakdown\`: ${rounds} interleaved rounds, ${seconds} s per scenario after a ${warmup} s + ${Math.max(1, warmup >> 1)} s warm-up, proxy CPU (user + system, /proc) per connection; medians, per-round values after them. Δ: the variant minus base in the same round (+pp: minus base-fronted).`,
    "",
    "| system | stage | CPU ms / 1000 new conns | × HAProxy | Δ vs base (per round) | CPU µs / keep-alive req | × HAProxy | Δ vs base (per round) |",
    "|---|---|---:|---:|---:|---:|---:|---:|",
  ];
  for (const sys of SYSTEMS) {
    const r = get(sys.name);
    const n = r.map((x) => x.newconnMsPer1000);
    const k = r.map((x) => x.keepaliveUsPerReq);
    const stage =
      sys.name === "haproxy"
        ? "reference (nbthread 1)"
        : sys.name === "bare-bun-relay"
          ? "runtime floor: no parsing, no features"
          : sys.name === "base-fronted"
            ? "every stage off, behind the HAProxy front (reference for +pp)"
            : sys.stages.length === 0
              ? `every stage off${sys.binary !== undefined ? " (baseline binary)" : ""}`
              : sys.stages === REALISTIC
                ? `the bench's realistic config: CIDRs, GeoIP, rate limiter, access log${sys.binary !== undefined ? " (baseline binary)" : ""}`
                : sys.stages.length > 1
                  ? "every stage on"
                  : DESCRIBE[sys.stages[0]!];
    // Marginal cost per round: this round's variant minus this round's reference.
    const ref = reference(sys);
    const against = ref === null ? null : get(ref);
    const dn = against === null ? [] : r.map((x, i) => x.newconnMsPer1000 - against[i]!.newconnMsPer1000);
    const dk = against === null ? [] : r.map((x, i) => x.keepaliveUsPerReq - against[i]!.keepaliveUsPerReq);
    const delta = (d: number[], digits: number) =>
      against !== null ? `${median(d) >= 0 ? "+" : ""}${median(d).toFixed(digits)} (${fmtRounds(d, digits)})` : "–";
    lines.push(
      `| ${sys.name} | ${stage} | ${median(n).toFixed(1)} (${fmtRounds(n, 0)}) | ${(median(n) / median(hap.map((x) => x.newconnMsPer1000))).toFixed(2)}× | ${delta(dn, 1)} | ${median(k).toFixed(2)} (${fmtRounds(k, 2)}) | ${(median(k) / median(hap.map((x) => x.keepaliveUsPerReq))).toFixed(2)}× | ${delta(dk, 2)} |`,
    );
  }
  const errs = [...results.entries()].filter(([, r]) => r.some((x) => x.errors > 0));
  lines.push(
    "",
    errs.length === 0
      ? "No wrk errors in any run."
      : `wrk errors: ${errs.map(([n, r]) => `${n} ${r.map((x) => x.errors).join("/")}`).join(", ")}`,
  );
  console.log(`\n${lines.join("\n")}`);
  const out = join(WORK, `breakdown-${new Date().toISOString().replace(/[:.]/g, "-")}.md`);
  writeFileSync(out, `${lines.join("\n")}\n`);
  console.log(`\nbreakdown: written to ${out} (${((Date.now() - started) / 1000).toFixed(0)} s)`);
}
