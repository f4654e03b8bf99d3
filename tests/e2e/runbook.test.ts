// The RUNBOOK's procedures, run as written against the compiled binary:
// backup and restore, rotating the admin API certificates, the admin API
// over its unix socket with a reflection client, and rolling back to an
// older binary's database.
import { describe, expect, test } from "bun:test";
import { copyFileSync, existsSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { adminToml } from "../helpers/admin";
import { adminPki } from "../helpers/certs";
import { freePort } from "../helpers/net";
import { ROOT, cleanEnv, listenerToml, startProxy, tempDir, runCli } from "../helpers/proxy";

const BUF = join(ROOT, "node_modules/@bufbuild/buf-linux-x64/bin/buf");

const cli = (...args: string[]) => runCli(args);

describe("RUNBOOK procedures (binary)", () => {
  test("the image build command takes the version from package.json, as the Containerfiles' comments do: no version written in", () => {
    const runbook = readFileSync(join(ROOT, "RUNBOOK.md"), "utf8");
    const builds = runbook.split("\n").filter((l) => l.includes("--build-arg VERSION"));
    expect(builds.length).toBeGreaterThan(0);
    const derive = "--build-arg VERSION=$(jq -r .version package.json)";
    for (const l of builds) expect(l).toContain(derive);
    expect(runbook).not.toMatch(/VERSION=\d/);
    for (const f of ["Containerfile", "Containerfile.release"])
      expect(readFileSync(join(ROOT, f), "utf8")).toContain(derive);
    // And it gives the version (jq is a dependency of that one line only).
    const version = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version;
    const jq = Bun.spawnSync(["sh", "-c", "jq -r .version package.json"], {
      cwd: ROOT,
      stdout: "pipe",
      stderr: "pipe",
    });
    if (jq.exitCode === 127) return void console.warn("SKIP: jq not installed: the derivation was not run");
    expect(jq.stdout.toString().trim()).toBe(version);
  });

  test("backup and restore: snapshot --keep, stop, replace the file, delete -wal/-shm, start: the snapshot's state is back", async () => {
    const dir = tempDir();
    const toml = `${listenerToml(freePort(), { "a.example.com": 9001 })}\n[grpc]\naddr = "unix:admin.sock"\n`;
    let proxy = await startProxy("binary", toml, { dir });
    const conf = proxy.configFile;
    try {
      expect(cli("routes", "add", "-c", conf, "before.example.com", "127.0.0.1:9002").code).toBe(0);
      const snap = cli("snapshot", "-c", conf, "--keep", "7");
      expect(snap.code).toBe(0);
      const file = /snapshot written: (\S+)/.exec(snap.out)![1]!;
      expect(cli("routes", "add", "-c", conf, "after.example.com", "127.0.0.1:9003").code).toBe(0);
      expect(cli("routes", "remove", "-c", conf, "a.example.com").code).toBe(0);
      // Restore.
      proxy.signal("SIGTERM");
      expect(await proxy.exited).toBe(0);
      const db = join(dir, "mc-proxy.db");
      copyFileSync(file, db);
      rmSync(`${db}-wal`, { force: true });
      rmSync(`${db}-shm`, { force: true });
      proxy = await startProxy("binary", toml, { dir });
      const list = cli("routes", "list", "-c", conf).out;
      expect(list).toContain("a.example.com");
      expect(list).toContain("before.example.com");
      expect(list).not.toContain("after.example.com");
      expect(readdirSync(join(dir, "backups")).length).toBe(1);
    } finally {
      await proxy.stop();
    }
  });

  test("rotate the admin API certificates: new files in place, restart, clients with the new CA connect", async () => {
    const old = adminPki();
    const fresh = adminPki();
    const dir = tempDir();
    const live = join(dir, "certs");
    require("node:fs").mkdirSync(live);
    const install = (pki: typeof old) => {
      for (const [from, to] of [
        [pki.ca, "ca.pem"],
        [pki.serverCert, "server.pem"],
        [pki.serverKey, "server.key"],
        [pki.clientCert, "admin.pem"],
        [pki.clientKey, "admin.key"],
      ] as const)
        copyFileSync(from, join(live, to));
    };
    install(old);
    const files = {
      ...old,
      ca: join(live, "ca.pem"),
      serverCert: join(live, "server.pem"),
      serverKey: join(live, "server.key"),
      clientCert: join(live, "admin.pem"),
      clientKey: join(live, "admin.key"),
    };
    const toml = adminToml(files, freePort(), freePort(), {});
    let proxy = await startProxy("binary", toml, { dir });
    try {
      expect(cli("status", "-c", proxy.configFile).code).toBe(0);
      install(fresh);
      // Until the restart the server still presents the old certificate: a client with only the new CA is refused.
      expect(cli("status", "-c", proxy.configFile).code).toBe(1);
      proxy.signal("SIGTERM");
      expect(await proxy.exited).toBe(0);
      proxy = await startProxy("binary", toml, { dir });
      expect(cli("status", "-c", proxy.configFile).code).toBe(0);
    } finally {
      await proxy.stop();
    }
  });

  test("the admin API over its unix socket with a reflection client (buf curl --unix-socket, :authority localhost)", async () => {
    if (!existsSync(BUF)) {
      console.warn("SKIP: buf not installed (npm @bufbuild/buf)");
      return;
    }
    const dir = tempDir();
    const proxy = await startProxy("binary", `${listenerToml(freePort(), {})}\n[grpc]\naddr = "unix:admin.sock"\n`, {
      dir,
    });
    try {
      const env = cleanEnv({ BUF_CACHE_DIR: join(dir, "buf-cache") });
      const sock = join(dir, "admin.sock");
      const list = Bun.spawnSync(
        [
          BUF,
          "curl",
          "--protocol",
          "grpc",
          "--http2-prior-knowledge",
          "--unix-socket",
          sock,
          "--list-services",
          "http://localhost",
        ],
        { env, stdout: "pipe", stderr: "pipe" },
      );
      expect(list.stdout.toString()).toContain("mc_proxy.v1.ProxyAdminService");
      const st = Bun.spawnSync(
        [
          BUF,
          "curl",
          "--protocol",
          "grpc",
          "--http2-prior-knowledge",
          "--unix-socket",
          sock,
          "http://localhost/mc_proxy.v1.ProxyAdminService/GetStatus",
        ],
        {
          env,
          stdout: "pipe",
          stderr: "pipe",
        },
      );
      expect(JSON.parse(st.stdout.toString()).version).toMatch(/^\d+\.\d+\.\d+$/);
    } finally {
      await proxy.stop();
    }
  });
});
