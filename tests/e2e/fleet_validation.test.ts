// Fleet mode and bad data (the compiled binary, a real etcd): every value
// read from etcd passes the config's rules — a malformed value put by hand
// is skipped and logged by key, never applied, never copied into the
// last-known-good file, and never stops a member, running or restarting
// (etcd up, or down with only the copy). And switching a populated SQLite
// store to an empty etcd prefix loses nothing.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Etcd3 } from "etcd3";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { AdminClient } from "../../src/cli/admin_client";
import { unixGrpcConfig } from "../helpers/admin";
import { EtcdCluster, etcdMissing, v1RouteValue } from "../helpers/etcd";
import { helloFor } from "../helpers/hello_builder";
import { freePort, rawExchange, sleep, waitFor } from "../helpers/net";
import { type RunningProxy, startProxy, tempDir } from "../helpers/proxy";
import { named } from "../helpers/backends";
import { fleetToml } from "../helpers/toml";

async function answer(port: number, sni: string): Promise<string> {
  return (await rawExchange(port, helloFor(sni), { timeoutMs: 300 })).received.toString();
}

function toml(endpoints: string[], prefix: string, port: number, workers: number, backendPort: number): string {
  const routes = `  [[listeners.routes]]\n  hostname = "good.example.com"\n  backend = "127.0.0.1:${backendPort}"\n`;
  return fleetToml(endpoints, prefix, port, {
    routes,
    workers,
    extra: `\n[metrics]\naddr = "127.0.0.1:${freePort()}"\n`,
  });
}

/** Until `f` answers `want` (each try a real connection), within `ms`. */
async function until(f: () => Promise<string>, want: string, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  let got = "";
  while ((got = await f()) !== want) {
    if (Date.now() > end)
      throw new Error(`timed out after ${ms} ms waiting for ${what} (last answer ${JSON.stringify(got)})`);
    await sleep(50);
  }
}

const routeJson = (backendPort: number, over: Record<string, unknown> = {}) =>
  v1RouteValue(`127.0.0.1:${backendPort}`, over);

describe("fleet: malformed etcd values (binary)", () => {
  let skip: string | null = null;
  let etcd: EtcdCluster;
  let client: Etcd3;

  beforeAll(async () => {
    skip = etcdMissing();
    if (skip !== null) return;
    etcd = new EtcdCluster(1);
    await etcd.startAll();
    client = new Etcd3({ hosts: etcd.endpoints });
  }, 30_000);
  afterAll(async () => {
    client?.close();
    await etcd?.stopAll();
  });

  for (const workers of [1, 2]) {
    test(`workers = ${workers}: each malformed class put into a running fleet is skipped and logged by key; routing and good keys go on; restarts work with etcd up and down`, async () => {
      if (skip !== null) return void console.warn(`SKIP: fleet validation: ${skip}`);
      const prefix = `/mcp/bad${workers}/`;
      const be = named("good");
      const other = named("other");
      const dir = tempDir();
      const port = freePort();
      let proxy: RunningProxy = await startProxy("binary", toml(etcd.endpoints, prefix, port, workers, be.port), {
        dir,
      });
      try {
        expect(await answer(port, "good.example.com")).toBe("good");
        const bad: [string, string][] = [
          [`${prefix}rules/ip/zz%3Azz`, '{"version":1}'],
          [
            `${prefix}routes/public/w0.example.com`,
            routeJson(other.port, { backends: [{ addr: `127.0.0.1:${other.port}`, weight: 0, backup: false }] }),
          ],
          [`${prefix}routes/public/random.example.com`, routeJson(other.port, { balance: "random" })],
          [`${prefix}routes/public/empty.example.com`, routeJson(other.port, { backends: [] })],
          [`${prefix}routes/public/string.example.com`, routeJson(other.port, { backends: `127.0.0.1:${other.port}` })],
          [
            `${prefix}routes/public/forty.example.com`,
            routeJson(other.port, {
              backends: Array.from({ length: 40 }, (_, i) => ({
                addr: `127.0.0.1:${20000 + i}`,
                weight: 1,
                backup: false,
              })),
            }),
          ],
          [`${prefix}routes/public/notjson.example.com`, "{this is not json"],
          [`${prefix}listeners/public`, '{"version":1,"max_connections":4294967301}'],
        ];
        // One at a time, then all in one transaction (one watch batch).
        for (const [k, v] of bad.slice(0, 4)) await client.put(k).value(v);
        const txn = await client
          .if(`${prefix}schema`, "Create", ">", 0)
          .then(...bad.slice(4).map(([k, v]) => client.put(k).value(v)))
          .commit();
        expect(txn.succeeded).toBe(true);
        await sleep(300);
        expect(proxy.proc.exitCode).toBeNull();
        expect(await answer(port, "good.example.com")).toBe("good");
        // A good key after them applies within 1 s.
        await client.put(`${prefix}routes/public/later.example.com`).value(routeJson(other.port));
        const t0 = performance.now();
        let got = "";
        while (performance.now() - t0 < 1000 && got !== "other") got = await answer(port, "later.example.com");
        expect(got).toBe("other");
        // Each bad key logged by name, once; none applied.
        const logged = proxy.records().filter((r) => r.msg === "etcd: invalid value ignored");
        for (const [k] of bad) expect([k, logged.filter((r) => r.key === k).length]).toEqual([k, 1]);
        for (const h of ["w0", "random", "empty", "string", "forty", "notjson"])
          expect((await rawExchange(port, helloFor(`${h}.example.com`), { timeoutMs: 300 })).end).toBe("reset");
        // The listener's limit stayed (0): connections are not refused.
        expect(await answer(port, "good.example.com")).toBe("good");
        // Counted in the metrics.
        const admin = new AdminClient(unixGrpcConfig(join(dir, "admin.sock")));
        const status = await admin.call<{ listeners: { max_connections: number }[] }>("GetStatus");
        admin.close();
        expect(status.listeners[0]!.max_connections).toBe(0);

        // Restart with the bad keys present, etcd up.
        await sleep(1200); // the last-known-good copy is written within a second
        await proxy.stop();
        proxy = await startProxy("binary", toml(etcd.endpoints, prefix, port, workers, be.port), { dir });
        expect(await answer(port, "good.example.com")).toBe("good");
        expect(await answer(port, "later.example.com")).toBe("other");
        expect(proxy.records().filter((r) => r.msg === "etcd: invalid value ignored").length).toBe(bad.length);

        // Restart with etcd down: from the last-known-good copy (which never held a bad value).
        await sleep(1200);
        await proxy.stop();
        await etcd.stopAll();
        try {
          proxy = await startProxy("binary", toml(etcd.endpoints, prefix, port, workers, be.port), { dir });
          expect(await answer(port, "good.example.com")).toBe("good");
          expect(await answer(port, "later.example.com")).toBe("other");
        } finally {
          await etcd.startAll();
        }
        await client.delete().prefix(prefix);
      } finally {
        await proxy.stop();
        be.stop();
        other.stop();
      }
    }, 90_000);
  }

  test("one canonical key per route: another spelling of a key and a five-part key are logged as invalid and never served; deleting the other spelling leaves the route", async () => {
    if (skip !== null) return void console.warn(`SKIP: fleet validation: ${skip}`);
    const prefix = "/mcp/keys/";
    const be = named("good");
    const canon = named("canon");
    const alias = named("alias");
    const dir = tempDir();
    const port = freePort();
    const xmpp = async (sni: string) => {
      const r = await rawExchange(port, helloFor(sni, ["xmpp-client"]), { timeoutMs: 300 });
      return r.end === "reset" ? "reset" : r.received.toString();
    };
    const canonical = `${prefix}routes/public/app.example.com/xmpp-client%2Cxmpp-server`;
    const bad = [
      `${prefix}routes/public/app.example.com/xmpp-client,xmpp-server`,
      `${prefix}routes/public/alias%2Eexample.com`,
      `${prefix}routes/public/five.example.com/xmpp-client/x`,
    ];
    const refused = (p: RunningProxy) => p.records().filter((r) => r.msg === "etcd: invalid value ignored");
    let proxy: RunningProxy = await startProxy("binary", toml(etcd.endpoints, prefix, port, 2, be.port), { dir });
    try {
      await client.put(canonical).value(routeJson(canon.port));
      await until(() => xmpp("app.example.com"), "canon", 5000, "the canonical key served");
      for (const k of bad) await client.put(k).value(routeJson(alias.port));
      await waitFor(
        () => bad.every((k) => refused(proxy).some((r) => r.key === k)),
        5000,
        "each other spelling logged by key",
      );
      expect(refused(proxy).find((r) => r.key === bad[0])!.reason).toContain("xmpp-client%2Cxmpp-server");
      expect(refused(proxy).find((r) => r.key === bad[2])!.reason).toContain("routes/{listener}/{hostname}");
      expect(await xmpp("app.example.com")).toBe("canon");
      expect(await answer(port, "alias.example.com")).not.toBe("alias");
      expect(await xmpp("five.example.com")).not.toBe("alias");
      // Deleting the other spelling changes nothing: the route is the canonical key's.
      await client.delete().key(bad[0]!);
      await client.put(`${prefix}routes/public/later.example.com`).value(routeJson(alias.port));
      await until(() => answer(port, "later.example.com"), "alias", 5000, "a later key applied");
      expect(await xmpp("app.example.com")).toBe("canon");

      // A start reading the prefix at once refuses the same keys, once each.
      await proxy.stop();
      proxy = await startProxy("binary", toml(etcd.endpoints, prefix, port, 2, be.port), { dir });
      expect(await xmpp("app.example.com")).toBe("canon");
      expect(await answer(port, "alias.example.com")).not.toBe("alias");
      expect(
        refused(proxy)
          .map((r) => r.key)
          .sort(),
      ).toEqual(bad.slice(1).sort());
      await client.delete().prefix(prefix);
    } finally {
      await proxy.stop();
      be.stop();
      canon.stop();
      alias.stop();
    }
  }, 60_000);

  test("a populated SQLite store switched to an empty etcd prefix loses nothing: its API-made routes and rules seed the fleet, and a copy of the file is kept", async () => {
    if (skip !== null) return void console.warn(`SKIP: fleet validation: ${skip}`);
    const be = named("toml");
    const api = named("api");
    const dir = tempDir();
    const port = freePort();
    const sqliteToml = `[database]\npath = "cache.db"\n\n[[listeners]]\naddr = "127.0.0.1:${port}"\nname = "public"\n  [[listeners.routes]]\n  hostname = "good.example.com"\n  backend = "127.0.0.1:${be.port}"\n\n[grpc]\naddr = "unix:admin.sock"\n`;
    let proxy = await startProxy("binary", sqliteToml, { dir });
    let admin = new AdminClient(unixGrpcConfig(join(dir, "admin.sock")));
    try {
      await admin.call("AddRoute", {
        listener: "public",
        route: { hostname: "api.example.com", backend: `127.0.0.1:${api.port}` },
      });
      await admin.call("RemoveRoute", { listener: "public", hostname: "good.example.com" });
      await admin.call("AddFirewallRule", { rule: { type: "FIREWALL_RULE_TYPE_IP", value: "192.0.2.77" } });
      await admin.call("SetListenerMaxConnections", { listener: "public", max_connections: 777 });
      admin.close();
      await proxy.stop();

      const prefix = "/mcp/switched/";
      proxy = await startProxy("binary", toml(etcd.endpoints, prefix, port, 2, be.port), { dir });
      admin = new AdminClient(unixGrpcConfig(join(dir, "admin.sock")));
      const routes = await admin.call<{ listeners: { routes: { hostname: string }[] }[] }>("ListRoutes", {
        listener: "public",
      });
      expect(routes.listeners[0]!.routes.map((r) => r.hostname)).toEqual(["api.example.com"]);
      expect((await admin.call<{ rules: { value: string }[] }>("GetFirewallRules")).rules.map((r) => r.value)).toEqual([
        "192.0.2.77",
      ]);
      expect(
        (await admin.call<{ listeners: { max_connections: number }[] }>("GetStatus")).listeners[0]!.max_connections,
      ).toBe(777);
      expect(await answer(port, "api.example.com")).toBe("api");
      // In the fleet itself, not only in this member's memory.
      const keys = (await client.getAll().prefix(prefix).keys()).sort();
      expect(keys).toContain(`${prefix}routes/public/api.example.com`);
      expect(keys).toContain(`${prefix}rules/ip/192.0.2.77`);
      const copies = readdirSync(dir).filter((f) => f.startsWith("cache.db.sqlite-"));
      expect(copies.length).toBe(1);
      expect(existsSync(join(dir, copies[0]!))).toBe(true);
      expect(proxy.records().some((r) => r.msg.startsWith("etcd: the database was a SQLite store"))).toBe(true);

      // A second start (now the fleet's copy) makes no new copy and reseeds nothing.
      admin.close();
      await proxy.stop();
      proxy = await startProxy("binary", toml(etcd.endpoints, prefix, port, 2, be.port), { dir });
      admin = new AdminClient(unixGrpcConfig(join(dir, "admin.sock")));
      expect(readdirSync(dir).filter((f) => f.startsWith("cache.db.sqlite-")).length).toBe(1);
      expect(await answer(port, "api.example.com")).toBe("api");
    } finally {
      admin.close();
      await proxy.stop();
      be.stop();
      api.stop();
    }
  }, 60_000);
});
