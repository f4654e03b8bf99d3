// `bun run bench -- --scaling [--rounds N] [--seconds S]`: the proxy-bound
// proxy-bound scenario — a recorded ClientHello and a 64-byte reply from a
// plain TCP backend, many short connections per second, no TLS crypto — for
// HAProxy (nbthread 1, 2), nginx (worker_processes 1, 2) and mc-proxy
// (workers 1, 2), interleaved per round. Reports connections per second at
// saturation, proxy CPU per 1,000 connections both at saturation and at a
// paced rate (PACED_RATE) the proxy carries with cores to spare, and each
// system's 2/1 ratios.
//
// Why the paced rate: on a small host the load generator and the backend
// share the cores with the proxy, so at saturation a second loop mostly
// adds run-queue contention and cross-core wake-ups, and CPU per
// connection measures the scheduler as much as the proxy. At a fixed
// offered load well under saturation it measures what a connection costs
// with one loop against two.
import type { Subprocess } from "bun";
import { join } from "node:path";
import { processTree, stopProcess, treeCpu } from "./procstat";
import { median } from "./stats";
import { type Files, PORTS, REPLY_BYTES, ROOT } from "./setup";

type Sys = "haproxy" | "nginx" | "mc-proxy";

/** Connections per second for the paced measurement: about a third of what each system carries at saturation here. */
const PACED_RATE = 4000;

interface Result {
  connsPerS: number;
  cpuMsPer1000: number;
  errors: number;
  pacedConnsPerS: number;
  pacedCpuMsPer1000: number;
}

async function measure(
  f: Files,
  sys: Sys,
  n: 1 | 2,
  seconds: number,
  withFds: (c: string[]) => string[],
  waitPort: (p: number) => Promise<void>,
): Promise<Result> {
  const i = n - 1;
  const [cmd, port] =
    sys === "haproxy"
      ? [["haproxy", "-db", "-f", f.scaling.haproxy[i]], PORTS.scaleHaproxy]
      : sys === "nginx"
        ? [["nginx", "-c", f.scaling.nginx[i]], PORTS.scaleNginx]
        : [[join(ROOT, "dist/mc-proxy"), "server", "-c", f.scaling.mcproxy[i]], PORTS.scaleMcproxy];
  const proc: Subprocess = Bun.spawn(withFds(cmd as string[]), { stdout: "ignore", stderr: "ignore", stdin: "ignore" });
  try {
    await waitPort(port as number);
    await Bun.sleep(500);
    const load = (secs: number, rate?: number) =>
      Bun.spawn(
        withFds([
          process.execPath,
          join(import.meta.dir, "hello_load.ts"),
          String(port),
          String(secs),
          "64",
          f.helloFile,
          String(REPLY_BYTES),
          ...(rate === undefined ? [] : [String(rate)]),
        ]),
        {
          stdout: "pipe",
          stderr: "inherit",
        },
      );
    /** Run one load; the proxy's CPU and the completed connections over it. */
    const run = async (secs: number, rate?: number) => {
      const pids = processTree(proc.pid);
      const c0 = treeCpu(pids);
      const t0 = performance.now();
      const out = await new Response(load(secs, rate).stdout).text();
      const wall = (performance.now() - t0) / 1000;
      const cpu = treeCpu(processTree(proc.pid)) - c0;
      const m = /done (\d+) (\d+)/.exec(out);
      const done = m === null ? 0 : Number(m[1]);
      return {
        connsPerS: done / wall,
        cpuMsPer1000: (cpu * 1000) / (done / 1000),
        errors: m === null ? -1 : Number(m[2]),
      };
    };
    // Warm-up (the JIT, the accept queues), then the measurements.
    await load(2).exited;
    const sat = await run(seconds);
    const paced = await run(seconds, PACED_RATE);
    return {
      ...sat,
      errors: sat.errors + paced.errors,
      pacedConnsPerS: paced.connsPerS,
      pacedCpuMsPer1000: paced.cpuMsPer1000,
    };
  } finally {
    await stopProcess(proc);
  }
}

export async function scaling(
  f: Files,
  rounds: number,
  seconds: number,
  withFds: (c: string[]) => string[],
  waitPort: (p: number) => Promise<void>,
): Promise<void> {
  const backend = Bun.spawn(withFds(["nginx", "-c", f.replyBackendConf]), { stdout: "ignore", stderr: "inherit" });
  await waitPort(PORTS.replyBackend);
  const runs: Record<string, Result[]> = {};
  const order: [Sys, 1 | 2][] = [
    ["haproxy", 1],
    ["haproxy", 2],
    ["nginx", 1],
    ["nginx", 2],
    ["mc-proxy", 1],
    ["mc-proxy", 2],
  ];
  try {
    for (let r = 0; r < rounds; r++) {
      const rotated = order.map((_, i) => order[(i + r * 2) % order.length]!);
      for (const [sys, n] of rotated) {
        const res = await measure(f, sys, n, seconds, withFds, waitPort);
        (runs[`${sys} ${n}`] ??= []).push(res);
        console.log(
          `scaling: round ${r + 1}/${rounds} ${sys} ×${n}: ${res.connsPerS.toFixed(0)} conn/s, ${res.cpuMsPer1000.toFixed(0)} ms CPU / 1000; paced ${res.pacedConnsPerS.toFixed(0)} conn/s, ${res.pacedCpuMsPer1000.toFixed(1)} ms CPU / 1000; ${res.errors} errors`,
        );
      }
    }
  } finally {
    backend.kill("SIGTERM");
    await backend.exited;
  }
  const med = (k: string, f2: keyof Result) => median(runs[k]!.map((x) => x[f2]));
  const lines = [
    `| system | conn/s ×1 | conn/s ×2 | 2/1 throughput | CPU ms/1000 ×1 | CPU ms/1000 ×2 | 2/1 CPU per conn | at ${PACED_RATE}/s: CPU ms/1000 ×1 | ×2 | 2/1 |`,
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  ];
  for (const sys of ["haproxy", "nginx", "mc-proxy"] as Sys[]) {
    const [a, b] = [med(`${sys} 1`, "connsPerS"), med(`${sys} 2`, "connsPerS")];
    const [ca, cb] = [med(`${sys} 1`, "cpuMsPer1000"), med(`${sys} 2`, "cpuMsPer1000")];
    const [pa, pb] = [med(`${sys} 1`, "pacedCpuMsPer1000"), med(`${sys} 2`, "pacedCpuMsPer1000")];
    lines.push(
      `| ${sys} | ${a.toFixed(0)} | ${b.toFixed(0)} | ${(b / a).toFixed(2)}× | ${ca.toFixed(0)} | ${cb.toFixed(0)} | ${(cb / ca).toFixed(2)}× | ${pa.toFixed(1)} | ${pb.toFixed(1)} | ${(pb / pa).toFixed(2)}× |`,
    );
  }
  console.log(`\n${lines.join("\n")}\n\nPer-round values (conn/s; CPU ms/1000; paced conn/s; paced CPU ms/1000):`);
  for (const [k, v] of Object.entries(runs)) {
    const col = (g: (x: Result) => number, d: number) => v.map((x) => g(x).toFixed(d)).join(", ");
    console.log(
      `- ${k}: ${col((x) => x.connsPerS, 0)}; ${col((x) => x.cpuMsPer1000, 0)}; ${col((x) => x.pacedConnsPerS, 0)}; ${col((x) => x.pacedCpuMsPer1000, 1)}`,
    );
  }
}
