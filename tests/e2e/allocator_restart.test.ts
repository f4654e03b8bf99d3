// A server started as users start it — no MIMALLOC_PURGE_DELAY in its
// environment — runs with the allocator's purge delay at a second
// (docs/PERFORMANCE.md "The allocator", src/cli/allocator.ts): it ran itself
// again with the variable set, the same pid, before loading anything. A
// value the operator sets is kept. The binary and the source alike.
import { describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { allocatorRestart } from "../../src/cli/allocator";
import { freePort, sleep } from "../helpers/net";
import { MODES, command, tempDir } from "../helpers/proxy";

/** The environment of the test process without the variable (whatever the shell running the tests sets). */
function envWithout(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env))
    if (v !== undefined && k !== "MIMALLOC_PURGE_DELAY" && !k.startsWith("MCPROXY_")) env[k] = v;
  return { ...env, ...extra };
}

/** Start a server, wait for "started"; its pid as spawned, the pid it logs, its environment and its log. */
async function started(mode: (typeof MODES)[number], env: Record<string, string>) {
  const dir = tempDir();
  const file = join(dir, "mc-proxy.toml");
  writeFileSync(
    file,
    `[[listeners]]\naddr = "127.0.0.1:${freePort()}"\ndefault_backend = "127.0.0.1:9"\n[log]\nformat = "json"\n`,
  );
  const proc = Bun.spawn([...command(mode), "server", "-c", file], { cwd: dir, env, stdout: "pipe", stderr: "pipe" });
  let text = "";
  const reader = (async () => {
    for await (const chunk of proc.stderr as ReadableStream<Uint8Array>) text += new TextDecoder().decode(chunk);
  })();
  const records = () =>
    text
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  const end = Date.now() + 20_000;
  while (!records().some((r) => r.msg === "started")) {
    if (proc.exitCode !== null || Date.now() > end) throw new Error(`no "started" (exit ${proc.exitCode}):\n${text}`);
    await sleep(20);
  }
  const environ = readFileSync(`/proc/${proc.pid}/environ`, "latin1").split("\0");
  const logged = records();
  proc.kill("SIGTERM");
  await proc.exited;
  await reader;
  return { pid: proc.pid, environ, logged };
}

describe("the allocator's purge delay", () => {
  test("allocatorRestart: only `server`, only when unset; a compiled binary's own path is not passed again", () => {
    const env = { PATH: "/bin", X: "1" };
    expect(allocatorRestart(["bun", "/$bunfs/root/mc-proxy", "status"], env, "/usr/bin/mc-proxy")).toBeNull();
    expect(
      allocatorRestart(["bun", "/$bunfs/root/mc-proxy", "server"], { ...env, MIMALLOC_PURGE_DELAY: "10" }, "/x"),
    ).toBeNull();
    expect(allocatorRestart(["bun", "/$bunfs/root/mc-proxy", "server", "-c", "f"], env, "/usr/bin/mc-proxy")).toEqual({
      path: "/usr/bin/mc-proxy",
      args: ["/usr/bin/mc-proxy", "server", "-c", "f"],
      env: { PATH: "/bin", X: "1", MIMALLOC_PURGE_DELAY: "1000" },
    });
    expect(allocatorRestart(["/usr/bin/bun", "/src/main.ts", "server", "-c", "f"], env, "/usr/bin/bun")?.args).toEqual([
      "/usr/bin/bun",
      "/src/main.ts",
      "server",
      "-c",
      "f",
    ]);
  });

  for (const mode of MODES) {
    test(`${mode}: started with nothing set, it serves with the purge delay at a second, under the pid it was started as`, async () => {
      const s = await started(mode, envWithout());
      expect(s.environ).toContain("MIMALLOC_PURGE_DELAY=1000");
      expect(s.logged.find((r) => r.msg === "memory allocator")).toMatchObject({ purge_delay: "1000" });
      expect(s.logged.find((r) => r.msg === "started")).toMatchObject({ pid: s.pid });
      // One start: the run before the restart logged nothing.
      expect(s.logged.filter((r) => r.msg === "memory allocator")).toHaveLength(1);
    }, 60_000);

    test(`${mode}: a value the operator sets is kept`, async () => {
      const s = await started(mode, envWithout({ MIMALLOC_PURGE_DELAY: "10" }));
      expect(s.environ).toContain("MIMALLOC_PURGE_DELAY=10");
      expect(s.logged.find((r) => r.msg === "memory allocator")).toMatchObject({ purge_delay: "10" });
    }, 60_000);
  }
});
