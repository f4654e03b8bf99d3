// A firewall rule added at runtime reaches the connections already open
// (docs/SECURITY.md "Rules reach established connections"): the compiled
// binary with two workers, real TLS clients (node:tls) held open through it to
// a real TLS backend, each bound to its own loopback address, and the rule
// added with the command line (`mc-proxy firewall add`).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { AdminClient } from "../../src/cli/admin_client";
import { unixGrpcConfig } from "../helpers/admin";
import { testCert } from "../helpers/certs";
import { HELD_HOST as HOST, type Held, cli, hold, stillWorks } from "../helpers/held";
import { freePort, sleep, waitFor } from "../helpers/net";
import { type LogRecord, type RunningProxy, startProxy, tempDir } from "../helpers/proxy";
import { type TlsBackend, tlsBackend } from "../helpers/tls";

/** Workers holding at least one connection now (GetStatus). */
async function busyWorkers(admin: AdminClient): Promise<number> {
  const s = await admin.call<{ workers: { active: number }[] }>("GetStatus");
  return s.workers.filter((w) => Number(w.active) > 0).length;
}

describe("a rule added at runtime closes the open connections it blocks (binary, 2 workers)", () => {
  let be: TlsBackend;
  let proxy: RunningProxy;
  let admin: AdminClient;
  let dir = "";
  let port = 0;
  const open: Held[] = [];

  beforeAll(async () => {
    be = tlsBackend("be", testCert());
    dir = tempDir();
    port = freePort();
    proxy = await startProxy(
      "binary",
      `[[listeners]]
addr = "127.0.0.1:${port}"
  [[listeners.routes]]
  hostname = "${HOST}"
  backend = "127.0.0.1:${be.port}"
[grpc]
addr = "unix:admin.sock"
[proxy]
workers = 2
`,
      { dir },
    );
    admin = new AdminClient(unixGrpcConfig(join(dir, "admin.sock")));
  });

  afterAll(async () => {
    for (const h of open) h.socket.destroy();
    admin?.close();
    await proxy?.stop();
    be?.stop();
  });

  /** Connections from `from` until both workers hold one of them (SO_REUSEPORT spreads them; 40 at most). */
  const holdOnBothWorkers = async (from: string, alpn?: string[]): Promise<Held[]> => {
    const held: Held[] = [];
    for (let i = 0; i < 40 && (held.length < 2 || (await busyWorkers(admin)) < 2); i++) {
      const h = await hold(port, from, alpn);
      held.push(h);
      open.push(h);
    }
    expect(await busyWorkers(admin)).toBe(2);
    return held;
  };

  /** The access records matching `pred`, once there are `n` (the log is written in batches). */
  const records = async (pred: (r: LogRecord) => boolean, n: number): Promise<LogRecord[]> => {
    await waitFor(() => proxy.access().filter(pred).length >= n, 5000, `${n} access records`);
    const recs = proxy.access().filter(pred);
    expect(recs.length).toBe(n);
    return recs;
  };

  /** Every one of `held` reset within 1 s of the command's exit. */
  const expectReset = async (held: Held[], addedAt: number) => {
    await waitFor(() => held.every((h) => h.end !== null), 5000, "the blocked clients' resets");
    for (const h of held) {
      expect(h.end!.code).toBe("ECONNRESET");
      expect(h.end!.at - addedAt).toBeLessThan(1000);
    }
  };

  test("ip: every connection from 127.0.0.2 on both workers gets RST within 1 s; 127.0.0.3's stays", async () => {
    const blocked = await holdOnBothWorkers("127.0.0.2");
    const other = await hold(port, "127.0.0.3");
    open.push(other);
    const r = await cli(["firewall", "add", "-c", proxy.configFile, "ip", "127.0.0.2"], dir);
    expect(r.code).toBe(0);
    await expectReset(blocked, r.at);
    const recs = await records((x) => String(x.client).startsWith("127.0.0.2:"), blocked.length);
    for (const x of recs) expect(x).toMatchObject({ outcome: "blocked_ip", closed_by: "firewall" });
    expect(new Set(recs.map((x) => x.worker))).toEqual(new Set([0, 1]));
    expect(await stillWorks(other)).toBe(true);
    // New connections from it are refused as before.
    await expect(hold(port, "127.0.0.2")).rejects.toThrow();
    expect(proxy.output).toContain("firewall: connections the new rules block closed");
  }, 60_000);

  test("cidr: 127.0.0.4/30 resets 127.0.0.5's connections; 127.0.0.9's stays", async () => {
    const blocked = await holdOnBothWorkers("127.0.0.5");
    const other = await hold(port, "127.0.0.9");
    open.push(other);
    const r = await cli(["firewall", "add", "-c", proxy.configFile, "cidr", "127.0.0.4/30"], dir);
    expect(r.code).toBe(0);
    await expectReset(blocked, r.at);
    const recs = await records((x) => String(x.client).startsWith("127.0.0.5:"), blocked.length);
    for (const x of recs) expect(x).toMatchObject({ outcome: "blocked_cidr", closed_by: "firewall" });
    expect(await stillWorks(other)).toBe(true);
  }, 60_000);

  test("ja4: the fingerprint read from a client's access record resets that client's connections; another client's stays", async () => {
    // A first connection of the same client, closed: its record names its JA4.
    const probe = await hold(port, "127.0.0.10");
    probe.socket.destroy();
    const rec = await proxy.waitAccess((x) => String(x.client).startsWith("127.0.0.10:"));
    const fp = String(rec.ja4);
    expect(fp).toMatch(/^t13d/);
    const blocked = await holdOnBothWorkers("127.0.0.10");
    // Another client: no ALPN, so another fingerprint (same address range as the blocked ones would not matter).
    const other = await hold(port, "127.0.0.11", []);
    open.push(other);
    const r = await cli(["firewall", "add", "-c", proxy.configFile, "ja4", fp], dir);
    expect(r.code).toBe(0);
    await expectReset(blocked, r.at);
    const recs = await records(
      (x) => String(x.client).startsWith("127.0.0.10:") && x.closed_by === "firewall",
      blocked.length,
    );
    for (const x of recs) expect(x).toMatchObject({ outcome: "blocked_ja4", ja4: fp });
    expect(await stillWorks(other)).toBe(true);
  }, 60_000);

  test("--keep-established: nothing closes, new connections are refused", async () => {
    // Not the fingerprint the ja4 test blocked: another ALPN list.
    const kept = await holdOnBothWorkers("127.0.0.12", ["http/1.1"]);
    const r = await cli(["firewall", "add", "-c", proxy.configFile, "--keep-established", "ip", "127.0.0.12"], dir);
    expect(r.code).toBe(0);
    await expect(hold(port, "127.0.0.12", ["http/1.1"])).rejects.toThrow();
    await proxy.waitAccess((x) => String(x.client).startsWith("127.0.0.12:") && x.outcome === "blocked_ip");
    await sleep(1000);
    for (const h of kept) expect(h.end).toBeNull();
    expect(await stillWorks(kept[0]!)).toBe(true);
    expect(
      proxy.access().filter((x) => x.closed_by === "firewall" && String(x.client).startsWith("127.0.0.12:")),
    ).toEqual([]);
    // A later rule does not close what an earlier kept rule already blocked.
    const more = await cli(["firewall", "add", "-c", proxy.configFile, "cidr", "127.0.0.12/32"], dir);
    expect(more.code).toBe(0);
    await sleep(500);
    for (const h of kept.slice(1)) expect(h.end).toBeNull();
  }, 60_000);
});
