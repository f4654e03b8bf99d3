// A worker's death and its replacement, end to end against the compiled
// binary (two workers): a change made while the replacement starts reaches
// it; a dead worker's backend connections leave the counts.
import { describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { AdminClient } from "../../src/cli/admin_client";
import { unixGrpcConfig } from "../helpers/admin";
import { helloFor } from "../helpers/hello_builder";
import { freePort, rawExchange, sleep, waitFor } from "../helpers/net";
import { startProxy, tempDir } from "../helpers/proxy";
import { named } from "../helpers/backends";
import { poolToml } from "../helpers/toml";

const hello = helloFor("app.example.com");

/** The shared pool config: `ports` as the pool's backends, checks off, two workers. */
function poolConfig(port: number, ports: number[], extra = ""): string {
  return `${poolToml(port, `  backends = [${ports.map((p) => `"127.0.0.1:${p}"`).join(", ")}]\n  health_check = "off"\n${extra}`)}\n[proxy]\nworkers = 2\n`;
}

describe("a worker's death (binary, two workers)", () => {
  test("a RemoveRoute issued while a replacement worker starts is in force on every worker afterwards (3 crashes, 16 listeners each)", async () => {
    const LISTENERS = 16;
    const backend = named("ok");
    const dir = tempDir();
    const ports = Array.from({ length: LISTENERS }, () => freePort());
    let toml = "";
    for (const p of ports)
      toml += `[[listeners]]\naddr = "127.0.0.1:${p}"\n  [[listeners.routes]]\n  hostname = "app.example.com"\n  backend = "127.0.0.1:${backend.port}"\n`;
    toml += `[grpc]\naddr = "unix:admin.sock"\n\n[proxy]\nworkers = 2\n`;
    const crashFile = join(dir, "crash-worker");
    const proxy = await startProxy("binary", toml, { dir, env: { MC_PROXY_TEST_WORKER_CRASH: crashFile } });
    const admin = new AdminClient(unixGrpcConfig(join(dir, "admin.sock")));
    try {
      for (let round = 0; round < 3; round++) {
        if (round > 0)
          for (const p of ports)
            await admin.call("AddRoute", {
              listener: `127.0.0.1:${p}`,
              route: { hostname: "app.example.com", backend: `127.0.0.1:${backend.port}` },
            });
        const replaced = proxy.records().filter((r) => r.msg === "worker replaced").length;
        writeFileSync(crashFile, String(round % 2));
        proxy.signal("SIGUSR2");
        // One RemoveRoute per listener, staggered across the death, the respawn (200 ms later) and the new worker's start.
        for (const p of ports) {
          await admin.call("RemoveRoute", { listener: `127.0.0.1:${p}`, hostname: "app.example.com" });
          await sleep(15);
        }
        await waitFor(
          () => proxy.records().filter((r) => r.msg === "worker replaced").length === replaced + 1,
          5000,
          "the replacement",
        );
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
      const r = await admin.call<{ listeners: { routes: { backends: { active_connections: number }[] }[] }[] }>(
        "ListRoutes",
        {},
      );
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
      await waitFor(
        () => proxy.records().some((r) => r.msg === "worker died; its connections are lost"),
        5000,
        "the death",
      );
      const died = performance.now();
      // The dead worker's sockets are gone: the backends see them close.
      await waitFor(
        () => bs[0]!.open + bs[1]!.open === 30 - victim.active,
        5000,
        "the dead worker's connections closed",
      );
      let last = -1;
      while (performance.now() - died < 1000) {
        last = await active();
        if (last === bs[0]!.open + bs[1]!.open) break;
        await sleep(50);
      }
      expect(last).toBe(bs[0]!.open + bs[1]!.open);
      expect(proxy.records().find((r) => r.msg === "worker died; its connections are lost")).toMatchObject({
        backend_connections: victim.active,
      });
    } finally {
      for (const s of held) s.terminate();
      admin.close();
      await proxy.stop();
      for (const b of bs) b.stop();
    }
  }, 30_000);
});
