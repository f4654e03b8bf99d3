// `bun run bench -- --profile [--seconds S]`: a CPU profile of mc-proxy's
// per-connection path under load — the source run with Bun's --cpu-prof, the
// bench's realistic config (1,000 CIDRs, 5 countries, the rate limiter, the
// access log), one worker, wrk opening new TLS connections — rendered as
// docs/flamegraph-newconn.svg, with the top 10 frames by self time printed
// as a Markdown table.
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type CpuProfile, flameGraphSvg, topSelf } from "./flamegraph";
import { type Files, HOST, PORTS, ROOT, WORK } from "./setup";

export async function profile(
  f: Files,
  seconds: number,
  withFds: (c: string[]) => string[],
  waitPort: (p: number) => Promise<void>,
): Promise<void> {
  const dir = join(WORK, "prof");
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const backend = Bun.spawn(withFds(["nginx", "-c", f.backendConf]), { stdout: "ignore", stderr: "inherit" });
  await waitPort(PORTS.backend);
  const proxy = Bun.spawn(
    withFds([
      process.execPath,
      "--cpu-prof",
      `--cpu-prof-dir=${dir}`,
      "--cpu-prof-interval=250",
      join(ROOT, "src/main.ts"),
      "server",
      "-c",
      f.mcproxyConf,
    ]),
    {
      stdout: "ignore",
      stderr: "ignore",
    },
  );
  try {
    await waitPort(PORTS.mcproxy);
    const wrk = (secs: number) =>
      Bun.spawn(
        withFds([
          "wrk",
          "-t",
          "2",
          "-c",
          "50",
          "-d",
          `${secs}s`,
          "-H",
          "Connection: close",
          `https://${HOST}:${PORTS.mcproxy}/small`,
        ]),
        { stdout: "pipe", stderr: "inherit" },
      );
    await wrk(3).exited;
    const out = await new Response(wrk(seconds).stdout).text();
    console.log(
      `profile: ${/(\d+) requests in/.exec(out)?.[1] ?? "?"} new TLS connections in ${seconds} s (after a 3 s warm-up)`,
    );
  } finally {
    proxy.kill("SIGTERM");
    await proxy.exited;
    backend.kill("SIGTERM");
    await backend.exited;
  }
  const file = readdirSync(dir).find((n) => n.endsWith(".cpuprofile"));
  if (file === undefined) throw new Error(`no .cpuprofile in ${dir}: did the proxy exit cleanly?`);
  const p = JSON.parse(readFileSync(join(dir, file), "utf8")) as CpuProfile;
  const svg = join(ROOT, "docs/flamegraph-newconn.svg");
  writeFileSync(
    svg,
    flameGraphSvg(
      p,
      `mc-proxy, new TLS connections through the realistic config (bun --cpu-prof, ${((p.endTime - p.startTime) / 1e6).toFixed(0)} s)`,
    ),
  );
  console.log(`profile: flame graph written to ${svg} (profile: ${join(dir, file)})\n`);
  console.log("| # | frame | self ms | share |\n|---:|---|---:|---:|");
  for (const [i, t] of topSelf(p, 10).entries())
    console.log(`| ${i + 1} | \`${t.frame}\` | ${t.ms.toFixed(0)} | ${(t.share * 100).toFixed(1)} % |`);
}
