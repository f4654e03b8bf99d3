// The kernel's net.ipv4.tcp_migrate_req warning (src/server/host_limits.ts
// migrateWarning) is said once, by the process that takes over — the only
// moment queued connections can be reset for want of it — and not by `check`
// or a plain start (the demo's, a first start).
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { freePort, waitFor } from "../helpers/net";
import { BINARY, cleanEnv, runCli, startProxy } from "../helpers/proxy";

function migrateReq(): string | null {
  try {
    return readFileSync("/proc/sys/net/ipv4/tcp_migrate_req", "utf8").trim();
  } catch {
    return null;
  }
}

test("tcp_migrate_req: not from check nor a plain start; once from the process that takes over", async () => {
  if (migrateReq() === "1")
    return void console.warn("SKIP: net.ipv4.tcp_migrate_req is 1 here: there is no warning to look for");
  const port = freePort();
  const toml = `[[listeners]]\naddr = "127.0.0.1:${port}"\n  [[listeners.routes]]\n  hostname = "a.example.com"\n  backend = "127.0.0.1:1"\n[grpc]\naddr = "unix:admin.sock"\n`;
  const proxy = await startProxy("binary", toml);
  const cwd = join(proxy.configFile, "..");
  const warned = () => proxy.records().filter((r) => String(r.msg).includes("tcp_migrate_req"));
  try {
    const checked = runCli(["check", "-c", proxy.configFile], { cwd });
    expect(checked.code).toBe(0);
    expect(checked.out + checked.err).not.toContain("tcp_migrate_req");
    expect(warned()).toHaveLength(0);
    // A takeover: the successor writes where this process does (its log is proxy.output).
    const r = Bun.spawnSync([BINARY, "reload", "-c", proxy.configFile], {
      cwd,
      env: cleanEnv(),
      stdout: "pipe",
      stderr: "pipe",
      timeout: 60_000,
    });
    expect(r.stdout.toString() + r.stderr.toString()).toContain("reloaded");
    expect(r.exitCode).toBe(0);
    await waitFor(() => proxy.records().filter((x) => x.msg === "started").length === 2, 15_000, "the successor");
    expect(warned()).toHaveLength(1);
    expect(warned()[0]!.level).toBe("warn");
    // The reload command itself does not say it again.
    expect(r.stdout.toString() + r.stderr.toString()).not.toContain("tcp_migrate_req");
  } finally {
    // The successor is not this test's child: stop it through its pid in the log.
    const pids = proxy.records().flatMap((x) => (x.msg === "started" && typeof x.pid === "number" ? [x.pid] : []));
    for (const pid of pids)
      try {
        process.kill(pid, "SIGKILL");
      } catch {}
    await proxy.stop();
  }
}, 90_000);
