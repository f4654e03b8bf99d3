// CPU and memory readings from /proc, for the processes under test.
import { readdirSync, readFileSync } from "node:fs";

const TICKS_PER_SECOND = 100; // USER_HZ on Linux

/** utime + stime of one process, in seconds (0 if it is gone). */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name (which may contain spaces) start after ")".
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / TICKS_PER_SECOND;
  } catch {
    return 0;
  }
}

/** Resident set size of one process, in bytes. */
export function rssBytes(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m === null ? 0 : Number(m[1]) * 1024;
  } catch {
    return 0;
  }
}

/** A process and all its descendants (nginx master + workers, a shell's child). */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(e));
      children.set(ppid, list);
    } catch {
      // exited meanwhile
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    out.push(p);
    for (const c of children.get(p) ?? []) walk(c);
  };
  walk(root);
  return out;
}

export const treeCpu = (pids: number[]) => pids.reduce((s, p) => s + cpuSeconds(p), 0);
export const treeRss = (pids: number[]) => pids.reduce((s, p) => s + rssBytes(p), 0);

/**
 * The processes' RSS once it has stopped moving: sampled every 500 ms until
 * four samples in a row (1.5 s) stay within 64 KiB, or 20 s have passed.
 * A garbage-collected heap frees on its own schedule (and each Bun worker
 * has its own heap and schedule), so one sample at a fixed delay can catch
 * a heap just before or just after a collection.
 */
export async function settledRss(pids: number[]): Promise<number> {
  const samples = [treeRss(pids)];
  const end = performance.now() + 20_000;
  while (performance.now() < end) {
    await Bun.sleep(500);
    samples.push(treeRss(pids));
    const last = samples.slice(-4);
    if (last.length === 4 && Math.max(...last) - Math.min(...last) <= 64 * 1024) break;
  }
  return samples[samples.length - 1]!;
}

/** Busy CPU seconds of the whole machine (all cores), from /proc/stat. */
export function machineBusySeconds(): number {
  const line = readFileSync("/proc/stat", "utf8").split("\n")[0]!;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal ...
  const idle = v[3]! + v[4]!;
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
  return (total - idle) / TICKS_PER_SECOND;
}

/** CPU seconds used by every process on the machine, keyed by pid (for "who else was busy"). */
export function allProcessCpu(): Map<number, number> {
  const out = new Map<number, number>();
  for (const e of readdirSync("/proc")) {
    if (/^\d+$/.test(e)) out.set(Number(e), cpuSeconds(Number(e)));
  }
  return out;
}

/** SIGTERM, and SIGKILL if the process is still there after 5 s. */
export async function stopProcess(p: import("bun").Subprocess): Promise<void> {
  p.kill("SIGTERM");
  const t = setTimeout(() => p.kill("SIGKILL"), 5000);
  await p.exited;
  clearTimeout(t);
}
