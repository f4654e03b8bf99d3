// The compiled binary on a minimal root filesystem: only the binary, the
// shared libraries ldd names, a config, and /proc (Bun's standalone
// executable reads itself through /proc/self/exe). No source tree, no
// node_modules, no Bun. Needs root (chroot, mount); skipped with a message
// where that is not possible.
import { expect, test } from "bun:test";
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { testCert } from "../helpers/certs";
import { freePort, waitFor } from "../helpers/net";
import { ensureBinary, listenerToml, tempDir } from "../helpers/proxy";
import { bodyOf, tlsBackend, tlsGet } from "../helpers/tls";

function buildRootfs(): string | null {
  if (process.getuid?.() !== 0) return null;
  const bin = ensureBinary();
  const root = tempDir("mcproxy-rootfs-");
  for (const d of ["bin", "etc", "proc", "tmp"]) mkdirSync(join(root, d), { recursive: true });
  copyFileSync(bin, join(root, "bin/mc-proxy"));
  const ldd = Bun.spawnSync(["ldd", bin]).stdout.toString();
  for (const lib of ldd.match(/\/\S+/g) ?? []) {
    mkdirSync(join(root, dirname(lib)), { recursive: true });
    copyFileSync(lib, join(root, lib));
  }
  const m = Bun.spawnSync(["mount", "-t", "proc", "proc", join(root, "proc")]);
  if (m.exitCode !== 0) return null;
  return root;
}

test("the binary runs alone on a minimal root filesystem and routes a TLS request", async () => {
  const root = buildRootfs();
  if (root === null) {
    console.warn("SKIP: minimal rootfs check needs root with chroot and mount");
    return;
  }
  const cert = testCert();
  const alpha = tlsBackend("alpha", cert);
  const port = freePort();
  try {
    writeFileSync(
      join(root, "etc/mc-proxy.toml"),
      `${listenerToml(port, { "alpha.example.com": alpha.port })}
[log]
format = "json"
`,
    );
    const v = Bun.spawnSync(["chroot", root, "/bin/mc-proxy", "version"]);
    expect(v.stdout.toString()).toStartWith("mc-proxy ");
    const c = Bun.spawnSync(["chroot", root, "/bin/mc-proxy", "check", "-c", "/etc/mc-proxy.toml"]);
    expect(c.exitCode).toBe(0);
    const p = Bun.spawn(["chroot", root, "/bin/mc-proxy", "server", "-c", "/etc/mc-proxy.toml"], { stdout: "pipe", stderr: "pipe" });
    let log = "";
    void (async () => {
      for await (const chunk of p.stderr) log += new TextDecoder().decode(chunk);
    })();
    await waitFor(() => log.includes('"listening"'), 10_000, "listening");
    const r = await tlsGet(port, "alpha.example.com", cert);
    expect(bodyOf(r)).toBe("hello from alpha\n");
    p.kill("SIGTERM");
    expect(await p.exited).toBe(0);
  } finally {
    alpha.stop();
    Bun.spawnSync(["umount", join(root, "proc")]);
  }
});
