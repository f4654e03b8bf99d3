// Drains end (docs/POOLS.md "Drains end"): the compiled binary with two
// workers, real TLS clients (node:tls) held open through it to a real TLS
// backend, the changes made with the command line. A drained backend's
// connections close drain_timeout later with FIN, a removed route's too, a
// listener's max_connection_lifetime ends an idle connection at that age;
// with no drain_timeout nothing closes.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { testCert } from "../helpers/certs";
import { type Held, cli, hold, stillWorks } from "../helpers/held";
import { freePort, sleep, waitFor } from "../helpers/net";
import { type RunningProxy, startProxy, tempDir } from "../helpers/proxy";
import { type TlsBackend, tlsBackend } from "../helpers/tls";

/** A performance.now() time as ms since the epoch. */
const wall = (at: number) => performance.timeOrigin + at;

describe("drain_timeout and max_connection_lifetime (binary, 2 workers)", () => {
  let be: TlsBackend;
  let proxy: RunningProxy;
  let dir = "";
  let port = 0;
  let agedPort = 0;
  const open: Held[] = [];

  beforeAll(async () => {
    be = tlsBackend("be", testCert());
    dir = tempDir();
    port = freePort();
    agedPort = freePort();
    const route = (host: string, extra = "") =>
      `  [[listeners.routes]]\n  hostname = "${host}"\n  backend = "127.0.0.1:${be.port}"\n${extra}`;
    proxy = await startProxy(
      "binary",
      `[[listeners]]
addr = "127.0.0.1:${port}"
${route("drained.example.com", '  drain_timeout = "2s"\n')}
${route("other.example.com", '  drain_timeout = "2s"\n')}
${route("gone.example.com", '  drain_timeout = "1s"\n')}
${route("kept.example.com")}
[[listeners]]
addr = "127.0.0.1:${agedPort}"
max_connection_lifetime = "3s"
${route("aged.example.com")}
[grpc]
addr = "unix:admin.sock"
[proxy]
workers = 2
`,
      { dir },
    );
  });

  afterAll(async () => {
    for (const h of open) h.socket.destroy();
    await proxy?.stop();
    be?.stop();
  });

  const holdMany = async (n: number, at: number, name: string) => {
    const held: Held[] = [];
    for (let i = 0; i < n; i++) held.push(await hold(at, "127.0.0.1", [], name));
    open.push(...held);
    return held;
  };

  test("a drained backend: 20 held connections close with FIN 2-3 s later; another route's stay; backends list shows them", async () => {
    const drained = await holdMany(20, port, "drained.example.com");
    const others = await holdMany(3, port, "other.example.com");
    const addr = `127.0.0.1:${be.port}`;
    const r = await cli(
      ["backends", "drain", "-c", proxy.configFile, "--listener", `127.0.0.1:${port}`, "drained.example.com", addr],
      dir,
    );
    expect({ code: r.code, out: r.code === 0 ? "" : r.out }).toEqual({ code: 0, out: "" });
    // What is still open and when it closes.
    const list = await cli(
      ["backends", "list", "-c", proxy.configFile, "--listener", `127.0.0.1:${port}`, "drained.example.com", "--json"],
      dir,
    );
    expect(list.code).toBe(0);
    const b = JSON.parse(list.out)[0].route.backends[0];
    expect(Number(b.draining_connections)).toBe(20);
    const closesAt = Date.parse(b.closes_at);
    expect(Number(b.closes_at_unix_seconds)).toBe(Math.floor(closesAt / 1000));
    const text = await cli(
      ["backends", "list", "-c", proxy.configFile, "--listener", `127.0.0.1:${port}`, "drained.example.com"],
      dir,
    );
    expect(text.out).toContain(`draining=20 closing at ${b.closes_at}`);
    const drainedAt = closesAt - 2000;
    await waitFor(() => drained.every((h) => h.end !== null), 10_000, "the drained backend's connections closed");
    const after = drained.map((h) => wall(h.end!.at) - drainedAt);
    // FIN: a clean end, not a reset.
    expect(drained.map((h) => h.end!.code)).toEqual(drained.map(() => ""));
    expect(Math.min(...after)).toBeGreaterThanOrEqual(1900);
    expect(Math.max(...after)).toBeLessThan(4000);
    console.log(`closed ${Math.round(Math.min(...after))}-${Math.round(Math.max(...after))} ms after the drain`);
    for (const h of others) expect(h.end).toBeNull();
    expect(await stillWorks(others[0]!)).toBe(true);
    await waitFor(
      () => proxy.access().filter((x) => x.route === "drained.example.com" && x.closed_by === "drain").length === 20,
      5000,
      "20 access records closed_by drain",
    );
    for (const x of proxy.access().filter((x) => x.route === "drained.example.com"))
      expect(x).toMatchObject({ outcome: "ok", closed_by: "drain" });
    expect(
      new Set(
        proxy
          .access()
          .filter((x) => x.closed_by === "drain")
          .map((x) => x.worker),
      ),
    ).toEqual(new Set([0, 1]));
  }, 60_000);

  test("max_connection_lifetime = 3s (listener): an idle held connection ends at ~3 s with FIN", async () => {
    const [h] = await holdMany(1, agedPort, "aged.example.com");
    await waitFor(() => h!.end !== null, 10_000, "the aged connection closed");
    const age = h!.end!.at - h!.startedAt;
    expect(h!.end!.code).toBe("");
    expect(age).toBeGreaterThanOrEqual(2900);
    expect(age).toBeLessThan(4500);
    const rec = await proxy.waitAccess((x) => x.route === "aged.example.com");
    expect(rec).toMatchObject({ outcome: "ok", closed_by: "lifetime" });
  }, 60_000);

  test("a removed route's connections close after its drain_timeout (1s)", async () => {
    const gone = await holdMany(2, port, "gone.example.com");
    const started = performance.now();
    const r = await cli(
      ["routes", "remove", "-c", proxy.configFile, "--listener", `127.0.0.1:${port}`, "gone.example.com"],
      dir,
    );
    expect({ code: r.code, out: r.code === 0 ? "" : r.out }).toEqual({ code: 0, out: "" });
    await waitFor(() => gone.every((h) => h.end !== null), 10_000, "the removed route's connections closed");
    for (const h of gone) {
      expect(h.end!.code).toBe("");
      expect(h.end!.at - started).toBeGreaterThanOrEqual(950);
      expect(h.end!.at - r.at).toBeLessThan(3500);
    }
    const recs = proxy.access().filter((x) => x.route === "gone.example.com");
    for (const x of recs) expect(x.closed_by).toBe("drain");
  }, 60_000);

  test("drain_timeout 0 (the default): a drained backend's connections stay open", async () => {
    const kept = await holdMany(2, port, "kept.example.com");
    const r = await cli(
      [
        "backends",
        "drain",
        "-c",
        proxy.configFile,
        "--listener",
        `127.0.0.1:${port}`,
        "kept.example.com",
        `127.0.0.1:${be.port}`,
      ],
      dir,
    );
    expect({ code: r.code, out: r.code === 0 ? "" : r.out }).toEqual({ code: 0, out: "" });
    const list = await cli(
      ["backends", "list", "-c", proxy.configFile, "--listener", `127.0.0.1:${port}`, "kept.example.com", "--json"],
      dir,
    );
    const b = JSON.parse(list.out)[0].route.backends[0];
    expect(Number(b.draining_connections)).toBe(2);
    expect(b.closes_at).toBe("");
    await sleep(3000);
    for (const h of kept) expect(h.end).toBeNull();
    expect(await stillWorks(kept[0]!)).toBe(true);
  }, 60_000);
});
