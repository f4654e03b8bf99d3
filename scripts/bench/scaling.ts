// `bun run bench -- --scaling [--rounds N] [--seconds S]`: the proxy-bound
// scenario of issue 11 — a recorded ClientHello and a 64-byte reply from a
// plain TCP backend, many short connections per second, no TLS crypto — for
// HAProxy (nbthread 1, 2), nginx (worker_processes 1, 2) and mc-proxy
// (workers 1, 2), interleaved per round. Reports connections per second,
// proxy CPU per 1,000 connections, and each system's 2/1 ratios.
import type { Subprocess } from "bun";
import { join } from "node:path";
import { processTree, stopProcess, treeCpu } from "./procstat";
import { median } from "./stats";
import { type Files, PORTS, REPLY_BYTES, ROOT } from "./setup";

type Sys = "haproxy" | "nginx" | "mc-proxy";

interface Result {
  connsPerS: number;
  cpuMsPer1000: number;
  errors: number;
}

async function measure(f: Files, sys: Sys, n: 1 | 2, seconds: number, withFds: (c: string[]) => string[], waitPort: (p: number) => Promise<void>): Promise<Result> {
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
    const load = (secs: number) =>
      Bun.spawn(withFds([process.execPath, join(import.meta.dir, "hello_load.ts"), String(port), String(secs), "64", f.helloFile, String(REPLY_BYTES)]), { stdout: "pipe", stderr: "inherit" });
    // Warm-up (the JIT, the accept queues), then the measurement.
    await load(2).exited;
    const pids = processTree(proc.pid);
    const c0 = treeCpu(pids);
    const t0 = performance.now();
    const l = load(seconds);
    const out = await new Response(l.stdout).text();
    const wall = (performance.now() - t0) / 1000;
    const cpu = treeCpu(processTree(proc.pid)) - c0;
    const m = /done (\d+) (\d+)/.exec(out);
    const done = m === null ? 0 : Number(m[1]);
    return { connsPerS: done / wall, cpuMsPer1000: (cpu * 1000) / (done / 1000), errors: m === null ? -1 : Number(m[2]) };
  } finally {
    await stopProcess(proc);
  }
}


export async function scaling(f: Files, rounds: number, seconds: number, withFds: (c: string[]) => string[], waitPort: (p: number) => Promise<void>): Promise<void> {
  const backend = Bun.spawn(withFds(["nginx", "-c", f.replyBackendConf]), { stdout: "ignore", stderr: "inherit" });
  await waitPort(PORTS.replyBackend);
  const runs: Record<string, Result[]> = {};
  const order: [Sys, 1 | 2][] = [["haproxy", 1], ["haproxy", 2], ["nginx", 1], ["nginx", 2], ["mc-proxy", 1], ["mc-proxy", 2]];
  try {
    for (let r = 0; r < rounds; r++) {
      const rotated = order.map((_, i) => order[(i + r * 2) % order.length]!);
      for (const [sys, n] of rotated) {
        const res = await measure(f, sys, n, seconds, withFds, waitPort);
        (runs[`${sys} ${n}`] ??= []).push(res);
        console.log(`scaling: round ${r + 1}/${rounds} ${sys} ×${n}: ${res.connsPerS.toFixed(0)} conn/s, ${res.cpuMsPer1000.toFixed(0)} ms CPU / 1000, ${res.errors} errors`);
      }
    }
  } finally {
    backend.kill("SIGTERM");
    await backend.exited;
  }
  const med = (k: string, f2: keyof Result) => median(runs[k]!.map((x) => x[f2]));
  const lines = ["| system | conn/s ×1 | conn/s ×2 | 2/1 throughput | CPU ms/1000 ×1 | CPU ms/1000 ×2 | 2/1 CPU per conn |", "|---|---:|---:|---:|---:|---:|---:|"];
  for (const sys of ["haproxy", "nginx", "mc-proxy"] as Sys[]) {
    const a = med(`${sys} 1`, "connsPerS");
    const b = med(`${sys} 2`, "connsPerS");
    const ca = med(`${sys} 1`, "cpuMsPer1000");
    const cb = med(`${sys} 2`, "cpuMsPer1000");
    lines.push(`| ${sys} | ${a.toFixed(0)} | ${b.toFixed(0)} | ${(b / a).toFixed(2)}× | ${ca.toFixed(0)} | ${cb.toFixed(0)} | ${(cb / ca).toFixed(2)}× |`);
  }
  console.log(`\n${lines.join("\n")}\n\nPer-round values (conn/s; CPU ms/1000):`);
  for (const [k, v] of Object.entries(runs)) console.log(`- ${k}: ${v.map((x) => x.connsPerS.toFixed(0)).join(", ")}; ${v.map((x) => x.cpuMsPer1000.toFixed(0)).join(", ")}`);
}
