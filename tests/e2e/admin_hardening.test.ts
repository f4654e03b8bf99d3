// The admin plane on an operator's worst day, against the compiled
// binary: a database locked by another process must not stall traffic;
// oversized values are refused as INVALID_ARGUMENT with a short message;
// roles (admin_clients) and the audit line; the unix socket stays the
// owner's; a damaged database is refused naming the file, untouched.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import type { Socket } from "bun";
import { chmodSync, closeSync, openSync, statSync, writeSync } from "node:fs";
import { join } from "node:path";
import { AdminCallError, AdminClient } from "../../src/cli/admin_client";
import * as grpc from "@grpc/grpc-js";
import { healthDefinition } from "../../src/admin/protos";
import { adminToml, callError, grpcConfig, type Routes, unixGrpcConfig } from "../helpers/admin";
import { adminPki } from "../helpers/certs";
import { helloFor } from "../helpers/hello_builder";
import { freePort, percentile, sleep, waitFor } from "../helpers/net";
import { cleanEnv, command, listenerToml, type RunningProxy, startProxy, tempDir } from "../helpers/proxy";

/** A plain TCP echo backend. */
function echoBackend() {
  const l = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    allowHalfOpen: true,
    socket: { data: (s, d) => void s.write(d), end: (s) => void s.end() },
  });
  return { port: l.port, stop: () => l.stop(true) };
}

/** Connect through the proxy, send a hello, wait for its echo: milliseconds, or Infinity on failure. */
async function newConnectionLatency(port: number, hello: Uint8Array): Promise<number> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    let got = 0;
    const timer = setTimeout(() => resolve(Number.POSITIVE_INFINITY), 2000);
    Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        open: (s) => void s.write(hello),
        data: (s, d) => {
          got += d.length;
          if (got >= hello.length) {
            clearTimeout(timer);
            resolve(performance.now() - t0);
            s.end();
          }
        },
        close: () => {
          clearTimeout(timer);
          resolve(got >= hello.length ? performance.now() - t0 : Number.POSITIVE_INFINITY);
        },
      },
    }).catch(() => resolve(Number.POSITIVE_INFINITY));
  });
}

describe("admin plane hardening (binary)", () => {
  const pki = adminPki();
  let proxy: RunningProxy;
  let admin: AdminClient;
  let dir = "";
  let port = 0;
  let grpcPort = 0;
  let listener = "";
  let backend: ReturnType<typeof echoBackend>;

  beforeAll(async () => {
    backend = echoBackend();
    dir = tempDir();
    port = freePort();
    grpcPort = freePort();
    listener = `127.0.0.1:${port}`;
    proxy = await startProxy(
      "binary",
      adminToml(
        pki,
        grpcPort,
        port,
        { "echo.example.com": backend.port },
        `admin_clients = ["ops-admin", "deployer", "client"]\n`,
      ),
      { dir },
    );
    admin = new AdminClient(grpcConfig(pki, grpcPort));
  });
  afterAll(async () => {
    admin?.close();
    await proxy?.stop();
    backend?.stop();
  });

  const state = async () => ({
    routes: await admin.call<Routes>("ListRoutes", { listener: "" }),
    rules: await admin.call("GetFirewallRules"),
    listeners: (await admin.call<{ listeners: unknown[] }>("GetStatus")).listeners,
  });

  test("a database locked by another process for 10 s: traffic never waits, the RPC fails cleanly, then succeeds, memory equals the database", async () => {
    const hello = helloFor("echo.example.com");
    // An established relay to ping through the whole time.
    const rtts: number[] = [];
    let pong: (() => void) | null = null;
    const relay: Socket<undefined> = await Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: { data: () => pong?.() },
    });
    relay.write(hello);
    await sleep(200);
    // The lock: another process holds SQLite's write lock (what `BEGIN IMMEDIATE;` in an operator's sqlite3 shell does).
    const locker = Bun.spawn(
      [
        process.execPath,
        "-e",
        `const { Database } = require("bun:sqlite"); const db = new Database(process.argv[1]); db.run("BEGIN IMMEDIATE"); console.log("locked"); setTimeout(() => { db.run("ROLLBACK"); console.log("released"); }, 10000);`,
        join(dir, "data/mc-proxy.db"),
      ],
      { stdout: "pipe", env: cleanEnv() },
    );
    const reader = locker.stdout.getReader();
    let out = "";
    while (!out.includes("locked")) out += new TextDecoder().decode((await reader.read()).value);
    const lockedAt = performance.now();

    const during = admin
      .call("AddRoute", { listener, route: { hostname: "during-lock.example.com", backend: "127.0.0.1:9" } })
      .then(
        () => "OK",
        (e: AdminCallError) => e,
      );
    const latencies: number[] = [];
    while (performance.now() - lockedAt < 9500) {
      const t0 = performance.now();
      await new Promise<void>((r) => {
        pong = r;
        relay.write("ping");
      });
      rtts.push(performance.now() - t0);
      if (rtts.length % 5 === 0) latencies.push(await newConnectionLatency(port, hello));
      await sleep(10);
    }
    const result = await during;
    // The lock outlives the retry window: UNAVAILABLE, saying why, and the server's own answer (not "cannot reach").
    expect(result).toBeInstanceOf(AdminCallError);
    const err = result as AdminCallError;
    expect(err.code).toBe("UNAVAILABLE");
    expect(err.details).toContain("locked");
    expect(err.details).not.toContain("cannot reach");
    expect(rtts.length).toBeGreaterThan(200);
    expect(latencies.length).toBeGreaterThan(40);
    expect(percentile(rtts, 0.99)).toBeLessThan(50);
    expect(percentile(latencies, 0.99)).toBeLessThan(50);
    // Samples are sequential, so one long stall is one sample: bound the worst
    // as well (a 5 s busy_timeout inside the loop shows up here as ~5000 ms).
    expect(Math.max(...rtts)).toBeLessThan(250);
    expect(Math.max(...latencies)).toBeLessThan(250);
    expect(latencies.every(Number.isFinite)).toBe(true);

    // Issued while locked, it succeeds once the lock is gone.
    const later = admin.call("AddRoute", {
      listener,
      route: { hostname: "after-lock.example.com", backend: "127.0.0.1:9" },
    });
    await locker.exited;
    await later;
    relay.end();
    const mem = (await admin.call<Routes>("ListRoutes", { listener })).listeners[0]!.routes;
    const db = new Database(join(dir, "data/mc-proxy.db"), { readonly: true });
    const rows = db
      .query(
        "SELECT hostname, value ->> '$.backends[0].addr' AS backend, 'SEND_PROXY_PROTOCOL_' || upper(value ->> '$.send_proxy_protocol') AS send_proxy_protocol FROM routes ORDER BY hostname",
      )
      .all();
    db.close();
    expect(
      mem.map(({ hostname, backend, send_proxy_protocol }) => ({ hostname, backend, send_proxy_protocol })),
    ).toEqual(rows as never);
    expect(mem.map((r) => r.hostname)).toEqual(["after-lock.example.com", "echo.example.com"]);
    await admin.call("RemoveRoute", { listener, hostname: "after-lock.example.com" });
  }, 40_000);

  test("1 MB and 5 MB values in every string field of every RPC: INVALID_ARGUMENT, a message under 1 KB, nothing changed", async () => {
    const before = await state();
    const health = grpc.loadPackageDefinition(healthDefinition()) as unknown as {
      grpc: {
        health: {
          v1: {
            Health: new (
              t: string,
              c: grpc.ChannelCredentials,
              o: object,
            ) => grpc.Client & { Check: (...args: unknown[]) => unknown };
          };
        };
      };
    };
    const { readFileSync } = await import("node:fs");
    const creds = grpc.credentials.createSsl(
      readFileSync(pki.ca),
      readFileSync(pki.clientKey),
      readFileSync(pki.clientCert),
    );
    const hc = new health.grpc.health.v1.Health(`127.0.0.1:${grpcPort}`, creds, {
      "grpc.ssl_target_name_override": "localhost",
    });
    try {
      for (const size of [1_000_000, 5_000_000]) {
        const big = "a".repeat(size);
        const rule = (value: string) => ({ rule: { type: "FIREWALL_RULE_TYPE_IP", value } });
        const cases: [string, object][] = [
          ["ListRoutes", { listener: big }],
          ["AddRoute", { listener: big, route: { hostname: "x.example.com", backend: "127.0.0.1:1" } }],
          ["AddRoute", { listener, route: { hostname: big, backend: "127.0.0.1:1" } }],
          ["AddRoute", { listener, route: { hostname: "x.example.com", backend: big } }],
          ["RemoveRoute", { listener: big, hostname: "echo.example.com" }],
          ["RemoveRoute", { listener, hostname: big }],
          ["AddFirewallRule", rule(big)],
          ["RemoveFirewallRule", rule(big)],
          ["SetListenerMaxConnections", { listener: big, max_connections: 1 }],
        ];
        for (const [rpc, req] of cases) {
          const e = await callError(admin.call(rpc, req));
          expect({ rpc, size, code: e.code }).toEqual({ rpc, size, code: "INVALID_ARGUMENT" });
          expect(e.details.length).toBeLessThan(1024);
          expect(e.details).toContain(`(${size} bytes)`);
        }
        const he = await new Promise<grpc.ServiceError>((resolve) =>
          hc.Check({ service: big }, (err: grpc.ServiceError) => resolve(err)),
        );
        expect(he.code).toBe(grpc.status.INVALID_ARGUMENT);
        expect(he.details.length).toBeLessThan(1024);
      }
    } finally {
      hc.close();
    }
    expect(await state()).toEqual(before);
  }, 60_000);

  test("admin_clients: a read-only certificate can read but not change, PERMISSION_DENIED names it; admins by CN or DNS SAN can; one audit line per mutation", async () => {
    const as = (cert: string, key: string) =>
      new AdminClient({ ...grpcConfig(pki, grpcPort), clientCert: cert, clientKey: key });
    const viewer = as(pki.viewerCert, pki.viewerKey);
    const ops = as(pki.opsAdminCert, pki.opsAdminKey);
    const deployer = as(pki.deployerCert, pki.deployerKey);
    try {
      const before = await state();
      expect((await viewer.call<Routes>("ListRoutes", { listener })).listeners[0]!.routes.length).toBe(1);
      await viewer.call("GetStatus");
      const denied = await callError(
        viewer.call("AddRoute", { listener, route: { hostname: "viewer.example.com", backend: "127.0.0.1:9" } }),
      );
      expect(denied.code).toBe("PERMISSION_DENIED");
      expect(denied.details).toContain('"viewer"');
      expect(
        (
          await callError(
            viewer.call("AddFirewallRule", { rule: { type: "FIREWALL_RULE_TYPE_IP", value: "192.0.2.9" } }),
          )
        ).code,
      ).toBe("PERMISSION_DENIED");
      expect(await state()).toEqual(before);

      await ops.call("AddRoute", { listener, route: { hostname: "ops.example.com", backend: "127.0.0.1:9" } });
      await deployer.call("RemoveRoute", { listener, hostname: "ops.example.com" });
      await waitFor(
        () => proxy.records().filter((r) => r.msg === "admin" && r.identity === "deployer").length === 1,
        3000,
        "audit line",
      );
      const audit = proxy.records().filter((r) => r.msg === "admin");
      expect(audit.find((r) => r.identity === "viewer" && r.method === "AddRoute")).toMatchObject({
        code: "PERMISSION_DENIED",
        listener,
        "route.hostname": "viewer.example.com",
      });
      expect(audit.find((r) => r.identity === "ops-admin")).toMatchObject({
        method: "AddRoute",
        code: "OK",
        "route.hostname": "ops.example.com",
        "route.backend": "127.0.0.1:9",
      });
      // The identity is the name that granted the call: the deployer certificate's CN is
      // "ci-runner", but its DNS SAN "deployer" is what admin_clients lists.
      expect(audit.find((r) => r.identity === "deployer")).toMatchObject({
        method: "RemoveRoute",
        code: "OK",
        hostname: "ops.example.com",
      });
      // Reads are not audited.
      expect(audit.some((r) => r.method === "ListRoutes" || r.method === "GetStatus")).toBe(false);
    } finally {
      viewer.close();
      ops.close();
      deployer.close();
    }
  });
});

describe("admin API defaults (binary)", () => {
  const pki = adminPki();
  const run = (args: string[]) => {
    const r = Bun.spawnSync([...command("binary"), ...args], { env: cleanEnv(), stdout: "pipe", stderr: "pipe" });
    return { code: r.exitCode, out: r.stdout.toString(), err: r.stderr.toString() };
  };

  test("a TCP admin address without client_ca fails check, naming the fix; allow_unauthenticated_admin passes, warns at start and shows in GetStatus", async () => {
    const dir = tempDir();
    const f = join(dir, "c.toml");
    const base = `${listenerToml(freePort(), {})}\n[grpc]\naddr = "0.0.0.0:9090"\ntls_cert = "${pki.serverCert}"\ntls_key = "${pki.serverKey}"\n`;
    await Bun.write(f, base);
    const r = run(["check", "-c", f]);
    expect(r.code).toBe(1);
    expect(r.err).toContain("grpc.client_ca: required for a TCP admin address");
    expect(r.err).toContain("unix:");
    expect(r.err).toContain("allow_unauthenticated_admin");

    const grpcPort = freePort();
    const open = `${listenerToml(freePort(), {})}\n[grpc]\naddr = "127.0.0.1:${grpcPort}"\ntls_cert = "${pki.serverCert}"\ntls_key = "${pki.serverKey}"\nallow_unauthenticated_admin = true\n`;
    await Bun.write(f, open);
    expect(run(["check", "-c", f]).code).toBe(0);
    const proxy = await startProxy("binary", open, { dir: tempDir() });
    try {
      expect(
        proxy.records().find((x) => x.level === "warn" && String(x.msg).includes("accepts ANY TLS client")),
      ).toBeDefined();
      const c = new AdminClient({ ...grpcConfig(pki, grpcPort), clientCa: null, clientCert: null, clientKey: null });
      const s = await c.call<{ unauthenticated_admin: boolean }>("GetStatus");
      c.close();
      expect(s.unauthenticated_admin).toBe(true);
    } finally {
      await proxy.stop();
    }
  });

  test("the unix socket stays 0600 and its owner may mutate; the audit identity is unix", async () => {
    const dir = tempDir();
    const proxy = await startProxy("binary", `${listenerToml(freePort(), {})}\n[grpc]\naddr = "unix:admin.sock"\n`, {
      dir,
    });
    try {
      const sock = join(dir, "admin.sock");
      expect(statSync(sock).mode & 0o777).toBe(0o600);
      const c = new AdminClient(unixGrpcConfig(sock));
      const l = (await c.call<{ listeners: { addr: string }[] }>("GetStatus")).listeners[0]!.addr;
      await c.call("AddRoute", { listener: l, route: { hostname: "u.example.com", backend: "127.0.0.1:9" } });
      c.close();
      await waitFor(() => proxy.records().some((r) => r.msg === "admin"), 3000, "audit line");
      expect(proxy.records().find((r) => r.msg === "admin")).toMatchObject({
        method: "AddRoute",
        identity: "unix",
        code: "OK",
      });
    } finally {
      await proxy.stop();
    }
  });
});

describe("a damaged database (binary)", () => {
  test("refused at start naming the file and the restore procedure; the file's mode is not touched", async () => {
    const dir = tempDir();
    const toml = listenerToml(
      freePort(),
      Object.fromEntries(Array.from({ length: 2000 }, (_, i) => [`h${i}.example.com`, 1000 + (i % 100)])),
    );
    const proxy = await startProxy("binary", toml, { dir });
    proxy.signal("SIGTERM");
    expect(await proxy.exited).toBe(0);
    const db = join(dir, "mc-proxy.db");
    chmodSync(db, 0o644);
    // Overwrite one page in the middle of the routes table with garbage.
    const fd = openSync(db, "r+");
    writeSync(fd, Buffer.alloc(4096, 0x5a), 0, 4096, 4096 * 10);
    closeSync(fd);
    const r = Bun.spawnSync([...command("binary"), "server", "-c", join(dir, "mc-proxy.toml")], {
      env: cleanEnv(),
      stdout: "pipe",
      stderr: "pipe",
      cwd: dir,
    });
    expect(r.exitCode).toBe(1);
    const err = r.stderr.toString();
    expect(err).toContain(db);
    expect(err).toContain("integrity check");
    expect(err).toContain("Backups and restore");
    expect(statSync(db).mode & 0o777).toBe(0o644);
  });
});
