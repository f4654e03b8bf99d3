// QUIC flows go through what TCP connections go through (docs/HTTP3.md
// "Backends, rules and drains"), in the compiled binary with real UDP
// sockets: a backend named by a host name or a template is resolved through
// the loop's cache (Debian's dnsmasq on a loopback port), every address
// checked by the destination guard before the UDP socket is connected to
// it; a firewall rule added at runtime ends the flows it blocks
// (closed_by=firewall), --keep-established keeps them; drain_timeout and
// max_connection_lifetime end flows (closed_by drain / lifetime).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Dnsmasq, haveDnsmasq } from "../helpers/dnsmasq";
import { cli } from "../helpers/held";
import { alpnExtension, clientHelloBody, handshake, sniExtension } from "../helpers/hello_builder";
import { freePort, sleep, waitFor } from "../helpers/net";
import { type LogRecord, type RunningProxy, startProxy, tempDir } from "../helpers/proxy";
import { cryptoFrame, padDatagram, sealInitial } from "../helpers/quic";

/** A UDP backend on `host` (and `port`, 0: any) that echoes every datagram, counting them. */
async function udpEcho(host: string, port = 0): Promise<{ port: number; got: number; close(): void }> {
  const b = { port: 0, got: 0, close: () => {} };
  const s = await Bun.udpSocket({
    hostname: host,
    port,
    binaryType: "uint8array",
    socket: {
      data(sock, d, p, addr) {
        b.got++;
        sock.send(d, p, addr);
      },
    },
  });
  b.port = s.port;
  b.close = () => s.close();
  return b;
}

/** A QUIC client on its own loopback address: its flow opened by an Initial for `host`, then short-header packets. */
async function client(from: string, host: string, i: number, port: number) {
  const c = { got: 0, close: () => {}, send: (_d: Uint8Array) => {} };
  const s = await Bun.udpSocket({
    hostname: from,
    binaryType: "uint8array",
    socket: { data: () => void c.got++ },
  });
  c.close = () => s.close();
  c.send = (d) => void s.send(d, port, "127.0.0.1");
  const dcid = Uint8Array.from([5, 5, 5, 5, 5, 5, i >> 8, i & 0xff]);
  const hello = handshake(clientHelloBody([sniExtension(host), alpnExtension("h3")]));
  c.send(padDatagram(sealInitial({ dcid, pn: 0, frames: cryptoFrame(0, hello) }), 1250));
  return c;
}

/** A 1-RTT packet's worth of bytes (short header): relayed unchanged on a routed flow. */
const SHORT = Uint8Array.from([0x41, 9, 9, 9, 9, 1, 2, 3, 4, 5, 6, 7, 8]);

/** Whether the flow is relayed now: a short-header packet goes to the backend and its echo comes back. */
async function relayed(c: Awaited<ReturnType<typeof client>>): Promise<boolean> {
  const before = c.got;
  for (let i = 0; i < 10; i++) {
    c.send(SHORT);
    await sleep(100);
    if (c.got > before) return true;
  }
  return false;
}

const byClient = (from: string) => (r: LogRecord) => String(r.client).startsWith(`${from}:`);

describe.skipIf(!haveDnsmasq())("QUIC backends named by a host name or a template (binary)", () => {
  let proxy: RunningProxy;
  let dns: Dnsmasq;
  let port = 0;
  const echoes: { port: number; got: number; close(): void }[] = [];

  beforeAll(async () => {
    const appPort = freePort();
    for (const host of ["127.0.0.11", "127.0.0.12"]) echoes.push(await udpEcho(host, appPort));
    dns = new Dnsmasq(60, {
      "one.svc.test": ["127.0.0.11"],
      "two.svc.test": ["127.0.0.12"],
      "local.svc.test": ["127.0.0.1"],
      "meta.svc.test": ["169.254.169.254"],
    });
    await dns.start();
    port = freePort();
    proxy = await startProxy(
      "binary",
      `[dns]
servers = ["${dns.server}"]

[[listeners]]
addr = "127.0.0.1:${port}"
protocol = "quic"
  [[listeners.routes]]
  hostname_pattern = '^(?<app>[a-z0-9-]{1,63})\\.apps\\.test$'
  backend = "{app}.svc.test:${appPort}"
  [[listeners.routes]]
  hostname_pattern = '^(?<app>[a-z0-9-]{1,63})\\.allowed\\.test$'
  backend = "{app}.svc.test:${appPort}"
  allow_destinations = ["127.0.0.0/8"]
  [[listeners.routes]]
  hostname = "named.test"
  backend = "two.svc.test:${appPort}"
  [[listeners.routes]]
  hostname = "missing.test"
  backend = "nothing.svc.test:${appPort}"
`,
    );
  });

  afterAll(async () => {
    await proxy?.stop();
    await dns?.stop();
    for (const e of echoes) e.close();
  });

  test("a templated route whose name resolves to loopback or link-local is refused (destination_denied), nothing sent", async () => {
    const got = echoes.map((e) => e.got);
    const a = await client("127.0.0.21", "local.apps.test", 1, port);
    const b = await client("127.0.0.22", "meta.apps.test", 2, port);
    const c = await client("127.0.0.23", "one.apps.test", 3, port);
    try {
      for (const [from, resolved] of [
        ["127.0.0.21", "127.0.0.1"],
        ["127.0.0.22", "169.254.169.254"],
        ["127.0.0.23", "127.0.0.11"],
      ] as const) {
        const r = await proxy.waitAccess(byClient(from), 10_000);
        expect(r).toMatchObject({ outcome: "destination_denied", resolved, listener: `127.0.0.1:${port}` });
      }
      expect(echoes.map((e) => e.got)).toEqual(got);
      expect(a.got + b.got + c.got).toBe(0);
    } finally {
      for (const x of [a, b, c]) x.close();
    }
  }, 30_000);

  test("allowed by the route's allow_destinations: relayed to the checked address, named in the record's resolved", async () => {
    const c = await client("127.0.0.24", "one.allowed.test", 4, port);
    try {
      await waitFor(() => echoes[0]!.got > 0, 10_000, "the Initial at one's backend");
      expect(await relayed(c)).toBe(true);
    } finally {
      c.close();
    }
    expect(echoes[1]!.got).toBe(0);
  }, 30_000);

  test("a backend written as a name resolves through [dns] servers; a name that does not exist is dns_failed", async () => {
    const c = await client("127.0.0.25", "named.test", 5, port);
    const m = await client("127.0.0.26", "missing.test", 6, port);
    try {
      await waitFor(() => echoes[1]!.got > 0, 10_000, "the Initial at two's backend");
      expect(await relayed(c)).toBe(true);
      const r = await proxy.waitAccess(byClient("127.0.0.26"), 10_000);
      expect(r).toMatchObject({ outcome: "dns_failed", backend: expect.stringContaining("nothing.svc.test:") });
    } finally {
      c.close();
      m.close();
    }
    proxy.signal("SIGTERM");
    await proxy.exited;
    const named = proxy.access().find(byClient("127.0.0.25"));
    expect(named).toMatchObject({ resolved: "127.0.0.12", sni: "named.test" });
    const allowed = proxy.access().find(byClient("127.0.0.24"));
    expect(allowed).toMatchObject({ resolved: "127.0.0.11", outcome: "shutdown" });
  }, 30_000);
});

describe("firewall rules, drain_timeout and max_connection_lifetime reach QUIC flows (binary)", () => {
  let proxy: RunningProxy;
  let echo: { port: number; got: number; close(): void };
  const local: { port: number; got: number; close(): void }[] = [];
  let dir = "";
  let port = 0;
  const open: { close(): void }[] = [];

  beforeAll(async () => {
    echo = await udpEcho("127.0.0.1");
    const localPort = freePort();
    for (const host of ["127.0.0.1", "::1"]) local.push(await udpEcho(host, localPort));
    dir = tempDir();
    port = freePort();
    const route = (host: string, extra = "") =>
      `  [[listeners.routes]]\n  hostname = "${host}"\n  backend = "127.0.0.1:${echo.port}"\n${extra}`;
    proxy = await startProxy(
      "binary",
      `[[listeners]]
addr = "127.0.0.1:${port}"
name = "h3"
protocol = "quic"
${route("app.example.com")}
${route("drained.example.com", '  drain_timeout = "2s"\n')}
${route("aged.example.com", '  max_connection_lifetime = "3s"\n')}
  [[listeners.routes]]
  hostname_pattern = '^(?<host>[a-z]+)\\.sni\\.test$'
  backend = "{host}:${localPort}"
[grpc]
addr = "unix:admin.sock"
[proxy]
quic_idle_timeout = "60s"
`,
      { dir },
    );
  });

  afterAll(async () => {
    for (const c of open) c.close();
    await proxy?.stop();
    echo?.close();
    for (const e of local) e.close();
  });

  const opened = async (from: string, host: string, i: number) => {
    const c = await client(from, host, i, port);
    open.push(c);
    expect(await relayed(c)).toBe(true);
    return c;
  };

  test("a template naming localhost (the system resolver: /etc/hosts) is refused, destination_denied; nothing sent", async () => {
    const c = await client("127.0.0.7", "localhost.sni.test", 15, port);
    open.push(c);
    const seen = () => proxy.access().some(byClient("127.0.0.7")) || local.some((e) => e.got > 0);
    await waitFor(seen, 10_000, "a record, or the Initial at the loopback backend");
    // Not relayed to the proxy's own host.
    expect(local.map((e) => e.got)).toEqual([0, 0]);
    expect(c.got).toBe(0);
    const rec = await proxy.waitAccess(byClient("127.0.0.7"), 10_000);
    expect(rec).toMatchObject({ outcome: "destination_denied", backend: `localhost:${local[0]!.port}` });
    expect(["127.0.0.1", "::1"]).toContain(String(rec.resolved));
  }, 30_000);

  test("an ip rule ends the blocked client's flow within 1 s (closed_by firewall); another client's flow stays", async () => {
    const blocked = await opened("127.0.0.2", "app.example.com", 10);
    const other = await opened("127.0.0.3", "app.example.com", 11);
    const r = await cli(["firewall", "add", "-c", proxy.configFile, "ip", "127.0.0.2"], dir);
    expect(r.code).toBe(0);
    const rec = await proxy.waitAccess(byClient("127.0.0.2"), 5000);
    // Seen in the log (written in batches) within 1 s of the command's exit.
    expect(performance.now() - r.at).toBeLessThan(1000);
    expect(rec).toMatchObject({ outcome: "blocked_ip", closed_by: "firewall", sni: "app.example.com" });
    // Its datagrams are no longer relayed; the other client's are.
    expect(await relayed(blocked)).toBe(false);
    expect(await relayed(other)).toBe(true);
    expect(proxy.output).toContain("firewall: connections the new rules block closed");
  }, 30_000);

  test("--keep-established: the flow stays", async () => {
    const kept = await opened("127.0.0.4", "app.example.com", 12);
    const r = await cli(["firewall", "add", "-c", proxy.configFile, "--keep-established", "ip", "127.0.0.4"], dir);
    expect(r.code).toBe(0);
    await sleep(1000);
    expect(await relayed(kept)).toBe(true);
    expect(proxy.access().filter(byClient("127.0.0.4"))).toEqual([]);
  }, 30_000);

  test("a drained backend's flow ends drain_timeout (2 s) later, closed_by drain; an old flow ends at max_connection_lifetime (3 s)", async () => {
    const aged = await opened("127.0.0.5", "aged.example.com", 13);
    const agedAt = performance.now();
    const drained = await opened("127.0.0.6", "drained.example.com", 14);
    const r = await cli(
      [
        "backends",
        "drain",
        "-c",
        proxy.configFile,
        "--listener",
        "h3",
        "drained.example.com",
        `127.0.0.1:${echo.port}`,
      ],
      dir,
    );
    expect(r.code).toBe(0);
    const rec = await proxy.waitAccess(byClient("127.0.0.6"), 6000);
    const after = performance.now() - r.at;
    expect(rec).toMatchObject({ outcome: "ok", closed_by: "drain" });
    expect(after).toBeGreaterThan(1500);
    expect(after).toBeLessThan(3500);
    expect(await relayed(drained)).toBe(false);
    const old = await proxy.waitAccess(byClient("127.0.0.5"), 6000);
    expect(old).toMatchObject({ outcome: "ok", closed_by: "lifetime" });
    const age = performance.now() - agedAt;
    expect(age).toBeGreaterThan(2500);
    expect(age).toBeLessThan(5500);
    expect(await relayed(aged)).toBe(false);
  }, 30_000);
});
