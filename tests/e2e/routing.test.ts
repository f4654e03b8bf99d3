// End to end: the real proxy (source and compiled binary) routes real TLS
// clients by SNI to real TLS backends, and refuses what it must with a RST.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { testCert } from "../helpers/certs";
import { writeMmdb } from "../helpers/mmdb_writer";
import { freePort, rawExchange, sleep } from "../helpers/net";
import { MODES, type RunningProxy, startProxy, tempDir } from "../helpers/proxy";
import { bodyOf, type TlsBackend, tlsBackend, tlsGet } from "../helpers/tls";
import { helloFor } from "../helpers/hello_builder";

const hasOpenssl = Bun.which("openssl") !== null;
const hasCurl = Bun.which("curl") !== null;

describe.each(MODES)("routing (%s)", (mode) => {
  const cert = testCert();
  let alpha: TlsBackend, beta: TlsBackend, fallback: TlsBackend;
  let proxy: RunningProxy;
  let portA = 0;
  let portB = 0;

  beforeAll(async () => {
    alpha = tlsBackend("alpha", cert);
    beta = tlsBackend("beta", cert);
    fallback = tlsBackend("default", cert);
    const dir = tempDir();
    writeFileSync(
      join(dir, "geo.mmdb"),
      writeMmdb([{ cidr: "127.0.0.5/32", record: { country: { iso_code: "KP" } } }]),
    );
    portA = freePort();
    portB = freePort();
    proxy = await startProxy(
      mode,
      `
[[listeners]]
addr = "127.0.0.1:${portA}"
  [[listeners.routes]]
  hostname = "alpha.example.com"
  backend = "127.0.0.1:${alpha.port}"
  [[listeners.routes]]
  hostname = "*.example.com"
  backend = "127.0.0.1:${beta.port}"

[[listeners]]
addr = "127.0.0.1:${portB}"
default_backend = "127.0.0.1:${fallback.port}"

[firewall]
geoip_db = "geo.mmdb"
blocked_ips = ["127.0.0.2"]
blocked_cidrs = ["127.0.0.128/25"]
blocked_countries = ["KP"]
`,
      { dir },
    );
  });

  afterAll(async () => {
    await proxy?.stop();
    for (const b of [alpha, beta, fallback]) b?.stop();
  });

  test("node tls: exact SNI reaches alpha, a wildcard name reaches beta", async () => {
    const a = await tlsGet(portA, "alpha.example.com", cert, { alpn: ["http/1.1"] });
    expect(a.error).toBeNull();
    expect(bodyOf(a)).toBe("hello from alpha\n");
    const b = await tlsGet(portA, "beta.example.com", cert);
    expect(bodyOf(b)).toBe("hello from beta\n");
    const rec = await proxy.waitAccess((r) => r.sni === "alpha.example.com");
    expect(rec.outcome).toBe("ok");
    expect(rec.backend).toBe(`127.0.0.1:${alpha.port}`);
    expect(rec.alpn).toEqual(["http/1.1"]);
    expect(rec.bytes_in as number).toBeGreaterThan(0);
    expect(rec.bytes_out as number).toBeGreaterThan(0);
    expect(rec.listener).toBe(`127.0.0.1:${portA}`);
    for (const k of ["time", "client", "hello_ms", "connect_ms", "duration_ms", "closed_by"])
      expect(rec).toHaveProperty(k);
  });

  test("bun's own fetch (TLS client) reaches alpha through the proxy", async () => {
    // Bun's fetch cannot be pointed at another IP for a name, so use the raw bun tls socket.
    const got = await new Promise<string>((resolve, reject) => {
      let text = "";
      void Bun.connect({
        hostname: "127.0.0.1",
        port: portA,
        tls: { serverName: "alpha.example.com", ca: cert.cert },
        socket: {
          open(s) {
            s.write("GET / HTTP/1.1\r\nHost: alpha.example.com\r\n\r\n");
          },
          data(_s, d) {
            text += d.toString();
          },
          close() {
            resolve(text);
          },
          connectError(_s, e) {
            reject(e);
          },
        },
      });
    });
    expect(got).toContain("hello from alpha");
  });

  test.skipIf(!hasOpenssl)("openssl s_client reaches beta by SNI", async () => {
    const p = Bun.spawn(
      [
        "openssl",
        "s_client",
        "-connect",
        `127.0.0.1:${portA}`,
        "-servername",
        "beta.example.com",
        "-quiet",
        "-CAfile",
        cert.certFile,
      ],
      {
        stdin: new TextEncoder().encode("GET / HTTP/1.1\r\nHost: beta.example.com\r\n\r\n"),
        stdout: "pipe",
        stderr: "pipe",
      },
    );
    const timer = setTimeout(() => p.kill(), 5000);
    const out = await new Response(p.stdout).text();
    clearTimeout(timer);
    expect(out).toContain("hello from beta");
  });

  test.skipIf(!hasCurl)("curl reaches alpha by SNI", async () => {
    // Async spawn: the backends live in this process and must keep running.
    const p = Bun.spawn(
      [
        "curl",
        "-sS",
        "--max-time",
        "5",
        "--cacert",
        cert.certFile,
        "--resolve",
        `alpha.example.com:${portA}:127.0.0.1`,
        `https://alpha.example.com:${portA}/`,
      ],
      {
        stdout: "pipe",
        stderr: "pipe",
      },
    );
    expect(await new Response(p.stdout).text()).toBe("hello from alpha\n");
  });

  test("unknown SNI: the client gets ECONNRESET and no backend sees a connection", async () => {
    const before = alpha.connections + beta.connections + fallback.connections;
    const r = await tlsGet(portA, "nope.other.org", cert);
    expect(r.error).toBe("ECONNRESET");
    expect(r.body).toBe("");
    await proxy.waitAccess((x) => x.sni === "nope.other.org" && x.outcome === "no_route");
    expect(alpha.connections + beta.connections + fallback.connections).toBe(before);
  });

  test("the bare suffix of a wildcard does not match it", async () => {
    const r = await tlsGet(portA, "example.com", cert);
    expect(r.error).toBe("ECONNRESET");
  });

  test("blocked IP (client bound to 127.0.0.2): RST before any byte is sent", async () => {
    const r = await rawExchange(portA, null, { localAddress: "127.0.0.2" });
    expect(r.end).toBe("reset");
    expect(r.received.length).toBe(0);
    const t = await tlsGet(portA, "alpha.example.com", cert, { localAddress: "127.0.0.2" });
    expect(t.error).toBe("ECONNRESET");
    const rec = await proxy.waitAccess((x) => x.outcome === "blocked_ip");
    expect(String(rec.client)).toStartWith("127.0.0.2:");
  });

  test("blocked CIDR (127.0.0.128/25) → RST", async () => {
    const r = await rawExchange(portA, null, { localAddress: "127.0.0.200" });
    expect(r.end).toBe("reset");
    await proxy.waitAccess((x) => x.outcome === "blocked_cidr");
  });

  test("blocked country (127.0.0.5 is KP in the test database) → RST; a neighbour passes", async () => {
    const r = await tlsGet(portA, "alpha.example.com", cert, { localAddress: "127.0.0.5" });
    expect(r.error).toBe("ECONNRESET");
    await proxy.waitAccess((x) => x.outcome === "blocked_country");
    const ok = await tlsGet(portA, "alpha.example.com", cert, { localAddress: "127.0.0.6" });
    expect(bodyOf(ok)).toBe("hello from alpha\n");
  });

  test("no SNI: RST where there is no default_backend, the default backend where there is", async () => {
    const none = await tlsGet(portA, null, cert);
    expect(none.error).toBe("ECONNRESET");
    await proxy.waitAccess((x) => x.outcome === "no_sni");
    const viaDefault = await tlsGet(portB, null, cert);
    expect(bodyOf(viaDefault)).toBe("hello from default\n");
  });

  test("unknown SNI on a listener with a default backend goes to the default", async () => {
    const r = await tlsGet(portB, "whatever.example.net", cert);
    expect(bodyOf(r)).toBe("hello from default\n");
  });

  test("not TLS (an HTTP request) → RST with no reply", async () => {
    const r = await rawExchange(portA, new TextEncoder().encode("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
    expect(r.end).toBe("reset");
    expect(r.received.length).toBe(0);
    await proxy.waitAccess((x) => x.outcome === "not_tls");
  });

  test("a hello sent one byte at a time is still routed", async () => {
    const hello = helloFor("alpha.example.com");
    const got = await new Promise<number>((resolve) => {
      const before = alpha.connections;
      const s = require("node:net").createConnection({ host: "127.0.0.1", port: portA });
      s.setNoDelay(true);
      s.on("connect", async () => {
        for (const b of hello) {
          s.write(Buffer.from([b]));
          await sleep(1);
        }
        await sleep(200);
        resolve(alpha.connections - before);
        s.destroy();
      });
    });
    expect(got).toBe(1);
  });
});

describe.each(MODES)("rate limit (%s)", (mode) => {
  test("the (N+1)th connection from one IP within the window is reset", async () => {
    const cert = testCert();
    const alpha = tlsBackend("alpha", cert);
    const port = freePort();
    const proxy = await startProxy(
      mode,
      `
[[listeners]]
addr = "127.0.0.1:${port}"
  [[listeners.routes]]
  hostname = "alpha.example.com"
  backend = "127.0.0.1:${alpha.port}"
[firewall]
rate_limit = 3
rate_window = "30s"
`,
    );
    try {
      for (let i = 0; i < 3; i++) {
        const r = await tlsGet(port, "alpha.example.com", cert, { localAddress: "127.0.0.9" });
        expect(bodyOf(r)).toBe("hello from alpha\n");
      }
      const over = await tlsGet(port, "alpha.example.com", cert, { localAddress: "127.0.0.9" });
      expect(over.error).toBe("ECONNRESET");
      await proxy.waitAccess((x) => x.outcome === "rate_limited");
      // Another IP has its own budget.
      const other = await tlsGet(port, "alpha.example.com", cert, { localAddress: "127.0.0.10" });
      expect(bodyOf(other)).toBe("hello from alpha\n");
    } finally {
      await proxy.stop();
      alpha.stop();
    }
  });
});
