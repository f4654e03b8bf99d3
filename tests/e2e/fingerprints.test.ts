// The live top-fingerprints table (the compiled binary, two workers): after
// mixed traffic from real clients, ListFingerprints and `mc-proxy
// fingerprints` show each client's JA4 with its exact number of connections,
// summed over both workers, and how many a ja4 rule refused.
import { expect, test } from "bun:test";
import { AdminClient } from "../../src/cli/admin_client";
import type { FingerprintsReply } from "../../src/admin/messages";
import { unixGrpcConfig } from "../helpers/admin";
import { testCert } from "../helpers/certs";
import { freePort, waitFor } from "../helpers/net";
import { ensureCommands } from "../helpers/packages";
import { runCli, startProxy, tempDir } from "../helpers/proxy";
import { tlsBackend } from "../helpers/tls";

const HOST = "alpha.example.com";

test("mixed traffic from curl, openssl and Python: exact counts per fingerprint over both workers, blocked counted, the CLI shows the same", async () => {
  const missing = ensureCommands(["curl", "openssl", "python3"], ["curl", "openssl", "python3"]);
  if (missing !== null) return void console.warn(`SKIP fingerprints table test: ${missing}`);
  const be = tlsBackend("be", testCert());
  const port = freePort();
  const dir = tempDir();
  const proxy = await startProxy(
    "binary",
    `[[listeners]]\naddr = "127.0.0.1:${port}"\n  [[listeners.routes]]\n  hostname = "${HOST}"\n  backend = "127.0.0.1:${be.port}"\n[grpc]\naddr = "unix:admin.sock"\n[proxy]\nworkers = 2\n[fingerprints]\ntop = 100\nwindow = "5m"\n`,
    { dir },
  );
  const admin = new AdminClient(unixGrpcConfig(`${dir}/admin.sock`));
  const run = async (cmd: string[]) =>
    void (await Bun.spawn(cmd, { stdin: "ignore", stdout: "ignore", stderr: "ignore", timeout: 5000 }).exited);
  const clients: Record<string, () => Promise<void>> = {
    curl: () =>
      run(["curl", "-sk", "--max-time", "2", "--resolve", `${HOST}:${port}:127.0.0.1`, `https://${HOST}:${port}/`]),
    openssl: () => run(["openssl", "s_client", "-connect", `127.0.0.1:${port}`, "-servername", HOST, "-tls1_3"]),
    python: () =>
      run([
        "python3",
        "-c",
        `import socket,ssl\nc=ssl.create_default_context();c.check_hostname=False;c.verify_mode=ssl.CERT_NONE\ns=socket.create_connection(("127.0.0.1",${port}),timeout=2)\ntry: c.wrap_socket(s,server_hostname="${HOST}")\nexcept Exception: pass`,
      ]),
  };
  const counts: Record<string, number> = { curl: 24, openssl: 11, python: 5 };
  const cfg = `${dir}/mc-proxy.toml`;
  try {
    // Four at a time, so both workers take some of each client's connections.
    const fp: Record<string, string> = {};
    for (const [name, n] of Object.entries(counts)) {
      const before = proxy.access().length;
      for (let i = 0; i < n; i += 4)
        await Promise.all(Array.from({ length: Math.min(4, n - i) }, () => clients[name]!()));
      await waitFor(() => proxy.access().length >= before + n, 10_000, `${name}'s ${n} records`);
      const mine = proxy.access().slice(before);
      expect(mine.length).toBe(n);
      expect(new Set(mine.map((r) => r.ja4)).size).toBe(1);
      fp[name] = String(mine[0]!.ja4);
    }
    expect(new Set(proxy.access().map((r) => r.worker)).size).toBe(2);
    // Block openssl: 3 more of its connections are refused and counted as blocked.
    await admin.call("AddFirewallRule", { rule: { type: "FIREWALL_RULE_TYPE_JA4", value: fp.openssl } });
    const before = proxy.access().length;
    await Promise.all([clients.openssl!(), clients.openssl!(), clients.openssl!()]);
    await waitFor(() => proxy.access().length >= before + 3, 5000, "3 blocked records");
    expect(
      proxy
        .access()
        .slice(before)
        .map((r) => r.outcome),
    ).toEqual(["blocked_ja4", "blocked_ja4", "blocked_ja4"]);

    const r = await admin.call<FingerprintsReply>("ListFingerprints", {});
    expect(r).toMatchObject({ window_seconds: 300, capacity: 100, workers: 2 });
    const top = r.fingerprints.map((f) => ({
      ja4: f.ja4,
      connections: f.connections,
      blocked: f.blocked,
      error: f.error,
      networks: f.client_networks,
    }));
    expect(top).toEqual([
      { ja4: fp.curl!, connections: 24, blocked: 0, error: 0, networks: 1 },
      { ja4: fp.openssl!, connections: 14, blocked: 3, error: 0, networks: 1 },
      { ja4: fp.python!, connections: 5, blocked: 0, error: 0, networks: 1 },
    ]);
    for (const f of r.fingerprints) expect(f.last_seen_unix_ms).toBeGreaterThanOrEqual(f.first_seen_unix_ms);
    expect(
      (await admin.call<FingerprintsReply>("ListFingerprints", { limit: 1 })).fingerprints.map((f) => f.ja4),
    ).toEqual([fp.curl!]);
    const bad = await admin.call("ListFingerprints", { limit: 20_000 }).catch((e: Error) => e);
    expect(String(bad)).toContain("limit: 20000 must be 1-10000");

    // The CLI: the same numbers, as JSON and as a table.
    const json = runCli(["fingerprints", "-c", cfg, "--json"]);
    expect(json.code).toBe(0);
    expect((JSON.parse(json.out) as FingerprintsReply).fingerprints.map((f) => [f.ja4, f.connections])).toEqual([
      [fp.curl!, 24],
      [fp.openssl!, 14],
      [fp.python!, 5],
    ]);
    const human = runCli(["fingerprints", "-c", cfg, "--limit", "2"]);
    expect(human.code).toBe(0);
    const lines = human.out.trim().split("\n");
    expect(lines[0]).toBe("top fingerprints over the last 5m (2 workers, 100 places each)");
    expect(lines[1]).toMatch(/^JA4\s+CONNECTIONS\s+BLOCKED\s+NETWORKS\s+LAST SEEN$/);
    expect(lines[2]!.split(/\s+/).slice(0, 4)).toEqual([fp.curl!, "24", "0", "1"]);
    expect(lines[3]!.split(/\s+/).slice(0, 4)).toEqual([fp.openssl!, "14", "3", "1"]);
    expect(lines.length).toBe(4);
    expect(runCli(["fingerprints", "-c", cfg, "--limit", "x"]).code).toBe(2);
  } finally {
    admin.close();
    await proxy.stop();
    be.stop();
  }
}, 90_000);

test("[fingerprints] top = 0 turns the table off: ListFingerprints says so, and nothing is counted", async () => {
  const be = tlsBackend("be", testCert());
  const port = freePort();
  const dir = tempDir();
  const proxy = await startProxy(
    "binary",
    `[[listeners]]\naddr = "127.0.0.1:${port}"\n  [[listeners.routes]]\n  hostname = "${HOST}"\n  backend = "127.0.0.1:${be.port}"\n[grpc]\naddr = "unix:admin.sock"\n[fingerprints]\ntop = 0\n`,
    { dir },
  );
  const admin = new AdminClient(unixGrpcConfig(`${dir}/admin.sock`));
  try {
    const s = await Bun.connect({
      hostname: "127.0.0.1",
      port,
      tls: { serverName: HOST, rejectUnauthorized: false },
      socket: { data() {}, error() {} },
    });
    await waitFor(() => proxy.access().length > 0 || be.connections > 0, 5000, "a connection");
    s.end();
    const r = await admin.call<FingerprintsReply>("ListFingerprints", {});
    expect(r).toMatchObject({ capacity: 0, fingerprints: [] });
    const human = runCli(["fingerprints", "-c", `${dir}/mc-proxy.toml`]);
    expect(human.out.trim()).toBe("the fingerprint table is off ([fingerprints] top = 0)");
  } finally {
    admin.close();
    await proxy.stop();
    be.stop();
  }
}, 30_000);
