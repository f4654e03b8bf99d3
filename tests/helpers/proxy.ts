// Runs the real mc-proxy as a child process — from source (`bun run
// src/main.ts`) or the compiled binary (dist/mc-proxy) — on a config written to
// a temp dir, and collects its structured (JSON) log.
import { existsSync, mkdtempSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";
import { sleep } from "./net";

export type Mode = "source" | "binary";
/** MC_PROXY_TEST_MODES=binary narrows the suites that run in both modes (the release test uses it). */
export const MODES: Mode[] = (process.env.MC_PROXY_TEST_MODES?.split(",") as Mode[] | undefined) ?? [
  "source",
  "binary",
];

export const ROOT = resolve(import.meta.dir, "../..");
/** MC_PROXY_TEST_BINARY runs the binary-mode tests against another build (a release binary); it is never rebuilt. */
const BINARY_OVERRIDE = process.env.MC_PROXY_TEST_BINARY;
export const BINARY = BINARY_OVERRIDE ?? join(ROOT, "dist/mc-proxy");

let built = false;

function newestSource(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newestSource(p) : statSync(p).mtimeMs);
  }
  return t;
}

/**
 * Build dist/mc-proxy if it is missing or older than the source (CI builds it
 * first; this keeps a local `bun test` from testing a stale binary).
 */
export function ensureBinary(): string {
  if (
    !built &&
    BINARY_OVERRIDE === undefined &&
    (!existsSync(BINARY) || statSync(BINARY).mtimeMs < newestSource(join(ROOT, "src")))
  ) {
    const r = Bun.spawnSync([process.execPath, "run", "build"], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
    if (r.exitCode !== 0) throw new Error(`bun run build failed: ${r.stderr.toString()}`);
  }
  built = true;
  return BINARY;
}

export function command(mode: Mode): string[] {
  return mode === "binary" ? [ensureBinary()] : [process.execPath, "run", join(ROOT, "src/main.ts")];
}

/**
 * For a test that reads the proxy's RSS as the memory it still holds: the
 * allocator's default purge (freed memory given back after 10 ms;
 * docs/PERFORMANCE.md "The allocator"). A server otherwise runs with purge
 * off, and its RSS keeps the peak of what it once used, in use or not.
 */
export const RSS_IS_LIVE = { MIMALLOC_PURGE_DELAY: "10" };

/** The environment without any MCPROXY_* overrides from the caller's shell. */
export function cleanEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env))
    if (!k.startsWith("MCPROXY_") && !k.startsWith("MC_PROXY_TEST_") && v !== undefined) env[k] = v;
  return { ...env, ...extra };
}

export function tempDir(prefix = "mcproxy-test-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export type LogRecord = Record<string, unknown> & { msg: string; level: string };

export class RunningProxy {
  private text = "";
  readonly exited: Promise<number>;

  constructor(
    readonly proc: Subprocess<"ignore", "pipe", "pipe">,
    readonly configFile: string,
  ) {
    this.exited = proc.exited;
    void this.pump(proc.stderr);
    void this.pump(proc.stdout);
  }

  private async pump(stream: ReadableStream<Uint8Array>): Promise<void> {
    const dec = new TextDecoder();
    for await (const chunk of stream) this.text += dec.decode(chunk, { stream: true });
  }

  get pid(): number {
    return this.proc.pid;
  }

  get output(): string {
    return this.text;
  }

  records(): LogRecord[] {
    const out: LogRecord[] = [];
    for (const line of this.text.split("\n")) {
      if (!line.startsWith("{")) continue;
      try {
        out.push(JSON.parse(line) as LogRecord);
      } catch {
        // a line cut mid-write; the next read completes it
      }
    }
    return out;
  }

  access(): LogRecord[] {
    return this.records().filter((r) => r.msg === "access");
  }

  /** Wait until an access record matching `pred` is logged. */
  async waitAccess(pred: (r: LogRecord) => boolean, ms = 5000): Promise<LogRecord> {
    const end = Date.now() + ms;
    for (;;) {
      const r = this.access().find(pred);
      if (r !== undefined) return r;
      if (Date.now() > end) throw new Error(`no matching access record within ${ms} ms; log:\n${this.text}`);
      await sleep(20);
    }
  }

  signal(sig: NodeJS.Signals): void {
    this.proc.kill(sig);
  }

  /** RSS of the proxy process in bytes, from /proc. */
  rss(): number {
    const status = require("node:fs").readFileSync(`/proc/${this.pid}/status`, "utf8") as string;
    const m = /VmRSS:\s+(\d+) kB/.exec(status);
    return m === null ? 0 : Number(m[1]) * 1024;
  }

  /**
   * Stop it, and the successors a reload started (they write to this one's stdout and stderr, so their "started"
   * names them): a test that reloads must not leave a server running after it.
   */
  async stop(): Promise<void> {
    for (const r of this.records()) {
      const pid = r.msg === "started" ? Number(r.pid) : 0;
      if (pid > 0 && pid !== this.proc.pid && this.runsThisConfig(pid)) process.kill(pid, "SIGKILL");
    }
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill("SIGKILL");
    await this.exited;
  }

  /** Whether `pid` is still a process of this config (a pid is reused once its process is gone). */
  private runsThisConfig(pid: number): boolean {
    try {
      return require("node:fs").readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(this.configFile) as boolean;
    } catch {
      return false;
    }
  }
}

/**
 * Start the proxy on `toml` (logging JSON at info unless the config says
 * otherwise) and wait until it is up.
 */
export async function startProxy(
  mode: Mode,
  toml: string,
  opts: {
    env?: Record<string, string>;
    dir?: string;
    /** argv prefix, e.g. ["prlimit", "--nofile=256:256"] (it must exec the proxy) */
    wrap?: string[];
    /** Ready when this loopback port accepts (for a log level that hides "started"). */
    readyPort?: number;
  } = {},
): Promise<RunningProxy> {
  const dir = opts.dir ?? tempDir();
  const file = join(dir, "mc-proxy.toml");
  const body = toml.includes("[log]") ? toml : `${toml}\n[log]\nlevel = "info"\nformat = "json"\n`;
  writeFileSync(file, body);
  const proc = Bun.spawn([...(opts.wrap ?? []), ...command(mode), "server", "-c", file], {
    cwd: dir,
    env: cleanEnv(opts.env),
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const p = new RunningProxy(proc, file);
  const end = Date.now() + 15_000;
  // "started" is logged once every listener and the admin API are up.
  const accepts = async (port: number) => {
    try {
      const c = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } });
      c.end();
      return true;
    } catch {
      return false;
    }
  };
  while (
    opts.readyPort === undefined ? !p.records().some((r) => r.msg === "started") : !(await accepts(opts.readyPort))
  ) {
    if (proc.exitCode !== null) throw new Error(`mc-proxy exited with ${proc.exitCode} before listening:\n${p.output}`);
    if (Date.now() > end) {
      await p.stop();
      throw new Error(`mc-proxy did not start within 15 s:\n${p.output}`);
    }
    await sleep(20);
  }
  return p;
}

/** Run the compiled binary's command line to completion: its exit code and output. */
export function runCli(
  args: string[],
  opts: { env?: Record<string, string>; cwd?: string } = {},
): { code: number; out: string; err: string } {
  const r = Bun.spawnSync([...command("binary"), ...args], {
    env: cleanEnv(opts.env),
    cwd: opts.cwd,
    stdout: "pipe",
    stderr: "pipe",
  });
  return { code: r.exitCode, out: r.stdout.toString(), err: r.stderr.toString() };
}

export { listenerToml } from "./toml";
