// Fleet mode with the route features that read more of the hello (the
// compiled binary, a real etcd): a prefix as release 0.2.0 wrote it keeps
// working, ALPN routes and per-route policy written over the admin API land
// under the documented keys (docs/FLEET.md "Layout"), and a hand-written
// key that would share a (hostname, protocol) with another is refused by key.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Etcd3 } from "etcd3";
import { join } from "node:path";
import { AdminClient } from "../../src/cli/admin_client";
import { unixGrpcConfig } from "../helpers/admin";
import { named } from "../helpers/backends";
import { EtcdCluster, etcdMissing, v1RouteValue } from "../helpers/etcd";
import { helloFor } from "../helpers/hello_builder";
import { freePort, rawExchange, waitFor } from "../helpers/net";
import { startProxy, tempDir } from "../helpers/proxy";
import { fleetToml } from "../helpers/toml";

const answer = async (port: number, sni: string, alpn: string[] = [], localAddress?: string) => {
  const r = await rawExchange(port, helloFor(sni, alpn), { timeoutMs: 300, localAddress });
  return r.end === "reset" ? "reset" : r.received.toString();
};

describe("fleet: ALPN routes and route policy in etcd (binary)", () => {
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

  test("a 0.2.0 prefix keeps routing; new routes use four-part keys and version 2 values; a clashing key is refused", async () => {
    if (skip !== null) {
      console.warn(`SKIP fleet ALPN test: ${skip}`);
      return;
    }
    const prefix = `/mc-alpn-${Date.now()}/`;
    const [app, pool2, acme, xmpp] = ["app", "pool", "acme", "xmpp"].map((n) => named(n));
    // Exactly what release 0.2.0 writes when it seeds a fleet (etcd_layout.ts at 61fe203).
    const v1 = (port: number, over: Record<string, unknown> = {}) => v1RouteValue(`127.0.0.1:${port}`, over);
    await client.put(`${prefix}schema`).value("1");
    await client
      .put(`${prefix}seeded`)
      .value(JSON.stringify({ version: 1, by: "release-0.2.0", at: "2026-12-05T00:00:00.000Z" }));
    await client.put(`${prefix}listeners/public`).value(JSON.stringify({ version: 1, max_connections: 0 }));
    await client.put(`${prefix}routes/public/app.example.com`).value(v1(app!.port));
    await client.put(`${prefix}routes/public/pool.example.com`).value(
      v1(pool2!.port, {
        balance: "least_connections",
        health_check: "off",
        check: { intervalMs: 2000 },
        retries: 1,
        connect_timeout_ms: 1500,
      }),
    );
    const port = freePort();
    const dir = tempDir();
    const proxy = await startProxy("binary", fleetToml(etcd.endpoints, prefix, port), { dir });
    const admin = new AdminClient(unixGrpcConfig(join(dir, "admin.sock")));
    try {
      expect(await answer(port, "app.example.com")).toBe("app");
      expect(await answer(port, "pool.example.com")).toBe("pool");
      await admin.call("AddRoute", {
        listener: "public",
        route: { hostname: "app.example.com", backend: `127.0.0.1:${acme!.port}`, alpn: ["acme-tls/1"] },
      });
      await admin.call("AddRoute", {
        listener: "public",
        route: {
          hostname: "app.example.com",
          backend: `127.0.0.1:${xmpp!.port}`,
          alpn: ["xmpp-client"],
          allow: ["127.0.0.1"],
          max_connections: 5,
        },
      });
      expect(await answer(port, "app.example.com", ["acme-tls/1"])).toBe("acme");
      expect(await answer(port, "app.example.com", ["h2"])).toBe("app");
      expect(await answer(port, "app.example.com", ["xmpp-client"])).toBe("xmpp");
      expect(await answer(port, "app.example.com", ["xmpp-client"], "127.0.0.2")).toBe("reset");
      const acmeKey = await client.get(`${prefix}routes/public/app.example.com/acme-tls%2F1`).string();
      expect(JSON.parse(acmeKey!)).toMatchObject({ version: 1 });
      const xmppKey = await client.get(`${prefix}routes/public/app.example.com/xmpp-client`).string();
      expect(JSON.parse(xmppKey!)).toMatchObject({ version: 2, allow: ["127.0.0.1/32"], max_connections: 5 });
      // The plain route's key is as 0.2.0 wrote it: an older member still reads it.
      expect(JSON.parse((await client.get(`${prefix}routes/public/app.example.com`).string())!)).toMatchObject({
        version: 1,
      });
      // A key put by hand that claims acme-tls/1 again: refused by key, the first route stands.
      await client.put(`${prefix}routes/public/app.example.com/acme-tls%2F1%2Ch2`).value(v1(xmpp!.port));
      await waitFor(
        () =>
          proxy
            .records()
            .some((r) => r.msg === "etcd: invalid value ignored" && String(r.key).endsWith("acme-tls%2F1%2Ch2")),
        5000,
        "the clash logged",
      );
      expect(await answer(port, "app.example.com", ["acme-tls/1"])).toBe("acme");
      expect(await answer(port, "app.example.com", ["h2"])).toBe("app");
      // Removing the ALPN route over the API deletes its key only.
      await admin.call("RemoveRoute", { listener: "public", hostname: "app.example.com", alpn: ["acme-tls/1"] });
      expect(await client.get(`${prefix}routes/public/app.example.com/acme-tls%2F1`).string()).toBeNull();
      expect(await answer(port, "app.example.com", ["acme-tls/1"])).toBe("app");
    } finally {
      admin.close();
      await proxy.stop();
      for (const b of [app, pool2, acme, xmpp]) b!.stop();
    }
  }, 60_000);
});
