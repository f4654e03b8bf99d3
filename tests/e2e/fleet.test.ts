// Fleet mode, against the compiled binary and a real etcd on
// loopback (Debian's etcd-server 3.4): several instances share one route
// table and firewall through etcd and converge within a second; they seed
// once; they keep routing while etcd is down and catch up when it returns;
// a three-member cluster survives losing one; a compacted watch resyncs;
// TLS with client certificates; snapshots and import.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Socket, TCPSocketListener } from "bun";
import { Etcd3 } from "etcd3";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { AdminCallError, AdminClient } from "../../src/cli/admin_client";
import { unixGrpcConfig } from "../helpers/admin";
import { adminPki } from "../helpers/certs";
import { EtcdCluster, etcdMissing } from "../helpers/etcd";
import { helloFor } from "../helpers/hello_builder";
import { freePort, percentile, rawExchange, sleep } from "../helpers/net";
import { cleanEnv, command, type RunningProxy, startProxy, tempDir } from "../helpers/proxy";
import { named } from "../helpers/backends";
import { fleetToml } from "../helpers/toml";

async function answer(port: number, sni: string): Promise<string> {
  const r = await rawExchange(port, helloFor(sni), { timeoutMs: 300 });
  return r.received.toString();
}

interface Instance {
  proxy: RunningProxy;
  dir: string;
  port: number;
  admin: AdminClient;
}

async function instance(
  endpoints: string[],
  prefix: string,
  opts: { dir?: string; port?: number; routes?: string; extra?: string; etcdExtra?: string } = {},
): Promise<Instance> {
  const dir = opts.dir ?? tempDir();
  const port = opts.port ?? freePort();
  const proxy = await startProxy("binary", fleetToml(endpoints, prefix, port, opts), { dir });
  return { proxy, dir, port, admin: new AdminClient(unixGrpcConfig(join(dir, "admin.sock"))) };
}

async function routesOf(i: Instance): Promise<string[]> {
  const r = await i.admin.call<{ listeners: { routes: { hostname: string; backend: string }[] }[] }>("ListRoutes", {
    listener: "public",
  });
  return r.listeners[0]!.routes.map((x) => `${x.hostname}=${x.backend}`);
}

describe("fleet mode (binary, etcd)", () => {
  let skip: string | null = null;
  let etcd: EtcdCluster;
  const all: Instance[] = [];

  beforeAll(async () => {
    skip = etcdMissing();
    if (skip !== null) return;
    etcd = new EtcdCluster(1);
    await etcd.startAll();
  }, 30_000);
  afterAll(async () => {
    for (const i of all) {
      i.admin.close();
      await i.proxy.stop();
    }
    await etcd?.stopAll();
  });

  test("three instances, one table: a change on A routes through B and C within 1 s; 100 changes, p50/p99 convergence", async () => {
    if (skip !== null) return void console.warn(`SKIP: fleet: ${skip}`);
    const prefix = "/mcp/converge/";
    const a = await instance(etcd.endpoints, prefix);
    const b = await instance(etcd.endpoints, prefix);
    const c = await instance(etcd.endpoints, prefix);
    all.push(a, b, c);
    const be = named("fleet-backend");
    try {
      // AddRoute on A → real connections through B and C.
      const t0 = performance.now();
      await a.admin.call("AddRoute", {
        listener: "public",
        route: { hostname: "new.example.com", backend: `127.0.0.1:${be.port}` },
      });
      for (const x of [b, c]) {
        let got = "";
        while (performance.now() - t0 < 1000 && got !== "fleet-backend") got = await answer(x.port, "new.example.com");
        expect(got).toBe("fleet-backend");
      }
      // RemoveRoute and AddFirewallRule likewise.
      await a.admin.call("RemoveRoute", { listener: "public", hostname: "new.example.com" });
      const t1 = performance.now();
      for (const x of [b, c]) {
        let end = "";
        while (performance.now() - t1 < 1000 && end !== "reset")
          end = (await rawExchange(x.port, helloFor("new.example.com"), { timeoutMs: 300 })).end;
        expect(end).toBe("reset");
      }
      await a.admin.call("AddFirewallRule", { rule: { type: "FIREWALL_RULE_TYPE_CIDR", value: "198.51.100.0/24" } });
      for (const x of [b, c]) {
        const end = Date.now() + 1000;
        let rules: { value: string }[] = [];
        while (Date.now() < end && rules.length === 0)
          rules = (await x.admin.call<{ rules: { value: string }[] }>("GetFirewallRules")).rules;
        expect(rules.map((r) => r.value)).toEqual(["198.51.100.0/24"]);
      }
      // 100 changes: the time until both B and C list each new route.
      const times: number[] = [];
      for (let i = 0; i < 100; i++) {
        const host = `c${i}.example.com`;
        const start = performance.now();
        await a.admin.call("AddRoute", {
          listener: "public",
          route: { hostname: host, backend: `127.0.0.1:${be.port}` },
        });
        const seen = [false, false];
        while (!seen[0] || !seen[1]) {
          if (performance.now() - start > 2000) throw new Error(`change ${i} did not converge within 2 s`);
          for (const [k, x] of [b, c].entries())
            if (!seen[k]) seen[k] = (await routesOf(x)).some((r) => r.startsWith(`${host}=`));
        }
        times.push(performance.now() - start);
      }
      const p50 = percentile(times, 0.5);
      const p99 = percentile(times, 0.99);
      console.log(
        `fleet convergence over 100 AddRoute calls (A → B and C): p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms, max ${Math.max(...times).toFixed(1)} ms`,
      );
      expect(p99).toBeLessThan(1000);
      const s = await b.admin.call<{ store: string }>("GetStatus");
      expect(s.store).toMatch(/^etcd: synced at revision \d+$/);
    } finally {
      be.stop();
    }
  }, 120_000);

  test("two instances started at the same instant on an empty prefix seed exactly once", async () => {
    if (skip !== null) return void console.warn(`SKIP: fleet: ${skip}`);
    const prefix = "/mcp/seed-race/";
    const routes = Array.from(
      { length: 150 },
      (_, i) => `  [[listeners.routes]]\n  hostname = "r${i}.example.com"\n  backend = "127.0.0.1:${1000 + i}"\n`,
    ).join("");
    const extra = `[firewall]\nblocked_ips = ["192.0.2.1", "192.0.2.2"]\nblocked_cidrs = ["198.51.100.0/24"]\n`;
    const [x, y] = await Promise.all([
      instance(etcd.endpoints, prefix, { routes, extra }),
      instance(etcd.endpoints, prefix, { routes, extra }),
    ]);
    all.push(x, y);
    const client = new Etcd3({ hosts: etcd.endpoints });
    try {
      const kv = await client.getAll().prefix(prefix).keys();
      const routeKeys = kv.filter((k) => k.startsWith(`${prefix}routes/`));
      const ruleKeys = kv.filter((k) => k.startsWith(`${prefix}rules/`));
      expect(routeKeys.length).toBe(150);
      expect(new Set(routeKeys).size).toBe(150);
      expect(ruleKeys.sort()).toEqual([
        `${prefix}rules/cidr/198.51.100.0%2F24`,
        `${prefix}rules/ip/192.0.2.1`,
        `${prefix}rules/ip/192.0.2.2`,
      ]);
      const seeders = [x, y].filter((i) =>
        i.proxy.records().some((r) => r.msg === "etcd: seeded the fleet from this config"),
      );
      expect(seeders.length).toBe(1);
      // The seeder writes 150 routes in two transactions (etcd's 128-operation
      // limit); the other instance (either may lose) may have read between
      // them and takes the rest from its watch (docs/FLEET.md, seeding).
      const all150 = async (i: Instance) => {
        let got = await routesOf(i);
        for (const end = Date.now() + 2000; got.length < 150 && Date.now() < end; got = await routesOf(i))
          await sleep(20);
        return got;
      };
      const [gx, gy] = [await all150(x), await all150(y)];
      expect(gx.length).toBe(150);
      expect(gy).toEqual(gx);
    } finally {
      client.close();
    }
  }, 60_000);

  test("etcd down: routing goes on, a mutation is UNAVAILABLE within dial_timeout saying etcd is unreachable; back up: mutations succeed and converge; an instance started meanwhile serves its last-known-good state and catches up", async () => {
    if (skip !== null) return void console.warn(`SKIP: fleet: ${skip}`);
    const prefix = "/mcp/outage/";
    const be = named("outage-backend");
    const routes = `  [[listeners.routes]]\n  hostname = "keep.example.com"\n  backend = "127.0.0.1:${be.port}"\n`;
    const a = await instance(etcd.endpoints, prefix, { routes });
    const b = await instance(etcd.endpoints, prefix, { routes });
    // D syncs once, stops; the fleet then changes: D's copy is behind.
    const dDir = tempDir();
    const dPort = freePort();
    let d = await instance(etcd.endpoints, prefix, { routes, dir: dDir, port: dPort });
    d.admin.close();
    d.proxy.signal("SIGTERM");
    expect(await d.proxy.exited).toBe(0);
    await a.admin.call("AddRoute", {
      listener: "public",
      route: { hostname: "while-d-away.example.com", backend: `127.0.0.1:${be.port}` },
    });
    all.push(a, b);
    try {
      await etcd.stopAll();
      // Routing goes on, for known and new connections.
      for (const x of [a, b]) expect(await answer(x.port, "keep.example.com")).toBe("outage-backend");
      const t0 = performance.now();
      const err = await a.admin
        .call("AddRoute", {
          listener: "public",
          route: { hostname: "during.example.com", backend: `127.0.0.1:${be.port}` },
        })
        .then(
          () => null,
          (e: AdminCallError) => e,
        );
      const took = performance.now() - t0;
      expect(err).toBeInstanceOf(AdminCallError);
      expect(err!.code).toBe("UNAVAILABLE");
      expect(err!.details).toContain("etcd");
      expect(err!.details).toContain("unreachable");
      expect(err!.details).not.toContain("cannot reach the admin API");
      expect(took).toBeLessThan(2500);
      // The CLI says the same, in one line.
      const cli = Bun.spawnSync(
        [...command("binary"), "routes", "add", "-c", join(a.dir, "mc-proxy.toml"), "x.example.com", "127.0.0.1:1"],
        { env: cleanEnv(), stdout: "pipe", stderr: "pipe" },
      );
      expect(cli.exitCode).toBe(1);
      expect(cli.stderr.toString()).toContain("UNAVAILABLE: the store (etcd) is unreachable");
      expect(await routesOf(a)).not.toContain(`during.example.com=127.0.0.1:${be.port}`);
      // D starts while etcd is down: its last-known-good copy, said to be stale.
      d = await instance(etcd.endpoints, prefix, { routes, dir: dDir, port: dPort });
      all.push(d);
      expect(await answer(dPort, "keep.example.com")).toBe("outage-backend");
      expect(await routesOf(d)).not.toContain(`while-d-away.example.com=127.0.0.1:${be.port}`);
      expect((await d.admin.call<{ store: string }>("GetStatus")).store).toMatch(/^etcd: stale since /);
      // etcd returns.
      for (const m of etcd.members) etcd.start(m, "existing");
      await etcd.ready();
      const end = Date.now() + 15_000;
      let ok = false;
      while (!ok && Date.now() < end) {
        ok = await a.admin
          .call("AddRoute", {
            listener: "public",
            route: { hostname: "after.example.com", backend: `127.0.0.1:${be.port}` },
          })
          .then(
            () => true,
            () => false,
          );
        if (!ok) await sleep(200);
      }
      expect(ok).toBe(true);
      for (const x of [a, b, d]) {
        const until = Date.now() + 5000;
        let r: string[] = [];
        while (Date.now() < until && !r.includes(`after.example.com=127.0.0.1:${be.port}`)) {
          r = await routesOf(x);
          await sleep(50);
        }
        expect(r).toContain(`after.example.com=127.0.0.1:${be.port}`);
        expect(r).toContain(`while-d-away.example.com=127.0.0.1:${be.port}`);
      }
      expect((await d.admin.call<{ store: string }>("GetStatus")).store).toMatch(/^etcd: synced at revision/);
    } finally {
      be.stop();
    }
  }, 90_000);
});

/** A TCP relay to etcd that a test can cut and restore (to disconnect one instance). */
function relay(target: number) {
  const port = freePort();
  const conns: Socket<{ peer: Socket<unknown> | null; q: Uint8Array[] }>[] = [];
  let l: TCPSocketListener<unknown> | null = null;
  const up = () => {
    l = Bun.listen<{ peer: Socket<unknown> | null; q: Uint8Array[] }>({
      hostname: "127.0.0.1",
      port,
      socket: {
        open(c) {
          conns.push(c);
          c.data = { peer: null, q: [] };
          void Bun.connect({
            hostname: "127.0.0.1",
            port: target,
            socket: {
              open(s) {
                c.data.peer = s as Socket<unknown>;
                for (const b of c.data.q) s.write(b);
              },
              data: (_s, d) => void c.write(d),
              close: () => void c.end(),
            },
          }).catch(() => c.end());
        },
        data(c, d) {
          if (c.data.peer === null) c.data.q.push(new Uint8Array(d));
          else c.data.peer.write(d);
        },
        close(c) {
          c.data.peer?.end();
        },
      },
    }) as TCPSocketListener<unknown>;
  };
  up();
  return {
    port,
    cut() {
      l?.stop(true);
      for (const c of conns.splice(0)) {
        c.data.peer?.terminate();
        c.terminate();
      }
    },
    restore: up,
    stop() {
      this.cut();
    },
  };
}

describe("fleet mode on a three-member etcd cluster (binary)", () => {
  test("one member stopped: mutations succeed and converge; compaction while an instance is cut off: it re-reads and converges", async () => {
    const skip = etcdMissing();
    if (skip !== null) return void console.warn(`SKIP: fleet cluster: ${skip}`);
    const etcd = new EtcdCluster(3);
    await etcd.startAll();
    const prefix = "/mcp/cluster/";
    const be = named("cluster-backend");
    const r = relay(etcd.members[0]!.clientPort);
    const insts: Instance[] = [];
    try {
      const a = await instance(etcd.endpoints, prefix);
      const b = await instance(etcd.endpoints, prefix);
      // E reaches etcd only through the relay.
      const e = await instance([`http://127.0.0.1:${r.port}`], prefix);
      insts.push(a, b, e);
      await etcd.stop(etcd.members[2]!);
      await a.admin.call("AddRoute", {
        listener: "public",
        route: { hostname: "m.example.com", backend: `127.0.0.1:${be.port}` },
      });
      for (const x of [b, e]) {
        const until = Date.now() + 3000;
        while (Date.now() < until && !(await routesOf(x)).includes(`m.example.com=127.0.0.1:${be.port}`))
          await sleep(50);
        expect(await routesOf(x)).toContain(`m.example.com=127.0.0.1:${be.port}`);
      }
      // Cut E off, change things, compact past E's revision, restore.
      r.cut();
      await sleep(300);
      for (let i = 0; i < 5; i++)
        await a.admin.call("AddRoute", {
          listener: "public",
          route: { hostname: `k${i}.example.com`, backend: `127.0.0.1:${be.port}` },
        });
      await a.admin.call("RemoveRoute", { listener: "public", hostname: "m.example.com" });
      const client = new Etcd3({ hosts: etcd.endpoints.slice(0, 2) });
      const rev = (await client.get(`${prefix}schema`).exec()).header.revision;
      await client.kv.compact({ revision: rev, physical: true });
      client.close();
      r.restore();
      const until = Date.now() + 15_000;
      let routes: string[] = [];
      while (Date.now() < until) {
        routes = await routesOf(e);
        if (
          routes.includes(`k4.example.com=127.0.0.1:${be.port}`) &&
          !routes.includes(`m.example.com=127.0.0.1:${be.port}`)
        )
          break;
        await sleep(100);
      }
      expect(routes).toContain(`k4.example.com=127.0.0.1:${be.port}`);
      expect(routes).not.toContain(`m.example.com=127.0.0.1:${be.port}`);
      expect(await routesOf(e)).toEqual(await routesOf(a));
      expect(e.proxy.records().some((x) => x.msg === "etcd: re-reading the whole state")).toBe(true);
    } finally {
      for (const i of insts) {
        i.admin.close();
        await i.proxy.stop();
      }
      r.stop();
      be.stop();
      await etcd.stopAll();
    }
  }, 120_000);
});

describe("fleet mode over TLS (binary)", () => {
  test("client certificates work; a wrong CA fails at start with a clear message; snapshot and import", async () => {
    const skip = etcdMissing();
    if (skip !== null) return void console.warn(`SKIP: fleet TLS: ${skip}`);
    const pki = adminPki();
    const etcd = new EtcdCluster(1, { cert: pki.serverCert, key: pki.serverKey, ca: pki.ca });
    await etcd.startAll();
    const tls = `ca = "${pki.ca}"\ncert = "${pki.clientCert}"\nkey = "${pki.clientKey}"\n`;
    const insts: Instance[] = [];
    try {
      const be = named("tls-backend");
      const a = await instance(etcd.endpoints, "/mcp/tls/", {
        etcdExtra: tls,
        routes: `  [[listeners.routes]]\n  hostname = "t.example.com"\n  backend = "127.0.0.1:${be.port}"\n`,
      });
      insts.push(a);
      expect(await answer(a.port, "t.example.com")).toBe("tls-backend");
      expect((await a.admin.call<{ store: string }>("GetStatus")).store).toMatch(/^etcd: synced/);
      // A wrong CA: refused at start, exit 1, saying what to check.
      const dir = tempDir();
      writeFileSync(
        join(dir, "c.toml"),
        fleetToml(etcd.endpoints, "/mcp/tls/", freePort(), {
          etcdExtra: `ca = "${pki.dir}/foreign-ca.pem"\ncert = "${pki.clientCert}"\nkey = "${pki.clientKey}"\n`,
        }),
      );
      const bad = Bun.spawnSync([...command("binary"), "server", "-c", join(dir, "c.toml")], {
        cwd: dir,
        env: cleanEnv(),
        stdout: "pipe",
        stderr: "pipe",
        timeout: 20_000,
      });
      expect(bad.exitCode).toBe(1);
      expect(bad.stderr.toString()).toContain("etcd: the TLS handshake failed");
      // Snapshot of the fleet, imported into an empty prefix: the same state.
      const snap = join(tempDir(), "fleet.db");
      const s = Bun.spawnSync([...command("binary"), "snapshot", "-c", join(a.dir, "mc-proxy.toml"), "-o", snap], {
        env: cleanEnv(),
        stdout: "pipe",
        stderr: "pipe",
      });
      expect(s.stdout.toString()).toContain("at revision");
      const dir2 = tempDir();
      writeFileSync(join(dir2, "c.toml"), fleetToml(etcd.endpoints, "/mcp/tls-copy/", freePort(), { etcdExtra: tls }));
      const imp = Bun.spawnSync([...command("binary"), "store", "import", "-c", join(dir2, "c.toml"), snap], {
        env: cleanEnv(),
        stdout: "pipe",
        stderr: "pipe",
      });
      expect(imp.stderr.toString()).toBe("");
      expect(imp.stdout.toString()).toContain("1 route(s)");
      const again = Bun.spawnSync([...command("binary"), "store", "import", "-c", join(dir2, "c.toml"), snap], {
        env: cleanEnv(),
        stdout: "pipe",
        stderr: "pipe",
      });
      expect(again.exitCode).toBe(1);
      expect(again.stderr.toString()).toContain("import only into an empty prefix");
      const b = await instance(etcd.endpoints, "/mcp/tls-copy/", { etcdExtra: tls });
      insts.push(b);
      expect(await routesOf(b)).toEqual(await routesOf(a));
      be.stop();
    } finally {
      for (const i of insts) {
        i.admin.close();
        await i.proxy.stop();
      }
      await etcd.stopAll();
    }
  }, 120_000);
});
