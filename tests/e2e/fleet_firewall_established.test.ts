// A rule added on one fleet member closes the matching connections a second
// member holds, through etcd (docs/SECURITY.md "Rules reach established
// connections"): the compiled binary, two members of two workers, a real
// etcd, node:tls clients held open through member B.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { AdminClient } from "../../src/cli/admin_client";
import { unixGrpcConfig } from "../helpers/admin";
import { testCert } from "../helpers/certs";
import { EtcdCluster, etcdMissing } from "../helpers/etcd";
import { HELD_HOST, type Held, hold, stillWorks } from "../helpers/held";
import { freePort, sleep, waitFor } from "../helpers/net";
import { type RunningProxy, startProxy, tempDir } from "../helpers/proxy";
import { tlsBackend } from "../helpers/tls";
import { fleetToml } from "../helpers/toml";

let etcd: EtcdCluster | null = null;
let skip: string | null = null;

beforeAll(async () => {
  skip = etcdMissing();
  if (skip !== null) return;
  etcd = new EtcdCluster(1);
  await etcd.startAll();
}, 30_000);
afterAll(async () => {
  await etcd?.stopAll();
});

test("an ip rule added on member A resets B's connection from that address within 1 s; B's other stays; keep_established keeps", async () => {
  if (skip !== null) return void console.warn(`SKIP fleet firewall test: ${skip}`);
  const be = tlsBackend("be", testCert());
  const routes = `  [[listeners.routes]]\n  hostname = "${HELD_HOST}"\n  backend = "127.0.0.1:${be.port}"\n`;
  const members: { proxy: RunningProxy; port: number; admin: AdminClient }[] = [];
  const held: Held[] = [];
  try {
    for (let i = 0; i < 2; i++) {
      const port = freePort();
      const dir = tempDir();
      const proxy = await startProxy("binary", fleetToml(etcd!.endpoints, "/mc-fw-est/", port, { routes }), { dir });
      members.push({ proxy, port, admin: new AdminClient(unixGrpcConfig(join(dir, "admin.sock"))) });
    }
    const [a, b] = members as [(typeof members)[0], (typeof members)[0]];
    const onB = async (from: string) => {
      const h = await hold(b.port, from);
      held.push(h);
      return h;
    };
    const blocked = [await onB("127.0.0.2"), await onB("127.0.0.2")];
    const other = await onB("127.0.0.3");
    const kept = await onB("127.0.0.4");
    await a.admin.call("AddFirewallRule", { rule: { type: "FIREWALL_RULE_TYPE_IP", value: "127.0.0.2" } });
    const added = performance.now();
    await waitFor(() => blocked.every((h) => h.end !== null), 5000, "B's resets");
    for (const h of blocked) {
      expect(h.end!.code).toBe("ECONNRESET");
      expect(h.end!.at - added).toBeLessThan(1000);
    }
    await waitFor(
      () => b.proxy.access().filter((r) => r.closed_by === "firewall" && r.outcome === "blocked_ip").length === 2,
      5000,
      "B's records",
    );
    // keep_established travels in the etcd value: B keeps its connection from 127.0.0.4, and refuses a new one.
    await a.admin.call("AddFirewallRule", {
      rule: { type: "FIREWALL_RULE_TYPE_IP", value: "127.0.0.4" },
      keep_established: true,
    });
    const t0 = Date.now();
    let refused = false;
    while (!refused && Date.now() - t0 < 5000) {
      refused = await hold(b.port, "127.0.0.4").then(
        (h) => {
          h.socket.destroy();
          return false;
        },
        () => true,
      );
      if (!refused) await sleep(50);
    }
    expect(refused).toBe(true);
    await sleep(500);
    expect(kept.end).toBeNull();
    expect(await stillWorks(kept)).toBe(true);
    expect(await stillWorks(other)).toBe(true);
  } finally {
    for (const h of held) h.socket.destroy();
    for (const m of members) {
      m.admin.close();
      await m.proxy.stop();
    }
    be.stop();
  }
}, 60_000);
