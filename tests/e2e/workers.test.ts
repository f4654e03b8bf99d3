// Every core, against the compiled binary with [proxy] workers = 2:
// connections spread over both loops; max_connections and the rate limit
// exact across them; admin changes seen by every worker once the RPC
// returns; a dead worker replaced while the other's transfer completes; a
// crash loop ends the process; drain and GeoIP reload across workers; a
// second instance refused; whole access-log lines with the worker's id.
import { describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { AdminClient } from "../../src/cli/admin_client";
import { availableCpus } from "../../src/server/host_limits";
import { unixGrpcConfig } from "../helpers/admin";
import { helloFor } from "../helpers/hello_builder";
import { writeMmdb } from "../helpers/mmdb_writer";
import { freePort, rawExchange, sleep, waitFor } from "../helpers/net";
import { cleanEnv, command, listenerToml, startProxy, tempDir } from "../helpers/proxy";
import { pacedDownload, streamBackend, streamHash } from "../helpers/stream";

const MiB = 1024 * 1024;

/** A backend that answers "ok" to the first bytes and holds the connection. */
function okBackend() {
  let conns = 0;
  const l = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    allowHalfOpen: true,
    socket: {
      open: () => void conns++,
      data: (s) => void s.write("ok"),
      end: (s) => void s.end(),
    },
  });
  return {
    port: l.port,
    get connections() {
      return conns;
    },
    stop: () => l.stop(true),
  };
}

/** A slow download through the proxy of the name's stream. */
const download = (port: number, name: string, paceMs = 1) => pacedDownload(port, helloFor(name), paceMs);

const workersToml = (
  port: number,
  routes: Record<string, number>,
  extra = "",
  listener: { maxConnections?: number } = {},
) =>
  `${listenerToml(port, routes, listener)}
[grpc]
addr = "unix:admin.sock"
[proxy]
workers = 2
${extra}`;

async function status(dir: string) {
  const c = new AdminClient(unixGrpcConfig(join(dir, "admin.sock")));
  try {
    return await c.call<{
      total_connections: number;
      active_connections: number;
      workers: { id: number; thread: number; active: number; accepted: number; restarts: number }[];
    }>("GetStatus");
  } finally {
    c.close();
  }
}

describe("workers = 2 (binary)", () => {
  test('workers = "auto" is the CPUs this process may run on (its affinity mask)', async () => {
    expect(availableCpus("Name:\tx\nCpus_allowed_list:\t0-3,8\n")).toBe(5);
    expect(availableCpus("Cpus_allowed_list:\t2\n")).toBe(1);
    const port = freePort();
    // taskset -c 0: one CPU allowed → one worker, whatever the machine has.
    const proxy = await startProxy("binary", listenerToml(port, {}), { wrap: ["taskset", "-c", "0"] });
    try {
      expect(proxy.records().find((r) => r.msg === "started")).toMatchObject({ workers: 1 });
    } finally {
      await proxy.stop();
    }
  });

  test("each thread collects its start-up garbage once (main and both workers), before the first connection", async () => {
    const port = freePort();
    const proxy = await startProxy("binary", listenerToml(port, {}), {
      env: { MCPROXY_PROXY_WORKERS: "2", MCPROXY_LOG_LEVEL: "debug" },
    });
    try {
      await waitFor(
        () => proxy.records().filter((r) => r.msg === "start-up garbage collected").length === 3,
        2000,
        "three start-up collections",
      );
      const gcs = proxy.records().filter((r) => r.msg === "start-up garbage collected");
      expect(gcs.map((r) => r.thread).sort()).toEqual(["main", "worker 0", "worker 1"]);
      for (const r of gcs) expect(typeof r.ms).toBe("number");
    } finally {
      await proxy.stop();
    }
  });

  test("2,000 connections are spread over both workers (each ≥ 25 %), all routed, one whole log line each with its worker", async () => {
    const backend = okBackend();
    const dir = tempDir();
    const port = freePort();
    const proxy = await startProxy("binary", workersToml(port, { "app.example.com": backend.port }), { dir });
    try {
      const hello = helloFor("app.example.com");
      let routed = 0;
      for (let i = 0; i < 2000; i += 100) {
        const rs = await Promise.all(Array.from({ length: 100 }, () => rawExchange(port, hello, { timeoutMs: 150 })));
        routed += rs.filter((r) => r.received.toString() === "ok").length;
      }
      expect(routed).toBe(2000);
      await waitFor(() => proxy.access().length === 2000, 10_000, "2,000 access records");
      // Every line of the log is one whole JSON record (no interleaved partial lines).
      const lines = proxy.output.split("\n").filter((l) => l.length > 0);
      expect(lines.filter((l) => !l.startsWith("{") || !l.endsWith("}"))).toEqual([]);
      for (const l of lines) JSON.parse(l);
      const byWorker = [0, 1].map((w) => proxy.access().filter((r) => r.worker === w).length);
      expect(byWorker[0]! + byWorker[1]!).toBe(2000);
      expect(Math.min(...byWorker)).toBeGreaterThanOrEqual(500);
      const s = await status(dir);
      expect(s.workers.map((w) => w.id)).toEqual([0, 1]);
      expect(s.workers.every((w) => w.thread > 0 && w.restarts === 0)).toBe(true);
      expect(s.workers.reduce((n, w) => n + w.accepted, 0)).toBe(2000);
      expect(s.total_connections).toBe(2000);
    } finally {
      await proxy.stop();
      backend.stop();
    }
  }, 60_000);

  test("max_connections = 10 across 2 workers, 40 held: exactly 10 open, 30 reset — 5 times", async () => {
    const backend = okBackend();
    const dir = tempDir();
    const port = freePort();
    const proxy = await startProxy(
      "binary",
      workersToml(port, { "app.example.com": backend.port }, "", { maxConnections: 10 }),
      { dir },
    );
    try {
      const hello = helloFor("app.example.com");
      for (let round = 0; round < 5; round++) {
        const held: Socket<{ got: string; end: string | null }>[] = [];
        const states: { got: string; end: string | null }[] = Array.from({ length: 40 }, () => ({
          got: "",
          end: null,
        }));
        await Promise.all(
          states.map((st) =>
            Bun.connect<{ got: string; end: string | null }>({
              hostname: "127.0.0.1",
              port,
              data: st,
              socket: {
                open: (s) => void s.write(hello),
                data: (s, d) => void (s.data.got += d.toString()),
                close: (s, err) => void (s.data.end = err === undefined ? "eof" : "reset"),
              },
            }).then(
              (s) => void held.push(s),
              () => void (st.end = "reset"),
            ),
          ),
        );
        await waitFor(
          () => states.filter((s) => s.got === "ok").length + states.filter((s) => s.end !== null).length === 40,
          5000,
          "every client answered or reset",
        );
        expect({ round, open: states.filter((s) => s.got === "ok" && s.end === null).length }).toEqual({
          round,
          open: 10,
        });
        expect(states.filter((s) => s.end !== null && s.got === "").length).toBe(30);
        for (const s of held) s.end();
        await waitFor(
          () => proxy.access().filter((r) => r.outcome === "ok").length === 10 * (round + 1),
          5000,
          "the 10 closed",
        );
      }
      expect(proxy.access().filter((r) => r.outcome === "over_capacity").length).toBe(150);
    } finally {
      await proxy.stop();
      backend.stop();
    }
  }, 60_000);

  test("rate_limit = 5 across 2 workers: 20 connections from one IP → exactly 15 refused — 5 times", async () => {
    const backend = okBackend();
    const port = freePort();
    const proxy = await startProxy(
      "binary",
      workersToml(port, { "app.example.com": backend.port }, `[firewall]\nrate_limit = 5\nrate_window = "60s"\n`),
    );
    try {
      const hello = helloFor("app.example.com");
      for (let round = 0; round < 5; round++) {
        // A different loopback address per round: a fresh client for the limiter.
        const from = `127.0.1.${round + 1}`;
        const rs = await Promise.all(
          Array.from({ length: 20 }, () => rawExchange(port, hello, { localAddress: from, timeoutMs: 300 })),
        );
        expect({
          round,
          ok: rs.filter((r) => r.received.toString() === "ok").length,
          reset: rs.filter((r) => r.end === "reset").length,
        }).toEqual({ round, ok: 5, reset: 15 });
      }
      await waitFor(
        () => proxy.access().filter((r) => r.outcome === "rate_limited").length === 75,
        5000,
        "75 rate_limited",
      );
      // Both workers took part.
      const workers = new Set(proxy.access().map((r) => r.worker));
      expect(workers.size).toBe(2);
    } finally {
      await proxy.stop();
      backend.stop();
    }
  }, 60_000);

  test("after AddRoute returns, 200 immediate connections to the new name all route; after RemoveRoute returns, 200 are all reset", async () => {
    const backend = okBackend();
    const dir = tempDir();
    const port = freePort();
    const proxy = await startProxy("binary", workersToml(port, {}), { dir });
    const admin = new AdminClient(unixGrpcConfig(join(dir, "admin.sock")));
    try {
      const listener = `127.0.0.1:${port}`;
      const hello = helloFor("new.example.com");
      await admin.call("AddRoute", {
        listener,
        route: { hostname: "new.example.com", backend: `127.0.0.1:${backend.port}` },
      });
      const added = await Promise.all(Array.from({ length: 200 }, () => rawExchange(port, hello, { timeoutMs: 500 })));
      expect(added.filter((r) => r.received.toString() !== "ok")).toEqual([]);
      await admin.call("RemoveRoute", { listener, hostname: "new.example.com" });
      const removed = await Promise.all(
        Array.from({ length: 200 }, () => rawExchange(port, hello, { timeoutMs: 500 })),
      );
      expect(removed.filter((r) => r.end !== "reset")).toEqual([]);
      await waitFor(() => proxy.access().filter((r) => r.outcome === "no_route").length === 200, 5000, "200 no_route");
      expect(
        new Set(
          proxy
            .access()
            .filter((r) => r.outcome === "no_route")
            .map((r) => r.worker),
        ).size,
      ).toBe(2);
    } finally {
      admin.close();
      await proxy.stop();
      backend.stop();
    }
  }, 60_000);

  test("a worker killed during a 64 MiB transfer on the other: the transfer completes byte-exact, the dead one is replaced and GetStatus shows the restart", async () => {
    const TOTAL = 64 * MiB;
    const backend = streamBackend(5, TOTAL);
    const dir = tempDir();
    const port = freePort();
    const crashFile = join(dir, "crash-worker");
    const proxy = await startProxy("binary", workersToml(port, { "big.example.com": backend.port }), {
      dir,
      env: { MC_PROXY_TEST_WORKER_CRASH: crashFile },
    });
    try {
      const d = await download(port, "big.example.com", 2);
      await waitFor(() => d.reader.received > 4 * MiB, 10_000, "transfer under way");
      const s0 = await status(dir);
      const busy = s0.workers.find((w) => w.active === 1)!;
      const other = s0.workers.find((w) => w.id !== busy.id)!;
      writeFileSync(crashFile, String(other.id));
      proxy.signal("SIGUSR2");
      await waitFor(() => proxy.records().some((r) => r.msg === "worker replaced"), 5000, "replacement");
      const died = proxy.records().find((r) => r.msg === "worker died; its connections are lost")!;
      expect(died).toMatchObject({ level: "error", worker: other.id, connections: 0 });
      const replaced = proxy.records().find((r) => r.msg === "worker replaced")!;
      expect(Date.parse(replaced.time as string) - Date.parse(died.time as string)).toBeLessThan(1000);
      await d.done;
      expect(d.reader.received).toBe(TOTAL);
      expect(d.reader.digest()).toBe(streamHash(5, TOTAL));
      const s1 = await status(dir);
      expect(s1.workers.find((w) => w.id === other.id)!.restarts).toBe(1);
      expect(s1.workers.find((w) => w.id === busy.id)!.restarts).toBe(0);
      // Both serve again.
      const hello = helloFor("big.example.com");
      await Promise.all(Array.from({ length: 40 }, () => rawExchange(port, hello, { timeoutMs: 100 })));
      await waitFor(() => new Set(proxy.access().map((r) => r.worker)).size === 2, 5000, "both workers serving");
    } finally {
      await proxy.stop();
      backend.stop();
    }
  }, 60_000);

  test("five deaths within 60 s: a crash loop, the process exits non-zero", async () => {
    const dir = tempDir();
    const port = freePort();
    const crashFile = join(dir, "crash-worker");
    writeFileSync(crashFile, "0");
    const proxy = await startProxy("binary", workersToml(port, {}), {
      dir,
      env: { MC_PROXY_TEST_WORKER_CRASH: crashFile },
    });
    try {
      for (let i = 0; i < 5 && proxy.proc.exitCode === null; i++) {
        const before = proxy.records().filter((r) => r.msg === "worker died; its connections are lost").length;
        proxy.signal("SIGUSR2");
        await waitFor(
          () => proxy.records().filter((r) => r.msg === "worker died; its connections are lost").length > before,
          5000,
          `death ${i + 1}`,
        );
        if (i < 4)
          await waitFor(
            () => proxy.records().filter((r) => r.msg === "worker replaced").length === i + 1,
            5000,
            `replacement ${i + 1}`,
          );
      }
      expect(await proxy.exited).toBe(1);
      expect(proxy.records().some((r) => String(r.msg).startsWith("crash loop"))).toBe(true);
    } finally {
      await proxy.stop();
    }
  }, 60_000);

  test("SIGTERM with transfers in flight on both workers: all complete byte-exact, exit 0", async () => {
    const TOTAL = 16 * MiB;
    const backend = streamBackend(5, TOTAL);
    const dir = tempDir();
    const port = freePort();
    const proxy = await startProxy("binary", workersToml(port, { "big.example.com": backend.port }), { dir });
    try {
      const ds: Awaited<ReturnType<typeof download>>[] = [];
      // Open until both workers hold one (the kernel picks the worker).
      for (let i = 0; i < 20; i++) {
        ds.push(await download(port, "big.example.com", 3));
        await sleep(50);
        const s = await status(dir);
        if (s.workers.every((w) => w.active > 0)) break;
      }
      const s = await status(dir);
      expect(s.workers.every((w) => w.active > 0)).toBe(true);
      proxy.signal("SIGTERM");
      await waitFor(() => proxy.output.includes("shutting down"), 5000, "drain");
      expect((await rawExchange(port, helloFor("big.example.com"))).end).toBe("refused");
      await Promise.all(ds.map((d) => d.done));
      for (const d of ds) {
        expect(d.reader.received).toBe(TOTAL);
        expect(d.reader.digest()).toBe(streamHash(5, TOTAL));
      }
      expect(await proxy.exited).toBe(0);
      const recs = proxy.records();
      expect(recs[recs.length - 1]).toMatchObject({ msg: "stopped", connections_total: ds.length });
    } finally {
      await proxy.stop();
      backend.stop();
    }
  }, 90_000);

  test("SIGHUP flips a country verdict in both workers", async () => {
    const backend = okBackend();
    const dir = tempDir();
    const geo = join(dir, "geo.mmdb");
    writeFileSync(geo, writeMmdb([{ cidr: "127.0.0.0/8", record: { country_code: "ZZ" } }]));
    const port = freePort();
    const proxy = await startProxy(
      "binary",
      workersToml(
        port,
        { "app.example.com": backend.port },
        `[firewall]\ngeoip_db = "${geo}"\nblocked_countries = ["KP"]\n`,
      ),
      { dir },
    );
    try {
      const hello = helloFor("app.example.com");
      const many = () => Promise.all(Array.from({ length: 40 }, () => rawExchange(port, hello, { timeoutMs: 150 })));
      expect((await many()).every((r) => r.received.toString() === "ok")).toBe(true);
      writeFileSync(`${geo}.new`, writeMmdb([{ cidr: "127.0.0.0/8", record: { country_code: "KP" } }]));
      require("node:fs").renameSync(`${geo}.new`, geo);
      proxy.signal("SIGHUP");
      await waitFor(() => proxy.records().some((r) => r.msg === "GeoIP database reloaded"), 5000, "reload");
      const after = await many();
      expect(after.filter((r) => r.end !== "reset")).toEqual([]);
      await waitFor(
        () => proxy.access().filter((r) => r.outcome === "blocked_country").length === 40,
        5000,
        "40 blocked_country",
      );
      expect(
        new Set(
          proxy
            .access()
            .filter((r) => r.outcome === "blocked_country")
            .map((r) => r.worker),
        ).size,
      ).toBe(2);
    } finally {
      await proxy.stop();
      backend.stop();
    }
  }, 60_000);

  test("a second instance on the same address exits non-zero naming it; the first keeps serving all traffic", async () => {
    const backend = okBackend();
    const port = freePort();
    const proxy = await startProxy("binary", workersToml(port, { "app.example.com": backend.port }));
    try {
      const dir2 = tempDir();
      writeFileSync(join(dir2, "c.toml"), workersToml(port, { "app.example.com": backend.port }));
      const second = Bun.spawnSync([...command("binary"), "server", "-c", join(dir2, "c.toml")], {
        cwd: dir2,
        env: cleanEnv(),
        stdout: "pipe",
        stderr: "pipe",
      });
      expect(second.exitCode).not.toBe(0);
      expect(second.stderr.toString()).toContain(`127.0.0.1:${port}`);
      const rs = await Promise.all(
        Array.from({ length: 100 }, () => rawExchange(port, helloFor("app.example.com"), { timeoutMs: 150 })),
      );
      expect(rs.filter((r) => r.received.toString() !== "ok")).toEqual([]);
      expect(backend.connections).toBe(100);
    } finally {
      await proxy.stop();
      backend.stop();
    }
  }, 30_000);
});
