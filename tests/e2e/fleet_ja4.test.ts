// A ja4 rule added on one fleet member blocks that client on every member
// within a second (the compiled binary, two members of two workers, a real
// etcd, curl and openssl as the clients).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { AdminClient } from "../../src/cli/admin_client";
import { unixGrpcConfig } from "../helpers/admin";
import { testCert } from "../helpers/certs";
import { EtcdCluster, etcdMissing } from "../helpers/etcd";
import { freePort, sleep, waitFor } from "../helpers/net";
import { ensureCommands } from "../helpers/packages";
import { type RunningProxy, startProxy, tempDir } from "../helpers/proxy";
import { tlsBackend } from "../helpers/tls";
import { fleetToml } from "../helpers/toml";

const HOST = "alpha.example.com";
let etcd: EtcdCluster | null = null;
let skip: string | null = null;

beforeAll(async () => {
  skip = etcdMissing() ?? ensureCommands(["curl", "openssl"], ["curl", "openssl"]);
  if (skip !== null) return;
  etcd = new EtcdCluster(1);
  await etcd.startAll();
}, 30_000);
afterAll(async () => {
  await etcd?.stopAll();
});

test("a ja4 rule added on member A resets that client on member B within a second; others go on; removed on B, A lets it in again", async () => {
  if (skip !== null) return void console.warn(`SKIP fleet ja4 test: ${skip}`);
  const be = tlsBackend("be", testCert());
  const routes = `  [[listeners.routes]]\n  hostname = "${HOST}"\n  backend = "127.0.0.1:${be.port}"\n`;
  const members: { proxy: RunningProxy; port: number; admin: AdminClient }[] = [];
  try {
    for (let i = 0; i < 2; i++) {
      const port = freePort();
      const dir = tempDir();
      const proxy = await startProxy("binary", fleetToml(etcd!.endpoints, "/mc-ja4/", port, { routes }), { dir });
      members.push({ proxy, port, admin: new AdminClient(unixGrpcConfig(join(dir, "admin.sock"))) });
    }
    const [a, b] = members as [(typeof members)[0], (typeof members)[0]];
    const curl = async (port: number) => {
      const p = Bun.spawn(
        ["curl", "-sk", "--max-time", "2", "--resolve", `${HOST}:${port}:127.0.0.1`, `https://${HOST}:${port}/`],
        { stdout: "pipe", stderr: "ignore" },
      );
      const out = await new Response(p.stdout).text();
      await p.exited;
      return out;
    };
    const openssl = async (port: number) =>
      void (await Bun.spawn(["openssl", "s_client", "-connect", `127.0.0.1:${port}`, "-servername", HOST, "-tls1_2"], {
        stdin: "ignore",
        stdout: "ignore",
        stderr: "ignore",
        timeout: 5000,
      }).exited);
    expect(await curl(b.port)).toBe("hello from be\n");
    await waitFor(() => b.proxy.access().length > 0, 5000, "curl's record");
    const fp = String(b.proxy.access()[0]!.ja4);
    const rule = { rule: { type: "FIREWALL_RULE_TYPE_JA4", value: fp } };
    await a.admin.call("AddFirewallRule", rule);
    // Member B learns it from its etcd watch.
    const t0 = Date.now();
    while ((await curl(b.port)) !== "" && Date.now() - t0 < 5000) await sleep(50);
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(await Promise.all([curl(b.port), curl(b.port), curl(a.port), curl(a.port)])).toEqual(["", "", "", ""]);
    await waitFor(
      () => b.proxy.access().some((r) => r.outcome === "blocked_ja4" && r.ja4 === fp),
      5000,
      "B's blocked_ja4 record",
    );
    // Another client (openssl, TLS 1.2) still gets through on both.
    const before = b.proxy.access().length;
    await openssl(b.port);
    await waitFor(
      () =>
        b.proxy
          .access()
          .slice(before)
          .some((r) => String(r.ja4).startsWith("t12") && r.outcome === "ok"),
      5000,
      "openssl through B",
    );
    // Removed on B, A lets curl in again.
    await b.admin.call("RemoveFirewallRule", rule);
    const t1 = Date.now();
    while ((await curl(a.port)) === "" && Date.now() - t1 < 5000) await sleep(50);
    expect(await curl(a.port)).toBe("hello from be\n");
  } finally {
    for (const m of members) {
      m.admin.close();
      await m.proxy.stop();
    }
    be.stop();
  }
}, 60_000);
