// The admin plane end to end, against the compiled binary: every RPC over
// mTLS with a grpc-js client, routing and firewall changes taking effect with
// no restart, persistence across restarts, a failing database write, the
// validation table, and concurrency with live traffic.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import type { Socket } from "bun";
import { statSync } from "node:fs";
import { join } from "node:path";
import { AdminCallError, AdminClient } from "../../src/cli/admin_client";
import { adminToml, callError, grpcConfig, type Routes } from "../helpers/admin";
import { adminPki, testCert } from "../helpers/certs";
import { helloFor } from "../helpers/hello_builder";
import { freePort, rawExchange, sleep, tcpServer, waitFor } from "../helpers/net";
import { type RunningProxy, startProxy, tempDir } from "../helpers/proxy";
import { bodyOf, type TlsBackend, tlsBackend, tlsGet } from "../helpers/tls";

describe("admin API (binary)", () => {
  const cert = testCert();
  const pki = adminPki();
  let alpha: TlsBackend, beta: TlsBackend;
  let proxy: RunningProxy;
  let client: AdminClient;
  let dir = "";
  let port = 0;
  let grpcPort = 0;
  let listener = "";

  const start = async () => {
    proxy = await startProxy(
      "binary",
      adminToml(pki, grpcPort, port, { "alpha.example.com": alpha.port, "seeded.example.com": alpha.port }),
      { dir },
    );
    client = new AdminClient(grpcConfig(pki, grpcPort));
  };
  const restart = async () => {
    client.close();
    proxy.signal("SIGTERM");
    expect(await proxy.exited).toBe(0);
    await start();
  };

  beforeAll(async () => {
    alpha = tlsBackend("alpha", cert);
    beta = tlsBackend("beta", cert);
    dir = tempDir();
    port = freePort();
    grpcPort = freePort();
    listener = `127.0.0.1:${port}`;
    await start();
  });

  afterAll(async () => {
    client?.close();
    await proxy?.stop();
    alpha?.stop();
    beta?.stop();
  });

  test("GetStatus and ListRoutes round-trip", async () => {
    const s = await client.call<{
      version: string;
      listeners: { addr: string; route_count: number; max_connections: number }[];
      uptime_seconds: number;
    }>("GetStatus");
    expect(s.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(s.listeners).toEqual([expect.objectContaining({ addr: listener, route_count: 2, max_connections: 0 })]);
    const r = await client.call<Routes>("ListRoutes", { listener });
    expect(r.listeners[0]!.routes.map((x) => x.hostname)).toEqual(["alpha.example.com", "seeded.example.com"]);
  });

  test("AddRoute: a TLS client with the new SNI reaches the new backend with no restart; RemoveRoute: it is reset", async () => {
    expect((await tlsGet(port, "new.example.com", cert)).error).toBe("ECONNRESET");
    const added = await client.call<{
      route: { hostname: string; backend: string; send_proxy_protocol: string };
      replaced: boolean;
    }>("AddRoute", {
      listener,
      route: { hostname: "New.Example.com.", backend: `127.0.0.1:${beta.port}` },
    });
    expect(added).toMatchObject({
      route: {
        hostname: "new.example.com",
        backend: `127.0.0.1:${beta.port}`,
        send_proxy_protocol: "SEND_PROXY_PROTOCOL_OFF",
      },
      replaced: false,
    });
    expect(bodyOf(await tlsGet(port, "new.example.com", cert))).toBe("hello from beta\n");
    // Upsert: the same hostname replaces the backend.
    const again = await client.call<{ replaced: boolean }>("AddRoute", {
      listener,
      route: { hostname: "new.example.com", backend: `127.0.0.1:${alpha.port}` },
    });
    expect(again.replaced).toBe(true);
    expect(bodyOf(await tlsGet(port, "new.example.com", cert))).toBe("hello from alpha\n");
    await client.call("RemoveRoute", { listener, hostname: "new.example.com" });
    expect((await tlsGet(port, "new.example.com", cert)).error).toBe("ECONNRESET");
  });

  test("RemoveRoute leaves an established connection alone", async () => {
    // A plain TCP backend that keeps what it is sent: the hello here is synthetic.
    const silent = tcpServer();
    await client.call("AddRoute", {
      listener,
      route: { hostname: "held.example.com", backend: `127.0.0.1:${silent.port}` },
    });
    const s = await Bun.connect<{ closed: boolean }>({
      hostname: "127.0.0.1",
      port,
      data: { closed: false },
      socket: { data() {}, close: (sock) => void (sock.data.closed = true) },
    });
    s.write(helloFor("held.example.com"));
    await waitFor(() => silent.connections === 1, 5000, "backend connection");
    await client.call("RemoveRoute", { listener, hostname: "held.example.com" });
    await sleep(200);
    expect(s.data.closed).toBe(false);
    expect(s.write("still here")).toBe(10);
    s.end();
    silent.stop();
  });

  test("AddFirewallRule blocks 127.0.0.3 at once while 127.0.0.1 still works; RemoveFirewallRule restores it", async () => {
    expect(bodyOf(await tlsGet(port, "alpha.example.com", cert, { localAddress: "127.0.0.3" }))).toBe(
      "hello from alpha\n",
    );
    const r = await client.call<{ rule: { type: string; value: string }; added: boolean }>("AddFirewallRule", {
      rule: { type: "FIREWALL_RULE_TYPE_IP", value: "127.0.0.3" },
    });
    expect(r).toEqual({ rule: { type: "FIREWALL_RULE_TYPE_IP", value: "127.0.0.3" }, added: true });
    expect((await rawExchange(port, null, { localAddress: "127.0.0.3" })).end).toBe("reset");
    expect(bodyOf(await tlsGet(port, "alpha.example.com", cert))).toBe("hello from alpha\n");
    const rules = await client.call<{ rules: { type: string; value: string }[] }>("GetFirewallRules");
    expect(rules.rules).toContainEqual({ type: "FIREWALL_RULE_TYPE_IP", value: "127.0.0.3" });
    await client.call("AddFirewallRule", { rule: { type: "FIREWALL_RULE_TYPE_CIDR", value: "127.0.4.0/24" } });
    expect((await rawExchange(port, null, { localAddress: "127.0.4.9" })).end).toBe("reset");
    await client.call("RemoveFirewallRule", { rule: { type: "FIREWALL_RULE_TYPE_IP", value: "127.0.0.3" } });
    await client.call("RemoveFirewallRule", { rule: { type: "FIREWALL_RULE_TYPE_CIDR", value: "127.0.4.0/24" } });
    expect(bodyOf(await tlsGet(port, "alpha.example.com", cert, { localAddress: "127.0.0.3" }))).toBe(
      "hello from alpha\n",
    );
  });

  test("SetListenerMaxConnections takes effect on the next accept", async () => {
    const silent = tcpServer();
    await client.call("AddRoute", {
      listener,
      route: { hostname: "hold.example.com", backend: `127.0.0.1:${silent.port}` },
    });
    const r = await client.call<{ max_connections: number }>("SetListenerMaxConnections", {
      listener,
      max_connections: 1,
    });
    expect(r.max_connections).toBe(1);
    const held: Socket<unknown> = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } });
    held.write(helloFor("hold.example.com"));
    await waitFor(() => silent.connections === 1, 5000, "held connection at the backend");
    expect((await rawExchange(port, null)).end).toBe("reset");
    await client.call("SetListenerMaxConnections", { listener, max_connections: 0 });
    expect(bodyOf(await tlsGet(port, "alpha.example.com", cert))).toBe("hello from alpha\n");
    held.end();
    silent.stop();
    await client.call("RemoveRoute", { listener, hostname: "hold.example.com" });
    const s = await client.call<{
      listeners: { max_connections: number }[];
      outcomes: { outcome: string; count: number }[];
    }>("GetStatus");
    expect(s.listeners[0]!.max_connections).toBe(0);
    expect(s.outcomes.find((o) => o.outcome === "over_capacity")?.count).toBeGreaterThanOrEqual(1);
  });

  describe("validation: bad input is refused, names the field, and changes nothing", () => {
    const ip = "FIREWALL_RULE_TYPE_IP";
    const cases: [string, string, () => object, string, string][] = [
      [
        "AddRoute",
        "listener missing",
        () => ({ listener: "", route: { hostname: "a.example.com", backend: "h:1" } }),
        "INVALID_ARGUMENT",
        "listener",
      ],
      [
        "AddRoute",
        "unknown listener",
        () => ({ listener: "127.0.0.1:1", route: { hostname: "a.example.com", backend: "h:1" } }),
        "NOT_FOUND",
        "listener",
      ],
      ["AddRoute", "route missing", () => ({ listener }), "INVALID_ARGUMENT", "route"],
      [
        "AddRoute",
        "bad hostname",
        () => ({ listener, route: { hostname: "bad name!", backend: "h:1" } }),
        "INVALID_ARGUMENT",
        "route.hostname",
      ],
      [
        "AddRoute",
        "wildcard not leading",
        () => ({ listener, route: { hostname: "a.*.example.com", backend: "h:1" } }),
        "INVALID_ARGUMENT",
        "route.hostname",
      ],
      [
        "AddRoute",
        "backend without port",
        () => ({ listener, route: { hostname: "v.example.com", backend: "127.0.0.1" } }),
        "INVALID_ARGUMENT",
        "route.backend",
      ],
      [
        "AddRoute",
        "backend port 0",
        () => ({ listener, route: { hostname: "v.example.com", backend: "127.0.0.1:0" } }),
        "INVALID_ARGUMENT",
        "route.backend",
      ],
      [
        "AddRoute",
        "backend port 70000",
        () => ({ listener, route: { hostname: "v.example.com", backend: "127.0.0.1:70000" } }),
        "INVALID_ARGUMENT",
        "route.backend",
      ],
      ["RemoveRoute", "no such route", () => ({ listener, hostname: "nothing.example.com" }), "NOT_FOUND", "hostname"],
      [
        "AddFirewallRule",
        "type unspecified",
        () => ({ rule: { type: "FIREWALL_RULE_TYPE_UNSPECIFIED", value: "1.2.3.4" } }),
        "INVALID_ARGUMENT",
        "rule.type",
      ],
      [
        "AddFirewallRule",
        "bad IP",
        () => ({ rule: { type: ip, value: "1.2.3.256" } }),
        "INVALID_ARGUMENT",
        "rule.value",
      ],
      [
        "AddFirewallRule",
        "non-canonical CIDR",
        () => ({ rule: { type: "FIREWALL_RULE_TYPE_CIDR", value: "10.1.2.3/8" } }),
        "INVALID_ARGUMENT",
        "canonical",
      ],
      [
        "AddFirewallRule",
        "lower-case country",
        () => ({ rule: { type: "FIREWALL_RULE_TYPE_COUNTRY", value: "kp" } }),
        "INVALID_ARGUMENT",
        "rule.value",
      ],
      ["AddFirewallRule", "rule missing", () => ({}), "INVALID_ARGUMENT", "rule"],
      ["RemoveFirewallRule", "no such rule", () => ({ rule: { type: ip, value: "192.0.2.77" } }), "NOT_FOUND", "rule"],
      [
        "SetListenerMaxConnections",
        "negative",
        () => ({ listener, max_connections: -1 }),
        "INVALID_ARGUMENT",
        "max_connections",
      ],
      [
        "SetListenerMaxConnections",
        "unknown listener",
        () => ({ listener: "nope:1", max_connections: 5 }),
        "NOT_FOUND",
        "listener",
      ],
      ["ListRoutes", "unknown listener", () => ({ listener: "nope:1" }), "NOT_FOUND", "listener"],
    ];
    for (const [rpc, name, req, code, field] of cases) {
      test(`${rpc}: ${name} → ${code}`, async () => {
        const routesBefore = await client.call<Routes>("ListRoutes", { listener: "" });
        const rulesBefore = await client.call("GetFirewallRules");
        const statusBefore = await client.call<{ listeners: unknown[] }>("GetStatus");
        const e = await callError(client.call(rpc, req()));
        expect(e.code).toBe(code);
        expect(e.details).toContain(field);
        expect(await client.call<Routes>("ListRoutes", { listener: "" })).toEqual(routesBefore);
        expect(await client.call("GetFirewallRules")).toEqual(rulesBefore);
        expect((await client.call<{ listeners: unknown[] }>("GetStatus")).listeners).toEqual(statusBefore.listeners);
      });
    }
  });

  test("persistence: API changes survive a restart; a removed seeded route does not come back; the database is 0600", async () => {
    await client.call("AddRoute", {
      listener,
      route: { hostname: "persist.example.com", backend: `127.0.0.1:${beta.port}` },
    });
    await client.call("RemoveRoute", { listener, hostname: "seeded.example.com" });
    await client.call("AddFirewallRule", { rule: { type: "FIREWALL_RULE_TYPE_IP", value: "127.0.0.44" } });
    await client.call("SetListenerMaxConnections", { listener, max_connections: 50 });
    await restart();
    const r = await client.call<Routes>("ListRoutes", { listener });
    const names = r.listeners[0]!.routes.map((x) => x.hostname);
    expect(names).toContain("persist.example.com");
    expect(names).not.toContain("seeded.example.com");
    expect(bodyOf(await tlsGet(port, "persist.example.com", cert))).toBe("hello from beta\n");
    expect((await tlsGet(port, "seeded.example.com", cert)).error).toBe("ECONNRESET");
    expect((await rawExchange(port, null, { localAddress: "127.0.0.44" })).end).toBe("reset");
    const s = await client.call<{ listeners: { max_connections: number }[] }>("GetStatus");
    expect(s.listeners[0]!.max_connections).toBe(50);
    expect(statSync(join(dir, "data/mc-proxy.db")).mode & 0o777).toBe(0o600);
    await client.call("RemoveFirewallRule", { rule: { type: "FIREWALL_RULE_TYPE_IP", value: "127.0.0.44" } });
    await client.call("SetListenerMaxConnections", { listener, max_connections: 0 });
  }, 30_000);

  test("a mutation while the database is read-only fails with INTERNAL and changes neither the database nor routing", async () => {
    const db = join(dir, "data/mc-proxy.db");
    // Root ignores file modes; the immutable attribute binds root too. (Not the
    // -shm file: SQLite maps it, and a write fault there is a SIGBUS.)
    const lock = Bun.spawnSync(["chattr", "+i", db, `${db}-wal`]);
    if (lock.exitCode !== 0) {
      console.warn(`SKIP: chattr +i is not available here: ${lock.stderr}`);
      return;
    }
    try {
      const e = await callError(
        client.call("AddRoute", { listener, route: { hostname: "ro.example.com", backend: `127.0.0.1:${beta.port}` } }),
      );
      expect(e.code).toBe("INTERNAL");
      expect(e.details).toContain("database");
      // No file path or raw error to the caller: a request id that the log's record carries with the detail.
      expect(e.details).not.toContain(db);
      const id = /request_id ([0-9a-f]+-r[0-9a-z]+)/.exec(e.details)?.[1];
      expect(id).toBeDefined();
      await waitFor(
        () =>
          proxy
            .records()
            .some((r) => r.msg === "admin: handler failed" && r.request_id === id && String(r.error).includes(db)),
        3000,
        "the detail in the log",
      );
      const e2 = await callError(
        client.call("AddFirewallRule", { rule: { type: "FIREWALL_RULE_TYPE_IP", value: "127.0.0.55" } }),
      );
      expect(e2.code).toBe("INTERNAL");
      expect((await tlsGet(port, "ro.example.com", cert)).error).toBe("ECONNRESET");
      expect(bodyOf(await tlsGet(port, "alpha.example.com", cert, { localAddress: "127.0.0.55" }))).toBe(
        "hello from alpha\n",
      );
      const r = await client.call<Routes>("ListRoutes", { listener });
      expect(r.listeners[0]!.routes.map((x) => x.hostname)).not.toContain("ro.example.com");
    } finally {
      Bun.spawnSync(["chattr", "-i", db, `${db}-wal`]);
    }
    const raw = new Database(db, { readonly: true });
    expect(raw.query("SELECT count(*) AS n FROM routes WHERE hostname = 'ro.example.com'").get()).toEqual({ n: 0 });
    expect(raw.query("SELECT count(*) AS n FROM firewall_rules WHERE value = '127.0.0.55'").get()).toEqual({ n: 0 });
    raw.close();
    // And the store works again once the file is writable.
    await client.call("AddRoute", {
      listener,
      route: { hostname: "ro.example.com", backend: `127.0.0.1:${beta.port}` },
    });
    await client.call("RemoveRoute", { listener, hostname: "ro.example.com" });
  });

  test("200 AddRoute/RemoveRoute calls in parallel with traffic: no failed connection on stable routes; memory equals the database", async () => {
    const calls: Promise<unknown>[] = [];
    for (let i = 0; i < 100; i++) {
      const hostname = `churn${i % 20}.example.com`;
      calls.push(client.call("AddRoute", { listener, route: { hostname, backend: `127.0.0.1:${beta.port}` } }));
      calls.push(
        client
          .call("RemoveRoute", { listener, hostname })
          .catch((e) => (e instanceof AdminCallError && e.code === "NOT_FOUND" ? null : Promise.reject(e))),
      );
    }
    const traffic: Promise<string | null>[] = [];
    for (let i = 0; i < 40; i++) traffic.push(tlsGet(port, "alpha.example.com", cert).then(bodyOf));
    const [, bodies] = await Promise.all([Promise.all(calls), Promise.all(traffic)]);
    expect(bodies.filter((b) => b !== "hello from alpha\n")).toEqual([]);
    const mem = (await client.call<Routes>("ListRoutes", { listener })).listeners[0]!.routes;
    const raw = new Database(join(dir, "data/mc-proxy.db"), { readonly: true });
    const stored = raw
      .query(
        "SELECT r.hostname, r.value ->> '$.backends[0].addr' AS backend, 'SEND_PROXY_PROTOCOL_' || upper(r.value ->> '$.send_proxy_protocol') AS send_proxy_protocol FROM routes r JOIN listeners l ON l.id = r.listener_id WHERE l.addr = ? ORDER BY r.hostname",
      )
      .all(listener) as { hostname: string; backend: string; send_proxy_protocol: string }[];
    raw.close();
    expect(
      mem.map(({ hostname, backend, send_proxy_protocol }) => ({ hostname, backend, send_proxy_protocol })),
    ).toEqual(stored);
  }, 60_000);
});
