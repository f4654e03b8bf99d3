// Shipping: the root filesystem from scripts/rootfs.sh in a chroot
// as the unprivileged mc-proxy user, the FROM scratch image built and run
// with podman (runc), the release binaries (x64 through the routing suite,
// arm64 under qemu-user), and the systemd units. Needs root; each part
// skips with a message naming what is missing.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chownSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { testCert } from "../helpers/certs";
import { freePort, waitFor } from "../helpers/net";
import { ensureCommands } from "../helpers/packages";
import { ROOT, cleanEnv, ensureBinary, listenerToml, tempDir } from "../helpers/proxy";
import { buildRootfs } from "../helpers/rootfs";
import { bodyOf, type TlsBackend, tlsBackend, tlsGet } from "../helpers/tls";

const VERSION = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version;
const isRoot = process.getuid?.() === 0;

function run(cmd: string[], opts: { cwd?: string; env?: Record<string, string> } = {}) {
  const r = Bun.spawnSync(cmd, { cwd: opts.cwd ?? ROOT, env: opts.env ?? cleanEnv(), stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode, out: r.stdout.toString(), err: r.stderr.toString() };
}

/** Follow a child's stderr into a string. */
function follow(p: { stderr: ReadableStream<Uint8Array> }): { text: string } {
  const log = { text: "" };
  void (async () => {
    for await (const chunk of p.stderr) log.text += new TextDecoder().decode(chunk);
  })();
  return log;
}

/** Config for one listener on 127.0.0.1:port routing alpha.example.com, with a unix admin socket; database in /srv/mc-proxy. */
function serverToml(port: number, backendPort: number, srv = "/srv/mc-proxy"): string {
  return `[database]
path = "${srv}/data/mc-proxy.db"

${listenerToml(port, { "alpha.example.com": backendPort })}
[grpc]
addr = "unix:${srv}/data/admin.sock"

[log]
format = "json"
`;
}

describe("root filesystem from scripts/rootfs.sh (chroot, uid 65532)", () => {
  test("holds exactly the binary, its loader-resolved libraries, passwd/group and /srv/mc-proxy; version, check and a routed TLS request as mc-proxy", async () => {
    const fs = buildRootfs();
    if (fs === null) {
      console.warn("SKIP: rootfs chroot test needs root (chroot, mount)");
      return;
    }
    const cert = testCert();
    const alpha = tlsBackend("alpha", cert);
    const port = freePort();
    try {
      const files = run(["find", fs.root, "-path", join(fs.root, "proc"), "-prune", "-o", "-type", "f", "-print"])
        .out.trim()
        .split("\n")
        .map((f) => f.slice(fs.root.length))
        .sort();
      const ldd = run(["ldd", ensureBinary()]).out;
      const libs = (ldd.match(/\/\S+/g) ?? []).sort();
      expect(files).toEqual(["/etc/group", "/etc/passwd", "/usr/local/bin/mc-proxy", ...libs].sort());
      expect(readFileSync(join(fs.root, "etc/passwd"), "utf8")).toContain("mc-proxy:x:65532:65532:");
      const srv = join(fs.root, "srv/mc-proxy");
      expect(statSync(srv).uid).toBe(65532);

      mkdirSync(join(srv, "data"));
      writeFileSync(join(srv, "mc-proxy.toml"), serverToml(port, alpha.port));
      chownSync(join(srv, "data"), 65532, 65532);
      const v = run(fs.argv("version"));
      expect(v.out).toStartWith(`mc-proxy ${VERSION} `);
      expect(run(fs.argv("check", "-c", "/srv/mc-proxy/mc-proxy.toml")).code).toBe(0);
      const p = Bun.spawn(fs.argv("server", "-c", "/srv/mc-proxy/mc-proxy.toml"), { stdout: "pipe", stderr: "pipe" });
      const log = follow(p);
      try {
        await waitFor(() => log.text.includes('"started"') || p.exitCode !== null, 15_000, "started");
        expect(log.text).toContain('"started"');
        // The server runs as the unprivileged user, not root.
        const uid = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${p.pid}/status`, "utf8"))![1];
        expect(uid).toBe("65532");
        const r = await tlsGet(port, "alpha.example.com", cert);
        expect(bodyOf(r)).toBe("hello from alpha\n");
        expect(statSync(join(srv, "data/mc-proxy.db")).uid).toBe(65532);
      } finally {
        p.kill("SIGTERM");
        expect(await p.exited).toBe(0);
      }
    } finally {
      alpha.stop();
      fs.cleanup();
    }
  }, 60_000);
});

describe("Containerfile and Containerfile.release", () => {
  test("share the same final stage (only the COPY sources differ)", () => {
    const finalStage = (f: string) =>
      readFileSync(join(ROOT, f), "utf8")
        .split("# --- final stage")[1]!
        .split("\n")
        .slice(1)
        .map((l) =>
          l.replace("--from=build ", "").replace(/^(COPY (?:--chown=\S+ )?)(?:dist\/rootfs|\/rootfs)/, "$1ROOTFS"),
        )
        .join("\n");
    expect(finalStage("Containerfile.release")).toBe(finalStage("Containerfile"));
    expect(readFileSync(join(ROOT, "Containerfile"), "utf8")).toContain("COPY proto ./proto");
  });
});

describe("scratch image with podman (runc)", () => {
  const P = ["podman", "--storage-driver", "vfs"];
  const tag = `localhost/mc-proxy-test:${process.pid}`;
  let skip: string | null = null;
  let alpha: TlsBackend;
  const cert = testCert();

  beforeAll(() => {
    skip = isRoot ? ensureCommands(["podman", "runc"], ["podman", "runc"]) : "needs root";
    alpha = tlsBackend("alpha", cert);
  });
  afterAll(() => {
    alpha?.stop();
    if (skip === null) run([...P, "rmi", "-f", tag]);
  });

  test("built FROM scratch, run with a read-only config and a data volume: routes TLS as uid 65532, exec status answers, stop drains and exits 0", async () => {
    if (skip !== null) {
      console.warn(`SKIP: podman image test: ${skip}`);
      return;
    }
    // The image's root filesystem is the script's output, made here from the binary under test.
    const rootfs = join(ROOT, "dist/rootfs");
    run(["rm", "-rf", rootfs]);
    const made = run(["sh", "scripts/rootfs.sh", rootfs, ensureBinary()]);
    expect(made.code).toBe(0);
    const build = run([
      ...P,
      "build",
      "--runtime",
      "runc",
      "-f",
      "Containerfile.release",
      "--build-arg",
      `VERSION=${VERSION}`,
      "-t",
      tag,
      ".",
    ]);
    expect(build.err + build.out).toContain("COMMIT");
    expect(build.code).toBe(0);
    const labels = JSON.parse(run([...P, "image", "inspect", tag, "--format", "{{json .Config}}"]).out) as {
      User: string;
      Labels: Record<string, string>;
      StopSignal: string;
      Entrypoint: string[];
    };
    expect(labels.User).toBe("65532:65532");
    expect(labels.Labels["org.opencontainers.image.version"]).toBe(VERSION);
    expect(labels.StopSignal).toBe("SIGTERM");
    expect(labels.Entrypoint).toEqual(["/usr/local/bin/mc-proxy"]);

    const dir = tempDir();
    const port = freePort();
    writeFileSync(join(dir, "mc-proxy.toml"), serverToml(port, alpha.port));
    mkdirSync(join(dir, "data"));
    chownSync(join(dir, "data"), 65532, 65532);
    const name = `mcp-test-${process.pid}`;
    const started = run([
      ...P,
      "run",
      "-d",
      "--runtime",
      "runc",
      "--name",
      name,
      "--network",
      "host",
      "--ulimit",
      "nofile=20000:20000",
      "--ulimit",
      "nproc=32768:32768",
      "-v",
      `${join(dir, "mc-proxy.toml")}:/srv/mc-proxy/mc-proxy.toml:ro`,
      "-v",
      `${join(dir, "data")}:/srv/mc-proxy/data`,
      tag,
    ]);
    expect(started.code).toBe(0);
    try {
      await waitFor(() => run([...P, "logs", name]).err.includes('"started"'), 15_000, "container started");
      const pid = run([...P, "inspect", "--format", "{{.State.Pid}}", name]).out.trim();
      expect(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]).toBe("65532");
      const r = await tlsGet(port, "alpha.example.com", cert);
      expect(bodyOf(r)).toBe("hello from alpha\n");
      const st = run([...P, "exec", name, "/usr/local/bin/mc-proxy", "status", "-c", "/srv/mc-proxy/mc-proxy.toml"]);
      expect(st.code).toBe(0);
      expect(st.out).toContain(`mc-proxy ${VERSION}`);
      expect(st.out).toContain("1 total");
      expect(run([...P, "stop", "-t", "20", name]).code).toBe(0);
      expect(run([...P, "inspect", "--format", "{{.State.ExitCode}}", name]).out.trim()).toBe("0");
      const logs = run([...P, "logs", name])
        .err.split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(logs.find((l) => l.msg === "access")).toMatchObject({ sni: "alpha.example.com", outcome: "ok" });
      expect(logs.some((l) => l.msg === "shutting down")).toBe(true);
      expect(statSync(join(dir, "data/mc-proxy.db")).uid).toBe(65532);
    } finally {
      run([...P, "rm", "-f", name]);
    }
  }, 120_000);
});

describe("systemd units", () => {
  const units = ["mc-proxy.service", "mc-proxy-backup.service", "mc-proxy-backup.timer"];

  test("systemd-analyze verify is silent and the services score OK or better in systemd-analyze security", () => {
    const why = ensureCommands(["systemd-analyze"], ["systemd"]);
    if (why !== null) {
      console.warn(`SKIP: systemd units test: ${why}`);
      return;
    }
    // A root holding the binary at its ExecStart path, kill for ExecReload, and the system's unit files.
    const root = tempDir("mcproxy-systemd-");
    mkdirSync(join(root, "usr/local/bin"), { recursive: true });
    mkdirSync(join(root, "bin"), { recursive: true });
    mkdirSync(join(root, "etc/systemd/system"), { recursive: true });
    mkdirSync(join(root, "usr/lib/systemd"), { recursive: true });
    run(["cp", ensureBinary(), join(root, "usr/local/bin/mc-proxy")]);
    run(["cp", "/bin/kill", join(root, "bin/kill")]);
    run(["cp", "-r", "/usr/lib/systemd/system", join(root, "usr/lib/systemd/")]);
    for (const u of units) run(["cp", join(ROOT, "examples/systemd", u), join(root, "etc/systemd/system", u)]);
    // verify exits 0 even on an unknown key or a bad value: it must print nothing.
    const v = run(["systemd-analyze", "verify", `--root=${root}`, ...units.map((u) => `/etc/systemd/system/${u}`)]);
    expect(v.err + v.out).toBe("");
    expect(v.code).toBe(0);
    for (const u of ["mc-proxy.service", "mc-proxy-backup.service"]) {
      const s = run([
        "systemd-analyze",
        "security",
        "--offline=yes",
        `--root=${root}`,
        "--threshold=25",
        `/etc/systemd/system/${u}`,
      ]);
      expect({ unit: u, code: s.code }).toEqual({ unit: u, code: 0 });
      const score = Number(/Overall exposure level for \S+: ([\d.]+)/.exec(s.out)![1]);
      // mc-proxy.service scored 1.6 before takeovers (Type=exec); NotifyAccess=all costs 0.2, PrivateMounts=yes wins it back.
      expect(score).toBeLessThanOrEqual(u === "mc-proxy.service" ? 1.6 : 2.5);
    }
    // A mutation check of the check: an unknown key must make it speak.
    writeFileSync(
      join(root, "etc/systemd/system/mc-proxy.service"),
      readFileSync(join(ROOT, "examples/systemd/mc-proxy.service"), "utf8").replace(
        "[Service]",
        "[Service]\nNoSuchKey=1",
      ),
    );
    expect(run(["systemd-analyze", "verify", `--root=${root}`, "/etc/systemd/system/mc-proxy.service"]).err).toContain(
      "NoSuchKey",
    );
    const svc = readFileSync(join(ROOT, "examples/systemd/mc-proxy.service"), "utf8");
    expect(svc).toContain("ExecStart=/usr/local/bin/mc-proxy server -c /srv/mc-proxy/mc-proxy.toml");
    // systemctl reload is a takeover, and systemd follows the new main process (sd_notify MAINPID through systemd-notify).
    expect(svc).toContain("ExecReload=/usr/local/bin/mc-proxy reload -c /srv/mc-proxy/mc-proxy.toml");
    expect(svc).toMatch(/^Type=notify$/m);
    expect(svc).toMatch(/^NotifyAccess=all$/m);
    expect(svc).not.toMatch(/^MemoryDenyWriteExecute=yes/m);
    expect(readFileSync(join(ROOT, "examples/systemd/mc-proxy-backup.service"), "utf8")).toContain(
      "snapshot -c /srv/mc-proxy/mc-proxy.toml --keep 7",
    );
  }, 60_000);
});

describe("release binaries (bun run release)", () => {
  const dir = join(ROOT, "dist/release");
  const name = (suffix: string) => join(dir, `mc-proxy-${VERSION}-${suffix}`);

  beforeAll(() => {
    const r = run([process.execPath, "run", "release"]);
    if (r.code !== 0) throw new Error(`bun run release failed:\n${r.err}`);
  }, 300_000);

  test("x64, arm64 and x64-musl, each with a checksum sha256sum accepts", () => {
    for (const s of ["linux-x64", "linux-arm64", "linux-x64-musl"]) {
      expect(existsSync(name(s))).toBe(true);
      const c = run(["sha256sum", "-c", `${name(s)}.sha256`], { cwd: dir });
      expect(c.out).toContain(": OK");
    }
    // ELF e_machine (bytes 18-19, little-endian): 62 = x86-64, 183 = AArch64.
    const machine = (f: string) => readFileSync(f).readUInt16LE(18);
    expect(machine(name("linux-x64"))).toBe(62);
    expect(machine(name("linux-arm64"))).toBe(183);
    expect(machine(name("linux-x64-musl"))).toBe(62);
    expect(run(["readelf", "-l", name("linux-x64-musl")]).out).toContain("ld-musl-x86_64.so.1");
    expect(readdirSync(dir).length).toBe(6);
  });

  test("the x64 release binary passes the end-to-end routing suite", () => {
    const env = { ...cleanEnv(), MC_PROXY_TEST_BINARY: name("linux-x64"), MC_PROXY_TEST_MODES: "binary" };
    const r = run([process.execPath, "test", "tests/e2e/routing.test.ts"], { env });
    const passed = Number(/^\s+(\d+) pass$/m.exec(r.err)?.[1] ?? 0);
    expect(/^\s+(\d+) fail$/m.exec(r.err)?.[1]).toBe("0");
    expect(passed).toBeGreaterThanOrEqual(10);
    expect(r.code).toBe(0);
  }, 120_000);

  test("the arm64 release binary under qemu-user: version, check, and a routed TLS request", async () => {
    const why = ensureCommands(
      ["qemu-aarch64-static", "/usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1"],
      ["qemu-user-static", "libc6-arm64-cross"],
    );
    if (why !== null) {
      console.warn(`SKIP: arm64 smoke test: ${why}`);
      return;
    }
    const qemu = ["qemu-aarch64-static", "-L", "/usr/aarch64-linux-gnu", name("linux-arm64")];
    expect(run([...qemu, "version"]).out).toStartWith(`mc-proxy ${VERSION} `);
    expect(run([...qemu, "check", "-c", join(ROOT, "examples/mc-proxy.toml")]).code).toBe(0);
    const cert = testCert();
    const alpha = tlsBackend("alpha", cert);
    const dir = tempDir();
    const port = freePort();
    writeFileSync(join(dir, "mc-proxy.toml"), serverToml(port, alpha.port, dir));
    mkdirSync(join(dir, "data"));
    const p = Bun.spawn([...qemu, "server", "-c", join(dir, "mc-proxy.toml")], {
      stdout: "pipe",
      stderr: "pipe",
      env: cleanEnv(),
    });
    const log = follow(p);
    try {
      await waitFor(() => log.text.includes('"started"') || p.exitCode !== null, 60_000, "arm64 server started");
      const r = await tlsGet(port, "alpha.example.com", cert);
      expect(bodyOf(r)).toBe("hello from alpha\n");
    } finally {
      p.kill("SIGTERM");
      await p.exited;
      alpha.stop();
    }
  }, 120_000);
});
