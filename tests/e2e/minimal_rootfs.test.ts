// The compiled binary on a minimal root filesystem: only the binary, the
// shared libraries ldd names, a config, and /proc (Bun's standalone
// executable reads itself through /proc/self/exe). No source tree, no
// node_modules, no Bun. Needs root (chroot, mount); skipped with a message
// where that is not possible.
import { expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { testCert } from "../helpers/certs";
import { freePort, waitFor } from "../helpers/net";
import { listenerToml } from "../helpers/proxy";
import { buildRootfs } from "../helpers/rootfs";
import { bodyOf, tlsBackend, tlsGet } from "../helpers/tls";

test("the binary runs alone on a minimal root filesystem and routes a TLS request", async () => {
  const fs = buildRootfs();
  if (fs === null) {
    console.warn("SKIP: minimal rootfs check needs root with chroot and mount");
    return;
  }
  const root = fs.root;
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
    const v = Bun.spawnSync(fs.argv("version"));
    expect(v.stdout.toString()).toStartWith("mc-proxy ");
    const c = Bun.spawnSync(fs.argv("check", "-c", "/etc/mc-proxy.toml"));
    expect(c.exitCode).toBe(0);
    const p = Bun.spawn(fs.argv("server", "-c", "/etc/mc-proxy.toml"), { stdout: "pipe", stderr: "pipe" });
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
    fs.cleanup();
  }
});
