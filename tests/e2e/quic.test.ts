// QUIC through a UDP listener (the compiled binary): real HTTP/3 between
// headless Chromium and Caddy routed by name; Initial datagrams made here,
// reordered, repeated, from a blocked address, from a client that moves;
// a flood of spoofed-source Initials while a real client connects.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { udp } from "bun";
import { closeSync, openSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { testCert } from "../helpers/certs";
import { alpnExtension, clientHelloBody, handshake, paddingExtension, sniExtension } from "../helpers/hello_builder";
import { freePort, sleep, waitFor } from "../helpers/net";
import { ensureCommands } from "../helpers/packages";
import { BINARY, RSS_IS_LIVE, type RunningProxy, cleanEnv, startProxy, tempDir } from "../helpers/proxy";
import { cryptoFrame, padDatagram, sealInitial } from "../helpers/quic";

/** A TCP listener and a quic listener on the same address sharing its routes. */
function quicConfig(port: number, routes: Record<string, number>, extra = ""): string {
  let t = `[[listeners]]\naddr = "127.0.0.1:${port}"\n`;
  for (const [h, p] of Object.entries(routes))
    t += `  [[listeners.routes]]\n  hostname = "${h}"\n  backend = "127.0.0.1:${p}"\n`;
  return `${t}[[listeners]]\naddr = "127.0.0.1:${port}"\nprotocol = "quic"\n${extra}`;
}

describe("HTTP/3 through mc-proxy: headless Chromium → mc-proxy (UDP) → Caddy", () => {
  let missing: string | null = null;
  let caddy: ReturnType<typeof Bun.spawn> | null = null;
  let proxy: RunningProxy | null = null;
  let port = 0;
  let spki = "";
  const [pa, pb] = [freePort(), freePort()];
  const dir = tempDir("mcproxy-h3-");

  beforeAll(async () => {
    missing = ensureCommands(["caddy", "chromium", "openssl"], ["caddy", "chromium", "openssl"]);
    if (missing !== null) return;
    const cert = testCert();
    writeFileSync(
      join(dir, "Caddyfile"),
      `{\n  admin off\n  auto_https off\n  storage file_system ${dir}/caddy-data\n  servers {\n    protocols h1 h2 h3\n  }\n}\n` +
        [
          ["alpha", pa],
          ["beta", pb],
        ]
          // The page says which protocol Caddy saw, and which one Chromium's navigation used (nextHopProtocol).
          .map(
            ([n, p]) =>
              `https://${n}.example.com:${p} {\n  bind 127.0.0.1\n  tls ${cert.certFile} ${cert.keyFile}\n  header Content-Type text/html\n` +
              `  respond \`<p>hello from ${n} over {http.request.proto}</p><script>document.body.insertAdjacentHTML("beforeend", "<p id=nh>" + performance.getEntriesByType("navigation")[0].nextHopProtocol + "</p>")</script>\`\n}\n`,
          )
          .join(""),
    );
    caddy = Bun.spawn(["caddy", "run", "--config", join(dir, "Caddyfile"), "--adapter", "caddyfile"], {
      cwd: dir,
      env: { ...process.env, HOME: dir, XDG_DATA_HOME: dir, XDG_CONFIG_HOME: dir },
      stdout: "ignore",
      stderr: "ignore",
    });
    const der = Bun.spawnSync([
      "sh",
      "-c",
      `openssl x509 -in ${cert.certFile} -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64`,
    ]);
    spki = der.stdout.toString().trim();
    port = freePort();
    proxy = await startProxy(
      "binary",
      quicConfig(port, { "alpha.example.com": pa, "beta.example.com": pb }, `[proxy]\nquic_idle_timeout = "2s"\n`),
    );
    await sleep(500);
  });

  afterAll(async () => {
    await proxy?.stop();
    caddy?.kill();
  });

  /** Chromium forced onto QUIC for host:port, trusting the test certificate by its key; the page's text, or "" when it did not load. */
  async function chromium(host: string): Promise<string> {
    const p = Bun.spawn(
      [
        "chromium",
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        `--user-data-dir=${tempDir("mcproxy-chromium-")}`,
        "--enable-quic",
        `--origin-to-force-quic-on=${host}:${port}`,
        `--host-resolver-rules=MAP ${host} 127.0.0.1`,
        `--ignore-certificate-errors-spki-list=${spki}`,
        "--dump-dom",
        `https://${host}:${port}/`,
      ],
      { stdout: "pipe", stderr: "ignore", timeout: 20_000 },
    );
    const out = await new Response(p.stdout).text();
    await p.exited;
    const hello = /hello from [^<]*/.exec(out)?.[0];
    // The element the page's script added (serialized with quotes; the script's own text has none).
    return hello === undefined ? "" : `${hello}; next hop ${/<p id="nh">([^<]*)</.exec(out)?.[1] ?? "?"}`;
  }

  test("two names load over HTTP/3 from their own Caddy; a third name gets nothing; each flow is in the access log with its SNI and bytes", async () => {
    if (missing !== null) return void console.warn(`SKIP HTTP/3 test: ${missing}`);
    expect(await chromium("alpha.example.com")).toBe("hello from alpha over HTTP/3.0; next hop h3");
    expect(await chromium("beta.example.com")).toBe("hello from beta over HTTP/3.0; next hop h3");
    expect(await chromium("gamma.example.com")).toBe("");
    // Flows end at quic_idle_timeout (2 s): then their records are written.
    await waitFor(
      () => proxy!.access().filter((r) => r.outcome === "ok").length >= 2,
      10_000,
      "the two flows' records",
    );
    const quic = proxy!.access().filter((r) => r.listener === `127.0.0.1:${port}/quic`);
    const ok = quic.filter((r) => r.outcome === "ok");
    expect(ok.map((r) => r.sni).sort()).toEqual(["alpha.example.com", "beta.example.com"]);
    for (const r of ok) {
      expect(r.backend).toBe(`127.0.0.1:${r.sni === "alpha.example.com" ? pa : pb}`);
      expect(r.bytes_in as number).toBeGreaterThan(2400);
      expect(r.bytes_out as number).toBeGreaterThan(1000);
      expect(String(r.ja4)).toMatch(/^q13d\d{4}h3_[0-9a-f]{12}_[0-9a-f]{12}$/);
      expect(r.alpn).toEqual(["h3"]);
    }
    const refused = quic.filter((r) => r.sni === "gamma.example.com");
    expect(refused.length).toBeGreaterThan(0);
    expect(refused.every((r) => r.outcome === "no_route" && r.backend === "")).toBe(true);
    // Chromium's post-quantum hello (X25519MLKEM768) does not fit one Initial: its flow read two datagrams or more before routing.
    expect(refused[0]!.bytes_in as number).toBeGreaterThanOrEqual(2400);
    console.log("HTTP/3 flows:", ok.map((r) => `${r.sni} in=${r.bytes_in} out=${r.bytes_out} ja4=${r.ja4}`).join("; "));
  }, 90_000);
});

/** A UDP socket bound to `host` that collects what it receives. */
async function udpClient(host = "127.0.0.1"): Promise<{ sock: udp.Socket<"uint8array">; got: Uint8Array[] }> {
  const got: Uint8Array[] = [];
  const sock = await Bun.udpSocket({
    hostname: host,
    binaryType: "uint8array",
    socket: { data: (_s, d) => void got.push(d) },
  });
  return { sock, got };
}

/** A UDP backend: records each datagram and answers with a long-header packet naming SCID 0xa1a2a3a4 (the "server's" connection ID), then echoes. */
async function udpBackend(): Promise<{ port: number; got: { d: Uint8Array; from: number }[]; close(): void }> {
  const got: { d: Uint8Array; from: number }[] = [];
  const s = await Bun.udpSocket({
    hostname: "127.0.0.1",
    binaryType: "uint8array",
    socket: {
      data(sock, d, port, addr) {
        got.push({ d, from: port });
        // Handshake-type long header (v1): first byte 0xe0, version 1, DCID len 0, SCID len 4.
        sock.send(Uint8Array.from([0xe0, 0, 0, 0, 1, 0, 4, 0xa1, 0xa2, 0xa3, 0xa4, 0x01, 0x00]), port, addr);
      },
    },
  });
  return { port: s.port, got, close: () => s.close() };
}

describe("QUIC Initials made here (binary)", () => {
  const dcid = Uint8Array.from([9, 8, 7, 6, 5, 4, 3, 2]);
  const hello = handshake(
    clientHelloBody([sniExtension("app.example.com"), alpnExtension("h3"), paddingExtension(2200)]),
  );
  const part = (pn: number, from: number, to: number) =>
    padDatagram(sealInitial({ dcid, pn, frames: cryptoFrame(from, hello.subarray(from, to)) }), 1250);

  test("a hello over two datagrams, reordered and repeated, is routed; every datagram reaches the backend unchanged; replies come back; a short-header packet from a new port opens a path of the flow", async () => {
    const be = await udpBackend();
    const port = freePort();
    const proxy = await startProxy("binary", quicConfig(port, { "app.example.com": be.port }));
    const c = await udpClient();
    try {
      const d1 = part(0, 0, 1100);
      const d2 = part(1, 1100, hello.length);
      c.sock.send(d2, port, "127.0.0.1");
      c.sock.send(d1, port, "127.0.0.1");
      c.sock.send(d2, port, "127.0.0.1");
      await waitFor(() => be.got.length === 3, 5000, "three datagrams at the backend");
      expect(be.got.map((g) => Buffer.from(g.d).equals(Buffer.from(g === be.got[1] ? d1 : d2)))).toEqual([
        true,
        true,
        true,
      ]);
      await waitFor(() => c.got.length === 3, 5000, "three replies at the client");
      // The client moves: a short-header packet naming the server's connection ID, from another port.
      const moved = await udpClient();
      const short = Uint8Array.from([0x41, 0xa1, 0xa2, 0xa3, 0xa4, 1, 2, 3, 4, 5]);
      moved.sock.send(short, port, "127.0.0.1");
      await waitFor(() => be.got.length === 4, 5000, "the moved client's packet at the backend");
      expect(Buffer.from(be.got[3]!.d).equals(Buffer.from(short))).toBe(true);
      // From a socket of its own: the backend sees the client's new address and validates it (RFC 9000 §9.3), as it would without a proxy.
      expect(be.got[3]!.from).not.toBe(be.got[0]!.from);
      await waitFor(() => moved.got.length === 1, 5000, "the reply at the new port");
      // An unknown short-header packet from a third port goes nowhere.
      const stray = await udpClient();
      stray.sock.send(Uint8Array.from([0x41, 1, 1, 1, 1, 1]), port, "127.0.0.1");
      await sleep(300);
      expect(be.got.length).toBe(4);
      moved.sock.close();
      stray.sock.close();
      // A drain ends the flow (QUIC's own close is invisible here) and writes its record.
      proxy.signal("SIGTERM");
      expect(await proxy.exited).toBe(0);
      const r = proxy.access().find((x) => x.listener === `127.0.0.1:${port}/quic`);
      expect(r).toMatchObject({
        outcome: "shutdown",
        sni: "app.example.com",
        route: "app.example.com",
        backend: `127.0.0.1:${be.port}`,
        tries: 1,
      });
      expect(r!.bytes_in).toBe(d1.length + 2 * d2.length + short.length);
    } finally {
      c.sock.close();
      await proxy.stop();
      be.close();
    }
  }, 30_000);

  test("a reload (takeover): the new process binds the UDP address once the old one hands it over, and routes new flows", async () => {
    const be = await udpBackend();
    const port = freePort();
    const dir = tempDir();
    const proxy = await startProxy(
      "binary",
      `${quicConfig(port, { "app.example.com": be.port })}[grpc]\naddr = "unix:admin.sock"\n`,
      { dir },
    );
    const log = openSync(join(dir, "reloads.log"), "a");
    // The new process writes where the running one does (its successor): the server's own output.
    const quicLines = () => proxy.output.split('"protocol":"quic"').length - 1;
    const before = quicLines();
    try {
      const r = Bun.spawn([BINARY, "reload", "-c", join(dir, "mc-proxy.toml")], {
        cwd: dir,
        env: cleanEnv(),
        stdin: "ignore",
        stdout: log,
        stderr: log,
      });
      expect(await r.exited).toBe(0);
      await waitFor(() => quicLines() > before, 10_000, "the new process's quic listener");
      const c = await udpClient();
      c.sock.send(part(0, 0, 1100), port, "127.0.0.1");
      c.sock.send(part(1, 1100, hello.length), port, "127.0.0.1");
      await waitFor(() => be.got.length === 2 && c.got.length === 2, 5000, "a flow through the new process");
      c.sock.close();
    } finally {
      closeSync(log);
      Bun.spawnSync(["pkill", "-TERM", "-f", join(dir, "mc-proxy.toml")]);
      await proxy.stop();
      be.close();
    }
  }, 30_000);

  test("a blocked source gets nothing and opens nothing; non-QUIC and small datagrams are dropped", async () => {
    const be = await udpBackend();
    const port = freePort();
    const proxy = await startProxy(
      "binary",
      `${quicConfig(port, { "app.example.com": be.port })}[firewall]\nblocked_ips = ["127.0.0.3"]\n`,
    );
    try {
      const blocked = await udpClient("127.0.0.3");
      blocked.sock.send(part(0, 0, 1100), port, "127.0.0.1");
      blocked.sock.send(part(1, 1100, hello.length), port, "127.0.0.1");
      const junk = await udpClient();
      junk.sock.send(new Uint8Array(1300).fill(0x16), port, "127.0.0.1");
      junk.sock.send(sealInitial({ dcid, pn: 0, frames: cryptoFrame(0, hello.subarray(0, 500)) }), port, "127.0.0.1");
      await sleep(500);
      expect(be.got.length).toBe(0);
      expect(blocked.got.length).toBe(0);
      // The same datagrams from an allowed address are routed.
      const ok = await udpClient("127.0.0.2");
      ok.sock.send(part(0, 0, 1100), port, "127.0.0.1");
      ok.sock.send(part(1, 1100, hello.length), port, "127.0.0.1");
      await waitFor(() => be.got.length === 2, 5000, "the allowed client's datagrams");
      for (const s of [blocked, junk, ok]) s.sock.close();
    } finally {
      await proxy.stop();
      be.close();
    }
  }, 30_000);

  test("100,000 spoofed-source Initials (random source ports) while a real client connects: it is routed, memory stays bounded, CPU per rejected Initial is reported", async () => {
    const missing = ensureCommands(["python3"], ["python3"]);
    if (missing !== null) return void console.warn(`SKIP QUIC flood test: ${missing}`);
    if (process.getuid?.() !== 0)
      return void console.warn("SKIP QUIC flood test: raw sockets (spoofed source ports) need root");
    const be = await udpBackend();
    const port = freePort();
    const proxy = await startProxy(
      "binary",
      `${quicConfig(port, { "app.example.com": be.port })}[proxy]\nworkers = 1\n`,
      { env: RSS_IS_LIVE },
    );
    const stat = () => {
      const f = require("node:fs").readFileSync(`/proc/${proxy.pid}/stat`, "utf8").split(") ")[1].split(" ");
      const rss =
        Number(/VmRSS:\s+(\d+)/.exec(require("node:fs").readFileSync(`/proc/${proxy.pid}/status`, "utf8"))![1]) * 1024;
      return { cpu: (Number(f[11]) + Number(f[12])) / 100, rss };
    };
    try {
      await sleep(300);
      const before = stat();
      // Initial long headers (v1) with random connection IDs and random payloads: each costs a key derivation and a failed decryption.
      const flood = Bun.spawn(
        [
          "python3",
          "-c",
          `import socket,os,random,struct
s=socket.socket(socket.AF_INET,socket.SOCK_RAW,socket.IPPROTO_RAW)
dst=${port}
for i in range(100000):
    dcid=os.urandom(8)
    q=bytes([0xc3,0,0,0,1,8])+dcid+bytes([0,0,0x44,0x9e])+os.urandom(1182)
    udp=struct.pack('!HHHH',random.randint(1024,65535),dst,8+len(q),0)+q
    ip=struct.pack('!BBHHHBBH4s4s',0x45,0,20+len(udp),i&0xffff,0,64,17,0,socket.inet_aton('127.0.0.1'),socket.inet_aton('127.0.0.1'))
    s.sendto(ip+udp,('127.0.0.1',0))
`,
        ],
        { stdout: "ignore", stderr: "pipe" },
      );
      // A real client in the middle of it. Like a QUIC client (RFC 9002 §6.2: a probe after each timeout) it sends its Initials again until answered: the flood may fill the socket's receive buffer, and the kernel drops what does not fit.
      await sleep(300);
      const c = await udpClient("127.0.0.2");
      let sends = 0;
      const resend = setInterval(() => {
        if (c.got.length > 0) return;
        sends++;
        c.sock.send(part(0, 0, 1100), port, "127.0.0.1");
        c.sock.send(part(1, 1100, hello.length), port, "127.0.0.1");
      }, 200);
      try {
        await waitFor(() => c.got.length >= 2, 20_000, "the real client's replies during the flood");
      } finally {
        clearInterval(resend);
      }
      console.log(`QUIC flood: the real client was answered after ${sends} send(s) of its two Initials`);
      const code = await flood.exited;
      expect(code).toBe(0);
      await sleep(500);
      const after = stat();
      const cpuUs = ((after.cpu - before.cpu) * 1e6) / 100_000;
      const grewMiB = (after.rss - before.rss) / 2 ** 20;
      console.log(
        `QUIC flood: 100,000 spoofed Initials; proxy CPU ${(after.cpu - before.cpu).toFixed(2)} s (${cpuUs.toFixed(1)} µs per rejected Initial); RSS ${(before.rss / 2 ** 20).toFixed(1)} → ${(after.rss / 2 ** 20).toFixed(1)} MiB`,
      );
      expect(grewMiB).toBeLessThan(64);
      c.sock.close();
    } finally {
      await proxy.stop();
      be.close();
    }
  }, 120_000);
});
