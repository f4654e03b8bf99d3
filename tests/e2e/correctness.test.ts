// Defects a review of workers, pools and the admin plane found, end to end
// against the compiled binary (two workers): a retry never hands client
// data to a second backend; least_connections breaks ties by round robin; a
// change made while a replacement worker starts reaches it; a dead worker's
// backend connections leave the counts; the audit line is written at any
// log level and names every backend and the identity that granted the call.
import { describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import { writeFileSync } from "node:fs";
import { createConnection } from "node:net";
import { join } from "node:path";
import { AdminClient } from "../../src/cli/admin_client";
import { adminToml, grpcConfig, unixGrpcConfig } from "../helpers/admin";
import { adminPki } from "../helpers/certs";
import { concat, helloFor } from "../helpers/hello_builder";
import { firstReply, freePort, rawExchange, sleep, waitFor } from "../helpers/net";
import { startProxy, tempDir } from "../helpers/proxy";
import { closer, named } from "../helpers/backends";
import { poolToml } from "../helpers/toml";

const hello = helloFor("app.example.com");

/** Send the hello, then `later` after `ms`; how the connection ended. */
function helloThenLater(port: number, later: Uint8Array, ms: number): Promise<{ end: string }> {
  return new Promise((resolve) => {
    const s = createConnection({ host: "127.0.0.1", port });
    const t = setTimeout(() => done("timeout"), 3000);
    const done = (end: string) => {
      clearTimeout(t);
      s.destroy();
      resolve({ end });
    };
    s.on("connect", () => {
      s.write(hello);
      setTimeout(() => s.writable && s.write(later), ms);
    });
    s.on("error", (e: NodeJS.ErrnoException) => done(e.code === "ECONNRESET" ? "reset" : "eof"));
    s.on("close", () => setTimeout(() => done("eof"), 50));
  });
}

/** Connect, send the hello, return the backend that answered ("" when none did). */
const who = (port: number) => firstReply(port, hello);

/** The shared pool config: `ports` as the pool's backends, checks off, two workers. */
function poolConfig(port: number, ports: number[], extra = ""): string {
  return `${poolToml(port, `  backends = [${ports.map((p) => `"127.0.0.1:${p}"`).join(", ")}]\n  health_check = "off"\n${extra}`)}\n[proxy]\nworkers = 2\n`;
}

describe("correctness (binary, two workers)", () => {
  test("a retry never hands client data to a second backend: hello + data → one backend, client reset (backend_closed); hello alone is still retried", async () => {
    const backends = [closer(), closer(), closer()];
    const port = freePort();
    const proxy = await startProxy(
      "binary",
      poolConfig(
        port,
        backends.map((b) => b.port),
      ),
    );
    try {
      const secret = Buffer.from("GET /pay?amount=100 HTTP/1.1\r\n\r\n");
      // In the same write as the hello (as TLS 1.3 early data travels), and 30 ms later (during the connect or the relay).
      const r1 = await rawExchange(port, concat(hello, secret), { timeoutMs: 2000 });
      const r2 = await helloThenLater(port, secret, 30);
      await sleep(300);
      const holders = backends.filter((b) => b.received().includes(secret));
      const copies = backends.reduce((n, b) => n + b.received().toString("latin1").split(secret.toString("latin1")).length - 1, 0);
      expect(r1.end).toBe("reset");
      // Each request reached exactly one backend: 2 sends, 2 copies in all (never 3 or 6).
      expect(copies).toBeLessThanOrEqual(2);
      expect(holders.length).toBeGreaterThanOrEqual(1);
      await waitFor(() => proxy.access().length >= 2, 3000, "two access records");
      const first = proxy.access()[0]!;
      expect(first).toMatchObject({ outcome: "backend_closed", tries: 1 });
      expect(r2.end === "reset" || r2.end === "eof").toBe(true);

      // Hello only: every backend gets a try.
      const before = backends.map((b) => b.received().length);
      await rawExchange(port, hello, { timeoutMs: 2000 });
      await waitFor(() => proxy.access().length >= 3, 3000, "third access record");
      expect(proxy.access()[2]!.tries).toBe(3);
      expect(backends.filter((b, i) => b.received().length > before[i]!).length).toBe(3);
    } finally {
      await proxy.stop();
      for (const b of backends) b.stop();
    }
  }, 30_000);

  test("least_connections: 150 sequential connections over 3 equal backends → each gets 30-40 %", async () => {
    const bs = [named("a"), named("b"), named("c")];
    const port = freePort();
    const proxy = await startProxy(
      "binary",
      poolConfig(
        port,
        bs.map((b) => b.port),
        `  balance = "least_connections"\n`,
      ),
    );
    try {
      const got: string[] = [];
      for (let i = 0; i < 150; i++) got.push(await who(port));
      for (const name of ["a", "b", "c"]) {
        const share = got.filter((g) => g === name).length / 150;
        expect(share).toBeGreaterThanOrEqual(0.3);
        expect(share).toBeLessThanOrEqual(0.4);
      }
    } finally {
      await proxy.stop();
      for (const b of bs) b.stop();
    }
  }, 30_000);

  test("a RemoveRoute issued while a replacement worker starts is in force on every worker afterwards (3 crashes, 16 listeners each)", async () => {
    const LISTENERS = 16;
    const backend = named("ok");
    const dir = tempDir();
    const ports = Array.from({ length: LISTENERS }, () => freePort());
    let toml = "";
    for (const p of ports) toml += `[[listeners]]\naddr = "127.0.0.1:${p}"\n  [[listeners.routes]]\n  hostname = "app.example.com"\n  backend = "127.0.0.1:${backend.port}"\n`;
    toml += `[grpc]\naddr = "unix:admin.sock"\n\n[proxy]\nworkers = 2\n`;
    const crashFile = join(dir, "crash-worker");
    const proxy = await startProxy("binary", toml, { dir, env: { MC_PROXY_TEST_WORKER_CRASH: crashFile } });
    const admin = new AdminClient(unixGrpcConfig(join(dir, "admin.sock")));
    try {
      for (let round = 0; round < 3; round++) {
        if (round > 0) for (const p of ports) await admin.call("AddRoute", { listener: `127.0.0.1:${p}`, route: { hostname: "app.example.com", backend: `127.0.0.1:${backend.port}` } });
        const replaced = proxy.records().filter((r) => r.msg === "worker replaced").length;
        writeFileSync(crashFile, String(round % 2));
        proxy.signal("SIGUSR2");
        // One RemoveRoute per listener, staggered across the death, the respawn (200 ms later) and the new worker's start.
        for (const p of ports) {
          await admin.call("RemoveRoute", { listener: `127.0.0.1:${p}`, hostname: "app.example.com" });
          await sleep(15);
        }
        await waitFor(() => proxy.records().filter((r) => r.msg === "worker replaced").length === replaced + 1, 5000, "the replacement");
        // Every listener, on both workers, has no route.
        for (const p of ports) {
          const rs = await Promise.all(Array.from({ length: 24 }, () => rawExchange(p, hello, { timeoutMs: 500 })));
          expect(rs.filter((r) => r.received.toString() === "ok").length).toBe(0);
        }
      }
      const workersSeen = new Set(
        proxy
          .access()
          .filter((r) => r.outcome === "no_route")
          .map((r) => r.worker),
      );
      expect(workersSeen.size).toBe(2);
    } finally {
      admin.close();
      await proxy.stop();
      backend.stop();
    }
  }, 60_000);

  test("after a worker dies with open pool connections, the summed active_connections equal the connections really open within 1 s", async () => {
    const bs = [named("a"), named("b")];
    const dir = tempDir();
    const port = freePort();
    const crashFile = join(dir, "crash-worker");
    const proxy = await startProxy(
      "binary",
      poolConfig(
        port,
        bs.map((b) => b.port),
      ),
      { dir, env: { MC_PROXY_TEST_WORKER_CRASH: crashFile } },
    );
    const admin = new AdminClient(unixGrpcConfig(join(dir, "admin.sock")));
    const held: Socket<undefined>[] = [];
    const active = async () => {
      const r = await admin.call<{ listeners: { routes: { backends: { active_connections: number }[] }[] }[] }>("ListRoutes", {});
      return r.listeners[0]!.routes[0]!.backends.reduce((n, b) => n + b.active_connections, 0);
    };
    try {
      for (let i = 0; i < 30; i++) {
        const s = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } });
        s.write(hello);
        held.push(s);
      }
      await waitFor(() => bs[0]!.open + bs[1]!.open === 30, 5000, "30 open at the backends");
      expect(await active()).toBe(30);
      const status = await admin.call<{ workers: { id: number; active: number }[] }>("GetStatus");
      const victim = status.workers.find((w) => w.active > 0)!;
      expect(victim.active).toBeGreaterThan(0);
      writeFileSync(crashFile, String(victim.id));
      proxy.signal("SIGUSR2");
      await waitFor(() => proxy.records().some((r) => r.msg === "worker died; its connections are lost"), 5000, "the death");
      const died = performance.now();
      // The dead worker's sockets are gone: the backends see them close.
      await waitFor(() => bs[0]!.open + bs[1]!.open === 30 - victim.active, 5000, "the dead worker's connections closed");
      let last = -1;
      while (performance.now() - died < 1000) {
        last = await active();
        if (last === bs[0]!.open + bs[1]!.open) break;
        await sleep(50);
      }
      expect(last).toBe(bs[0]!.open + bs[1]!.open);
      expect(proxy.records().find((r) => r.msg === "worker died; its connections are lost")).toMatchObject({ backend_connections: victim.active });
    } finally {
      for (const s of held) s.terminate();
      admin.close();
      await proxy.stop();
      for (const b of bs) b.stop();
    }
  }, 30_000);

  test('audit at [log] level = "warn": a pool AddRoute writes one line naming all its backends and the identity that matched admin_clients (a DNS SAN)', async () => {
    const pki = adminPki();
    const grpcPort = freePort();
    const port = freePort();
    const proxy = await startProxy("binary", adminToml(pki, grpcPort, port, {}, `admin_clients = ["deployer"]\n\n[log]\nlevel = "warn"\nformat = "json"\n`), { readyPort: grpcPort });
    // CN "ci-runner", DNS SAN "deployer": the SAN is what admin_clients lists.
    const deployer = new AdminClient({ ...grpcConfig(pki, grpcPort), clientCert: pki.deployerCert, clientKey: pki.deployerKey });
    try {
      const backends = ["127.0.0.1:9001", "127.0.0.1:9002", "[::1]:9003"];
      await deployer.call("AddRoute", { listener: `127.0.0.1:${port}`, route: { hostname: "pool.example.com", backends: backends.map((addr, i) => ({ addr, weight: i + 1 })) } });
      await waitFor(() => proxy.records().some((r) => r.msg === "admin"), 3000, "the audit line");
      const lines = proxy.records().filter((r) => r.msg === "admin");
      expect(lines.length).toBe(1);
      expect(lines[0]).toMatchObject({ method: "AddRoute", code: "OK", identity: "deployer", "route.hostname": "pool.example.com" });
      for (const [i, addr] of backends.entries()) expect(lines[0]![`route.backends[${i}].addr`]).toBe(addr);
      expect(lines[0]!["route.backends[2].weight"]).toBe(3);
      // level = "warn" still holds for everything else.
      expect(proxy.records().some((r) => r.level === "info" && r.msg !== "admin")).toBe(false);
    } finally {
      deployer.close();
      await proxy.stop();
    }
  }, 30_000);
});

test("Health.Watch: an open stream hears NOT_SERVING and is ended when the server stops", async () => {
  const grpc = await import("@grpc/grpc-js");
  const { healthDefinition } = await import("../../src/admin/protos");
  const backend = named("ok");
  const dir = tempDir();
  const port = freePort();
  const proxy = await startProxy("binary", poolConfig(port, [backend.port]), { dir });
  const Health = grpc.makeClientConstructor(healthDefinition()["grpc.health.v1.Health"] as never, "Health");
  const client = new Health(`unix:${join(dir, "admin.sock")}`, grpc.credentials.createInsecure()) as unknown as { Watch(req: object): import("node:stream").Readable; close(): void };
  try {
    const statuses: string[] = [];
    let ended = false;
    const stream = client.Watch({ service: "" });
    stream.on("data", (m: { status: string }) => statuses.push(m.status));
    stream.on("end", () => void (ended = true));
    stream.on("error", () => void (ended = true));
    await waitFor(() => statuses.length === 1, 3000, "the first status");
    expect(statuses).toEqual(["SERVING"]);
    proxy.signal("SIGTERM");
    await waitFor(() => ended, 3000, "the stream to end");
    expect(statuses).toEqual(["SERVING", "NOT_SERVING"]);
    expect(await proxy.exited).toBe(0);
  } finally {
    client.close();
    await proxy.stop();
    backend.stop();
  }
}, 30_000);
