// JA4 in the access log, from real clients on this machine (the compiled
// binary): each client's fingerprint is the same on every connection, and
// different clients (TLS libraries and settings) get different ones.
import { expect, test } from "bun:test";
import { connect as tlsConnect } from "node:tls";
import { testCert } from "../helpers/certs";
import { freePort, sleep, waitFor } from "../helpers/net";
import { ensureCommands } from "../helpers/packages";
import { startProxy, tempDir } from "../helpers/proxy";
import { tlsBackend } from "../helpers/tls";

const HOST = "alpha.example.com";

test("curl, openssl (TLS 1.3 and 1.2), Python, node:tls, Bun, gnutls-cli and headless Chromium: a stable JA4 each, distinct between them", async () => {
  const missing = ensureCommands(["curl", "openssl", "python3"], ["curl", "openssl", "python3"]);
  // A real TLS server behind the proxy: every client finishes its handshake and leaves at once.
  const be = tlsBackend("be", testCert());
  const port = freePort();
  const proxy = await startProxy(
    "binary",
    `[[listeners]]\naddr = "127.0.0.1:${port}"\n  [[listeners.routes]]\n  hostname = "${HOST}"\n  backend = "127.0.0.1:${be.port}"\n[proxy]\nworkers = 2\n`,
  );
  const run = async (cmd: string[]) =>
    void (await Bun.spawn(cmd, { stdin: "ignore", stdout: "ignore", stderr: "ignore", timeout: 5000 }).exited);
  const clients: Record<string, () => Promise<void>> = {
    node: () =>
      new Promise<void>((resolve) => {
        const s = tlsConnect({
          host: "127.0.0.1",
          port,
          servername: HOST,
          rejectUnauthorized: false,
          ALPNProtocols: ["h2", "http/1.1"],
        });
        s.on("error", () => resolve());
        s.on("close", () => resolve());
        setTimeout(() => s.destroy(), 300);
      }),
    bun: async () => {
      try {
        const s = await Bun.connect({
          hostname: "127.0.0.1",
          port,
          tls: { serverName: HOST, rejectUnauthorized: false },
          socket: { data() {}, error() {} },
        });
        setTimeout(() => s.end(), 300);
      } catch {}
    },
  };
  if (missing === null) {
    clients.curl = () =>
      run(["curl", "-sk", "--max-time", "2", "--resolve", `${HOST}:${port}:127.0.0.1`, `https://${HOST}:${port}/`]);
    clients["openssl-1.3"] = () =>
      run(["openssl", "s_client", "-connect", `127.0.0.1:${port}`, "-servername", HOST, "-tls1_3"]);
    clients["openssl-1.2"] = () =>
      run(["openssl", "s_client", "-connect", `127.0.0.1:${port}`, "-servername", HOST, "-tls1_2"]);
    clients.python = () =>
      run([
        "python3",
        "-c",
        `import socket,ssl\nc=ssl.create_default_context();c.check_hostname=False;c.verify_mode=ssl.CERT_NONE\ns=socket.create_connection(("127.0.0.1",${port}),timeout=2)\ntry: c.wrap_socket(s,server_hostname="${HOST}")\nexcept Exception: pass`,
      ]);
  } else console.warn(`SKIP curl, openssl and python clients: ${missing}`);
  const gnutls = ensureCommands(["gnutls-cli"], ["gnutls-bin"]);
  if (gnutls === null)
    clients.gnutls = () => run(["gnutls-cli", "--insecure", "-p", String(port), "--sni-hostname", HOST, "127.0.0.1"]);
  else console.warn(`SKIP gnutls-cli client: ${gnutls}`);
  // Chromium permutes its extensions on every hello (BoringSSL): JA4 sorts them, so the fingerprint holds.
  const chromium = ensureCommands(["chromium"], ["chromium"]);
  if (chromium === null)
    clients.chromium = () =>
      run([
        "chromium",
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--ignore-certificate-errors",
        `--user-data-dir=${tempDir("mcproxy-chromium-")}`,
        `--host-resolver-rules=MAP ${HOST} 127.0.0.1`,
        "--dump-dom",
        `https://${HOST}:${port}/`,
      ]);
  else console.warn(`SKIP headless Chromium client: ${chromium}`);
  try {
    const got: Record<string, string[]> = {};
    for (const [name, go] of Object.entries(clients)) {
      for (let i = 0; i < 3; i++) {
        const before = proxy.access().length;
        await go();
        await waitFor(() => proxy.access().length > before, 5000, `${name}'s access record`);
        // A client may open more than one connection in a run (Chromium may resume its session on a second one: a
        // pre_shared_key extension more, another JA4); records are written at each connection's end, so the run's
        // records are read once the proxy is quiet and the run's first hello is the connection that started first.
        for (let i = 0, seen = -1, quietFor = 0; quietFor < 800 && i < 50; i++) {
          const n = proxy.access().length;
          quietFor = n === seen ? quietFor + 100 : 0;
          seen = n;
          await sleep(100);
        }
        const started = (r: Record<string, unknown>) => Date.parse(String(r.time)) - Number(r.duration_ms);
        const first = proxy
          .access()
          .slice(before)
          .reduce((a, b) => (started(b) < started(a) ? b : a));
        (got[name] ??= []).push(String(first.ja4));
      }
    }
    const one: Record<string, string> = {};
    for (const [name, fps] of Object.entries(got)) {
      expect({ name, distinct: new Set(fps).size }).toEqual({ name, distinct: 1 });
      expect(fps[0]).toMatch(/^t1[23]d\d{4}[0-9a-z]{2}_[0-9a-f]{12}_[0-9a-f]{12}$/);
      one[name] = fps[0]!;
    }
    expect(new Set(Object.values(one)).size).toBe(Object.keys(one).length);
    if (missing === null) {
      expect(one["openssl-1.2"]!.slice(1, 3)).toBe("12");
      expect(one["openssl-1.3"]!.slice(1, 3)).toBe("13");
    }
    // Chrome's cipher list is the same in every version since 2020: its sorted-cipher hash is FoxIO's well-known 8daaf6152771.
    if (one.chromium !== undefined) expect(one.chromium.split("_")[1]).toBe("8daaf6152771");
    console.log(one);
  } finally {
    await proxy.stop();
    be.stop();
  }
}, 60_000);

test("block a real client's fingerprint at runtime (workers = 2): RST from the next connection on every worker, others unaffected; removed, it works; a pattern blocks a family", async () => {
  const missing = ensureCommands(["curl", "openssl"], ["curl", "openssl"]);
  if (missing !== null) return void console.warn(`SKIP ja4 blocking test: ${missing}`);
  const be = tlsBackend("be", testCert());
  const port = freePort();
  const dir = (await import("../helpers/proxy")).tempDir();
  const proxy = await startProxy(
    "binary",
    `[[listeners]]\naddr = "127.0.0.1:${port}"\n  [[listeners.routes]]\n  hostname = "${HOST}"\n  backend = "127.0.0.1:${be.port}"\n[grpc]\naddr = "unix:admin.sock"\n[proxy]\nworkers = 2\n`,
    { dir },
  );
  const { AdminClient } = await import("../../src/cli/admin_client");
  const { unixGrpcConfig } = await import("../helpers/admin");
  const admin = new AdminClient(unixGrpcConfig(`${dir}/admin.sock`));
  const curl = async () => {
    const p = Bun.spawn(
      ["curl", "-sk", "--max-time", "2", "--resolve", `${HOST}:${port}:127.0.0.1`, `https://${HOST}:${port}/`],
      { stdout: "pipe", stderr: "ignore" },
    );
    const out = await new Response(p.stdout).text();
    await p.exited;
    return out;
  };
  // openssl's own record: the workers' records of earlier curls may still be on their way.
  let curlFp = "";
  const openssl = async (v: "-tls1_2" | "-tls1_3") => {
    const before = proxy.access().length;
    await Bun.spawn(["openssl", "s_client", "-connect", `127.0.0.1:${port}`, "-servername", HOST, v], {
      stdin: "ignore",
      stdout: "ignore",
      stderr: "ignore",
      timeout: 5000,
    }).exited;
    const mine = () =>
      proxy
        .access()
        .slice(before)
        .find((r) => r.ja4 !== curlFp && String(r.ja4).startsWith(v === "-tls1_2" ? "t12" : "t13"));
    await waitFor(() => mine() !== undefined, 5000, "openssl's record");
    return String(mine()!.outcome);
  };
  const rule = (value: string) => ({ rule: { type: "FIREWALL_RULE_TYPE_JA4", value } });
  try {
    expect(await curl()).toBe("hello from be\n");
    await waitFor(() => proxy.access().length > 0, 5000, "curl's record");
    const fp = String(proxy.access()[0]!.ja4);
    curlFp = fp;
    await admin.call("AddFirewallRule", rule(fp));
    const t0 = Date.now();
    const blocked = await Promise.all(Array.from({ length: 8 }, () => curl()));
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(blocked).toEqual(Array(8).fill(""));
    await waitFor(
      () => proxy.access().filter((r) => r.outcome === "blocked_ja4").length === 8,
      5000,
      "8 blocked_ja4 records",
    );
    const refused = proxy.access().filter((r) => r.outcome === "blocked_ja4");
    expect(new Set(refused.map((r) => r.worker)).size).toBe(2);
    expect(new Set(refused.map((r) => r.ja4))).toEqual(new Set([fp]));
    expect(refused.every((r) => r.backend === "" && r.route === "")).toBe(true);
    // Another client (another fingerprint) is not touched.
    expect(await openssl("-tls1_3")).toBe("ok");
    await admin.call("RemoveFirewallRule", rule(fp));
    expect(await curl()).toBe("hello from be\n");
    // A pattern: every TLS 1.2 client.
    await admin.call("AddFirewallRule", rule("t12*_*_*"));
    expect(await openssl("-tls1_2")).toBe("blocked_ja4");
    expect(await openssl("-tls1_3")).toBe("ok");
    expect(await curl()).toBe("hello from be\n");
    const listed = await admin.call<{ rules: { type: string; value: string }[] }>("GetFirewallRules");
    expect(listed.rules).toEqual([{ type: "FIREWALL_RULE_TYPE_JA4", value: "t12*_*_*" }]);
  } finally {
    admin.close();
    await proxy.stop();
    be.stop();
  }
}, 60_000);
