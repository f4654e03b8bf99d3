// Backend pools end to end, against the compiled binary (two
// workers, the default here): balancing shares, least_connections and
// source_hash, failover across a backend's death with zero failed
// connections, TLS-aware health checks, drain for a deploy (the RUNBOOK's
// commands), and every refusal's outcome and tries.
import { describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import { copyFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { AdminClient } from "../../src/cli/admin_client";
import { unixGrpcConfig } from "../helpers/admin";
import { testCert } from "../helpers/certs";
import { helloFor } from "../helpers/hello_builder";
import { firstReply, freePort, rawExchange, sleep, waitFor } from "../helpers/net";
import { startProxy, tempDir, runCli } from "../helpers/proxy";
import { pacedDownload, streamBackend, streamHash } from "../helpers/stream";
import { tlsBackend } from "../helpers/tls";
import { named } from "../helpers/backends";
import { poolToml } from "../helpers/toml";

const MiB = 1024 * 1024;

const hello = helloFor("app.example.com");
/** Connect, send the hello, return which backend answered ("" when the connection ended without an answer). */
const who = (port: number, localAddress?: string) => firstReply(port, hello, localAddress);

async function many(port: number, n: number, batch = 50): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i += batch)
    out.push(...(await Promise.all(Array.from({ length: Math.min(batch, n - i) }, () => who(port)))));
  return out;
}

const count = (xs: string[], v: string) => xs.filter((x) => x === v).length;

interface ListedBackend {
  addr: string;
  state: string;
  health: { up: boolean; last_check: string; consecutive_failures: number };
  active_connections: number;
}

async function listBackends(dir: string): Promise<ListedBackend[]> {
  const c = new AdminClient(unixGrpcConfig(join(dir, "admin.sock")));
  try {
    const r = await c.call<{ listeners: { routes: { hostname: string; backends: ListedBackend[] }[] }[] }>(
      "ListRoutes",
      { listener: "" },
    );
    return r.listeners[0]!.routes.find((x) => x.hostname === "app.example.com")!.backends;
  } finally {
    c.close();
  }
}

/** The CLI against the running proxy's config in `dir`. */
const cli = (dir: string, ...args: string[]) => runCli([...args, "-c", join(dir, "mc-proxy.toml")]);

describe("pools (binary)", () => {
  test("round_robin over 3 equal backends: 300 connections → 100 each (±2); weights 1:3 → 25 % / 75 % (±3 %)", async () => {
    const [a, b, c] = [named("a"), named("b"), named("c")];
    const port = freePort();
    let proxy = await startProxy(
      "binary",
      poolToml(
        port,
        `  backends = ["127.0.0.1:${a.port}", "127.0.0.1:${b.port}", "127.0.0.1:${c.port}"]\n  health_check = "off"\n`,
      ),
    );
    try {
      const got = await many(port, 300);
      for (const x of ["a", "b", "c"]) expect({ x, n: Math.abs(count(got, x) - 100) <= 2 }).toEqual({ x, n: true });
      await proxy.stop();
      proxy = await startProxy(
        "binary",
        poolToml(
          port,
          `  backends = [{ addr = "127.0.0.1:${a.port}", weight = 1 }, { addr = "127.0.0.1:${b.port}", weight = 3 }]\n  health_check = "off"\n`,
        ),
      );
      const w = await many(port, 400);
      expect(Math.abs(count(w, "a") / 400 - 0.25)).toBeLessThanOrEqual(0.03);
      expect(Math.abs(count(w, "b") / 400 - 0.75)).toBeLessThanOrEqual(0.03);
    } finally {
      await proxy.stop();
      for (const x of [a, b, c]) x.stop();
    }
  }, 60_000);

  test("least_connections: with one backend holding 20 long connections, new ones go to the others", async () => {
    const [a, b, c] = [named("a"), named("b"), named("c")];
    const dir = tempDir();
    const port = freePort();
    const proxy = await startProxy(
      "binary",
      poolToml(
        port,
        `  backends = ["127.0.0.1:${a.port}", "127.0.0.1:${b.port}", "127.0.0.1:${c.port}"]\n  balance = "least_connections"\n  health_check = "off"\n`,
      ),
      { dir },
    );
    const held: Socket<undefined>[] = [];
    try {
      // Only a takes new connections while the others drain: 20 long ones land there.
      expect(cli(dir, "backends", "drain", "app.example.com", `127.0.0.1:${b.port}`).code).toBe(0);
      expect(cli(dir, "backends", "drain", "app.example.com", `127.0.0.1:${c.port}`).code).toBe(0);
      for (let i = 0; i < 20; i++) {
        const s = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } });
        s.write(hello);
        held.push(s);
      }
      await waitFor(() => a.conns === 20, 5000, "20 on a");
      expect(cli(dir, "backends", "enable", "app.example.com", `127.0.0.1:${b.port}`).code).toBe(0);
      expect(cli(dir, "backends", "enable", "app.example.com", `127.0.0.1:${c.port}`).code).toBe(0);
      expect((await listBackends(dir)).find((x) => x.addr === `127.0.0.1:${a.port}`)!.active_connections).toBe(20);
      const got: string[] = [];
      for (let i = 0; i < 30; i++) got.push(await who(port)); // one at a time: each ends before the next
      expect(count(got, "a")).toBe(0);
      expect(count(got, "b") + count(got, "c")).toBe(30);
    } finally {
      for (const s of held) s.terminate();
      await proxy.stop();
      for (const x of [a, b, c]) x.stop();
    }
  }, 60_000);

  test("source_hash: one client reaches the same backend 50 times; different clients spread; removing a backend moves only its clients", async () => {
    const [a, b, c] = [named("a"), named("b"), named("c")];
    const dir = tempDir();
    const port = freePort();
    const proxy = await startProxy(
      "binary",
      poolToml(
        port,
        `  backends = ["127.0.0.1:${a.port}", "127.0.0.1:${b.port}", "127.0.0.1:${c.port}"]\n  balance = "source_hash"\n  health_check = "off"\n`,
      ),
      { dir },
    );
    try {
      const same = await Promise.all(Array.from({ length: 50 }, () => who(port, "127.0.0.7")));
      expect(new Set(same).size).toBe(1);
      const clients = Array.from({ length: 60 }, (_, i) => `127.0.${Math.floor(i / 200) + 2}.${(i % 200) + 10}`);
      const before = new Map<string, string>();
      for (const ip of clients) before.set(ip, await who(port, ip));
      const used = new Set(before.values());
      expect(used.size).toBe(3);
      for (const x of ["a", "b", "c"]) expect([...before.values()].filter((v) => v === x).length).toBeGreaterThan(5);
      // Take c out of the pool: only c's clients move.
      const admin = new AdminClient(unixGrpcConfig(join(dir, "admin.sock")));
      await admin.call("AddRoute", {
        listener: `127.0.0.1:${port}`,
        route: {
          hostname: "app.example.com",
          backends: [{ addr: `127.0.0.1:${a.port}` }, { addr: `127.0.0.1:${b.port}` }],
          balance: "BALANCE_SOURCE_HASH",
          health_check: "HEALTH_CHECK_OFF",
        },
      });
      admin.close();
      for (const ip of clients) {
        const now = await who(port, ip);
        if (before.get(ip) !== "c") expect({ ip, now }).toEqual({ ip, now: before.get(ip)! });
        else expect(["a", "b"]).toContain(now);
      }
    } finally {
      await proxy.stop();
      for (const x of [a, b, c]) x.stop();
    }
  }, 60_000);

  test("kill one of 3 backends: marked down within fall × interval, 500 connections across the kill see no failure (failover), back after rise × interval", async () => {
    const a = named("a");
    const b = named("b");
    let c = named("c");
    const cPort = c.port;
    const dir = tempDir();
    const port = freePort();
    const proxy = await startProxy(
      "binary",
      poolToml(
        port,
        `  backends = ["127.0.0.1:${a.port}", "127.0.0.1:${b.port}", "127.0.0.1:${cPort}"]\n  health_check = "tcp"\n  health_check_interval = "200ms"\n  health_check_timeout = "200ms"\n  health_check_rise = 2\n  health_check_fall = 2\n`,
      ),
      { dir },
    );
    try {
      const results: Promise<string[]>[] = [];
      results.push(many(port, 200, 20));
      await sleep(30);
      c.stop();
      const killedAt = Date.now();
      results.push(many(port, 300, 20));
      const all = (await Promise.all(results)).flat();
      expect(all.length).toBe(500);
      expect(all.filter((x) => x === "")).toEqual([]);
      let down = false;
      while (Date.now() - killedAt < 2000 && !down) {
        down = !(await listBackends(dir)).find((x) => x.addr === `127.0.0.1:${cPort}`)!.health.up;
        if (!down) await sleep(50);
      }
      expect(down).toBe(true);
      // Down: no new connection tries it.
      const afterDown = await many(port, 60);
      expect(count(afterDown, "c")).toBe(0);
      expect(afterDown.filter((x) => x === "")).toEqual([]);
      // Restart it: back in rotation after rise × interval (2 × 200 ms, give it a second).
      c = named("c", cPort);
      let up = false;
      const restartedAt = Date.now();
      while (Date.now() - restartedAt < 3000 && !up) {
        up = (await listBackends(dir)).find((x) => x.addr === `127.0.0.1:${cPort}`)!.health.up;
        if (!up) await sleep(50);
      }
      expect(up).toBe(true);
      const back = await many(port, 90);
      expect(count(back, "c")).toBeGreaterThan(20);
      // Down from the connect failures the workers saw, or from the checks, whichever came first.
      // (Info lines are written in batches: wait for them rather than read at once.)
      await waitFor(
        () =>
          proxy.records().some((r) => String(r.msg).startsWith("backend down") && r.backend === `127.0.0.1:${cPort}`),
        2000,
        "backend down logged",
      );
      await waitFor(
        () => proxy.records().some((r) => r.msg === "backend up" && r.backend === `127.0.0.1:${cPort}`),
        2000,
        "backend up logged",
      );
    } finally {
      await proxy.stop();
      for (const x of [a, b, c]) x.stop();
    }
  }, 60_000);

  test("a backend that accepts and resets at once costs no client anything: the hello is replayed to the next backend (tries = 2)", async () => {
    // The write of the replay can find the backend already reset, or the
    // reset can arrive after it: both must move on (the kill test above hit
    // the first about once in 12 runs before it did).
    const resetter = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: { open: (s) => void s.terminate(), data() {} },
    });
    const good = named("good");
    const dir = tempDir();
    const port = freePort();
    const addrs = [`127.0.0.1:${resetter.port}`, `127.0.0.1:${good.port}`];
    const proxy = await startProxy(
      "binary",
      poolToml(
        port,
        `  backends = [${addrs.map((a) => `"${a}"`).join(", ")}]\n  health_check = "off"\n  health_check_fall = 100\n`,
      ),
      { dir },
    );
    try {
      const got = await many(port, 80, 20);
      expect(count(got, "good")).toBe(80);
      await waitFor(() => proxy.access().length >= 80, 3000, "80 access lines");
      const recs = proxy.access();
      expect(recs.every((r) => r.outcome === "ok" && r.backend === addrs[1])).toBe(true);
      // Round robin sends about half to the resetter first.
      expect(recs.filter((r) => r.tries === 2).length).toBeGreaterThan(20);
    } finally {
      await proxy.stop();
      resetter.stop(true);
      good.stop();
    }
  }, 30_000);

  test("health_check = tls marks down a backend that answers garbage or nothing and keeps a real TLS server up; tcp keeps all three up", async () => {
    const cert = testCert();
    const real = tlsBackend("real", cert);
    const garbage = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: { data: (s) => void s.write("HTTP/1.1 400 Bad Request\r\n\r\n") },
    });
    const silent = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const addrs = [`127.0.0.1:${real.port}`, `127.0.0.1:${garbage.port}`, `127.0.0.1:${silent.port}`];
    const route = (kind: string) =>
      `  backends = [${addrs.map((a) => `"${a}"`).join(", ")}]\n  health_check = "${kind}"\n  health_check_interval = "200ms"\n  health_check_timeout = "300ms"\n  health_check_rise = 1\n  health_check_fall = 1\n`;
    try {
      for (const kind of ["tls", "tcp"]) {
        const dir = tempDir();
        const port = freePort();
        const proxy = await startProxy("binary", poolToml(port, route(kind)), { dir });
        try {
          let list: ListedBackend[] = [];
          const end = Date.now() + 5000;
          do {
            await sleep(200);
            list = await listBackends(dir);
          } while (Date.now() < end && list.some((b) => b.health.last_check === "none"));
          await sleep(700);
          list = await listBackends(dir);
          const up = list.map((b) => b.health.up);
          if (kind === "tls") {
            expect(up).toEqual([true, false, false]);
            expect(list[0]!.health.last_check).toBe("ok");
            expect(list[1]!.health.last_check).toBe("failed");
          } else expect(up).toEqual([true, true, true]);
        } finally {
          await proxy.stop();
        }
      }
    } finally {
      real.stop();
      garbage.stop(true);
      silent.stop(true);
    }
  }, 60_000);

  test("drain during 10 long transfers: all complete byte-exact, no new connection reaches the drained backend, its active count falls to 0 (the deploy recipe, with the CLI)", async () => {
    const TOTAL = 8 * MiB;
    const streams = [0, 1].map(() => streamBackend(11, TOTAL));
    const [A, B] = streams as [(typeof streams)[0], (typeof streams)[0]];
    const addrA = `127.0.0.1:${A.port}`;
    const dir = tempDir();
    const port = freePort();
    const proxy = await startProxy(
      "binary",
      poolToml(port, `  backends = ["${addrA}", "127.0.0.1:${B.port}"]\n  health_check = "off"\n`),
      { dir },
    );
    try {
      const downloads = await Promise.all(Array.from({ length: 10 }, () => pacedDownload(port, hello, 3)));
      await waitFor(() => A.conns + B.conns === 10, 5000, "10 transfers");
      const onA = A.conns;
      expect(onA).toBeGreaterThan(0);
      // 1. drain
      const drained = cli(dir, "backends", "drain", "app.example.com", addrA);
      expect(drained.code).toBe(0);
      expect(drained.out).toContain("drain");
      // New connections go elsewhere.
      await Promise.all(
        Array.from({ length: 20 }, () => rawExchange(port, helloFor("app.example.com"), { timeoutMs: 100 })),
      );
      expect(A.conns).toBe(onA);
      // 2. wait for active to reach 0
      const listed = cli(dir, "backends", "list", "app.example.com", "--json");
      expect(listed.code).toBe(0);
      await Promise.all(downloads.map((d) => d.done));
      for (const d of downloads) {
        expect(d.reader.received).toBe(TOTAL);
        expect(d.reader.digest()).toBe(streamHash(11, TOTAL));
      }
      let active = -1;
      const end = Date.now() + 5000;
      while (Date.now() < end) {
        active = (await listBackends(dir)).find((x) => x.addr === addrA)!.active_connections;
        if (active === 0) break;
        await sleep(50);
      }
      expect(active).toBe(0);
      expect(cli(dir, "backends", "list", "app.example.com").out).toMatch(
        new RegExp(`${addrA.replace(".", "\\.")}  weight=1  drain  up  active=0`),
      );
      // 3. (restart the backend) 4. enable: it takes connections again.
      expect(cli(dir, "backends", "enable", "app.example.com", addrA).code).toBe(0);
      await Promise.all(
        Array.from({ length: 20 }, () => rawExchange(port, helloFor("app.example.com"), { timeoutMs: 100 })),
      );
      expect(A.conns).toBeGreaterThan(onA);
      // The state survives a restart (it is in the store).
      expect(cli(dir, "backends", "drain", "app.example.com", addrA).code).toBe(0);
      proxy.signal("SIGTERM");
      expect(await proxy.exited).toBe(0);
      const again = await startProxy(
        "binary",
        poolToml(port, `  backends = ["${addrA}", "127.0.0.1:${B.port}"]\n  health_check = "off"\n`),
        { dir },
      );
      try {
        expect((await listBackends(dir)).find((x) => x.addr === addrA)!.state).toBe("BACKEND_STATE_DRAIN");
      } finally {
        await again.stop();
      }
    } finally {
      await proxy.stop();
      for (const s of streams) s.stop();
    }
  }, 90_000);

  test("all backends down → RST, connect_failed, tries = min(pool size, retries + 1), backend = the last tried; none eligible → no_backend, tries 0", async () => {
    const dead = [freePort(), freePort(), freePort(), freePort()];
    const dir = tempDir();
    const port = freePort();
    const proxy = await startProxy(
      "binary",
      poolToml(
        port,
        `  backends = [${dead.map((p) => `"127.0.0.1:${p}"`).join(", ")}]\n  health_check = "off"\n  health_check_fall = 100\n`,
      ),
      { dir },
    );
    try {
      const r = await rawExchange(port, hello);
      expect(r).toMatchObject({ end: "reset" });
      expect(r.received.length).toBe(0);
      const rec = await proxy.waitAccess((x) => x.outcome === "connect_failed");
      expect(rec.tries).toBe(3);
      expect(dead.map((p) => `127.0.0.1:${p}`)).toContain(rec.backend as string);
      for (const p of dead) expect(cli(dir, "backends", "disable", "app.example.com", `127.0.0.1:${p}`).code).toBe(0);
      expect((await rawExchange(port, hello)).end).toBe("reset");
      expect(await proxy.waitAccess((x) => x.outcome === "no_backend")).toMatchObject({ tries: 0, backend: "" });
    } finally {
      await proxy.stop();
    }
  }, 30_000);

  test('an old config (backend = "…") and a database from release 0.1.0 still work unchanged', async () => {
    const a = named("old");
    const dir = tempDir();
    mkdirSync(join(dir, "data"));
    copyFileSync(join(import.meta.dir, "../fixtures/release-0.1.0.db"), join(dir, "data/old.db"));
    const port = 25443; // the fixture's listener
    const proxy = await startProxy(
      "binary",
      `[database]\npath = "data/old.db"\n[[listeners]]\naddr = "127.0.0.1:${port}"\n  [[listeners.routes]]\n  hostname = "alpha.example.com"\n  backend = "127.0.0.1:${a.port}"\n[[listeners]]\naddr = "127.0.0.1:25446"\n[grpc]\naddr = "unix:admin.sock"\n`,
      { dir },
    );
    try {
      // The database is the source of truth: its route for alpha points at 127.0.0.1:25444 (from 0.1.0).
      const list = cli(dir, "routes", "list", "--listener", `127.0.0.1:${port}`).out;
      expect(list).toContain("alpha.example.com  ->  127.0.0.1:25444");
      expect(list).toContain("*.wild.example.com  ->  127.0.0.1:25445");
      // Point it at our backend with the old single-backend form; it routes.
      expect(
        cli(dir, "routes", "add", "--listener", `127.0.0.1:${port}`, "alpha.example.com", `127.0.0.1:${a.port}`).code,
      ).toBe(0);
      expect((await rawExchange(port, helloFor("alpha.example.com"), { timeoutMs: 300 })).received.toString()).toBe(
        "old",
      );
    } finally {
      await proxy.stop();
      a.stop();
    }
  }, 30_000);
});
