// PROXY protocol end to end with raw sockets, source and binary:
// receiving on a proxy_protocol listener (trusted balancers only, the header
// in any segmentation, the firewall and rate limiter judging the client it
// names, every refusal a RST with no byte and its outcome logged) and
// sending to backends (v1 / v2, what the bytes say).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createConnection } from "node:net";
import { ProxyHeaderReader } from "../../src/proxy_header/proxy_header_reader";
import { proxyV1, proxyV2 } from "../../src/proxy_header/proxy_header_writer";
import { helloFor } from "../helpers/hello_builder";
import { freePort, sleep, waitFor } from "../helpers/net";
import { MODES, type RunningProxy, startProxy } from "../helpers/proxy";
import { v2Header } from "../helpers/proxy_header_builder";

const enc = new TextEncoder();

interface Outcome {
  received: Buffer;
  /** "answered": the backend's "ok" arrived and we closed. */
  end: "reset" | "eof" | "timeout" | "answered";
}

/**
 * Connect (optionally from a given local address), write `chunks` one by one
 * as separate segments, then wait for the connection to end or `holdMs`.
 */
function send(
  port: number,
  chunks: Uint8Array[],
  opts: { localAddress?: string; holdMs?: number; fin?: boolean; host?: string } = {},
): Promise<Outcome> {
  return new Promise((resolve) => {
    const got: Buffer[] = [];
    let done = false;
    const s = createConnection({
      host: opts.host ?? "127.0.0.1",
      port,
      localAddress: opts.localAddress,
      noDelay: true,
      allowHalfOpen: true,
    });
    const finish = (end: Outcome["end"]) => {
      if (done) return;
      done = true;
      clearTimeout(t);
      s.destroy();
      resolve({ received: Buffer.concat(got), end });
    };
    const t = setTimeout(() => finish("timeout"), opts.holdMs ?? 1500);
    s.on("connect", async () => {
      for (const c of chunks) {
        if (s.destroyed) return;
        s.write(c);
        if (chunks.length > 1) await sleep(2);
      }
      if (opts.fin) s.end();
    });
    s.on("data", (d: Buffer) => {
      got.push(d);
      if (Buffer.concat(got).toString() === "ok") finish("answered");
    });
    s.on("error", (e: NodeJS.ErrnoException) => finish(e.code === "ECONNRESET" ? "reset" : "eof"));
    s.on("close", () => setTimeout(() => finish("eof"), 30));
  });
}

/** A TCP backend that records each connection's bytes and answers "ok" to the first chunk. */
function recordingBackend() {
  const conns: { bytes: Buffer }[] = [];
  const l = Bun.listen<{ bytes: Buffer }>({
    hostname: "127.0.0.1",
    port: 0,
    allowHalfOpen: true,
    socket: {
      open: (s) => {
        s.data = { bytes: Buffer.alloc(0) };
        conns.push(s.data);
      },
      data: (s, d) => {
        if (s.data.bytes.length === 0) s.write("ok");
        s.data.bytes = Buffer.concat([s.data.bytes, d]);
      },
    },
  });
  return { port: l.port, conns, stop: () => l.stop(true) };
}

const split = (b: Uint8Array, ...cuts: number[]) => [0, ...cuts].map((c, i, a) => b.subarray(c, a[i + 1] ?? b.length));
const bytewise = (b: Uint8Array) => Array.from(b, (x) => new Uint8Array([x]));

describe.each(MODES)("receiving PROXY headers (%s)", (mode) => {
  let proxy: RunningProxy;
  let backend: ReturnType<typeof recordingBackend>;
  let port = 0;
  let dual = 0;
  const hello = helloFor("app.example.com");

  beforeAll(async () => {
    backend = recordingBackend();
    port = freePort();
    dual = freePort();
    proxy = await startProxy(
      mode,
      `[[listeners]]
addr = "127.0.0.1:${port}"
proxy_protocol = true
trusted_proxies = ["127.0.0.1", "127.0.0.3/32"]
  [[listeners.routes]]
  hostname = "app.example.com"
  backend = "127.0.0.1:${backend.port}"

# A dual-stack listener: a v4 balancer arrives as ::ffff:127.0.0.1.
[[listeners]]
addr = ":${dual}"
proxy_protocol = true
trusted_proxies = ["127.0.0.0/8"]
  [[listeners.routes]]
  hostname = "app.example.com"
  backend = "127.0.0.1:${backend.port}"

[firewall]
blocked_ips = ["192.0.2.66"]
blocked_cidrs = ["2001:db8:bad::/48"]
rate_limit = 5
rate_window = "10s"

[proxy]
hello_timeout = "1s"
`,
    );
  });
  afterAll(async () => {
    await proxy?.stop();
    backend?.stop();
  });

  const access = (pred: (r: Record<string, unknown>) => boolean) => proxy.waitAccess(pred, 4000);

  test("v1 and v2 from a trusted balancer, with the hello in the same segment: routed; the log has the real client and the balancer as peer", async () => {
    const n0 = backend.conns.length;
    const v1 = await send(port, [
      Buffer.concat([enc.encode("PROXY TCP4 198.51.100.7 203.0.113.1 40001 443\r\n"), hello]),
    ]);
    expect(v1.received.toString()).toBe("ok");
    const v2 = await send(port, [
      Buffer.concat([
        v2Header({ family: "inet6", source: ["2001:db8:1::7", 40002], destination: ["2001:db8::443", 443], crc: true }),
        hello,
      ]),
    ]);
    expect(v2.received.toString()).toBe("ok");
    // The backend got the ClientHello, and nothing of the header.
    expect(backend.conns.slice(n0).map((c) => c.bytes.equals(Buffer.from(hello)))).toEqual([true, true]);
    const r1 = await access((r) => r.client === "198.51.100.7:40001");
    expect(r1).toMatchObject({ outcome: "ok", sni: "app.example.com" });
    expect(String(r1.peer)).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(await access((r) => r.client === "[2001:db8:1::7]:40002")).toMatchObject({ outcome: "ok" });
  });

  test("split at every offset of a v1 and a v2 header (inside the signature and the length), and one byte at a time", async () => {
    // A new client address for every connection: the rate limit (5 per 10 s) counts per client.
    let n = 0;
    const h1 = () => enc.encode(`PROXY TCP4 198.51.101.${++n} 203.0.113.1 40003 443\r\n`);
    const h2 = () =>
      v2Header({
        family: "inet",
        source: [`198.51.101.${++n}`, 40004],
        destination: ["203.0.113.1", 443],
        tlvs: [[0x02, enc.encode("app.example.com")]],
        crc: true,
      });
    for (const make of [h1, h2]) {
      const len = make().length;
      for (const cut of [1, 5, 11, 13, 14, 15, 17, len - 1]) {
        const r = await send(port, split(Buffer.concat([make(), hello]), cut));
        expect({ cut, got: r.received.toString() }).toEqual({ cut, got: "ok" });
      }
      const r = await send(port, [...bytewise(make()), hello]);
      expect(r.received.toString()).toBe("ok");
    }
    // Header, then the hello one byte at a time.
    const r = await send(port, [h2(), ...bytewise(hello.subarray(0, 60)), hello.subarray(60)]);
    expect(r.received.toString()).toBe("ok");
  });

  test("a header of 3 KB and one of 60 KB (TLVs), across many segments", async () => {
    for (const size of [3000, 60_000]) {
      const h = v2Header({
        family: "inet",
        source: ["198.51.100.10", 40005],
        destination: ["203.0.113.1", 443],
        tlvs: [[0x04, new Uint8Array(size)]],
        crc: true,
      });
      const r = await send(port, [Buffer.concat([h, hello])]);
      expect({ size, got: r.received.toString() }).toEqual({ size, got: "ok" });
    }
  });

  test("a v4 balancer on a dual-stack listener (peer ::ffff:127.0.0.1) is trusted", async () => {
    const r = await send(dual, [
      Buffer.concat([enc.encode("PROXY TCP4 198.51.100.11 203.0.113.1 40006 443\r\n"), hello]),
    ]);
    expect(r.received.toString()).toBe("ok");
    expect(await access((x) => x.client === "198.51.100.11:40006")).toMatchObject({
      outcome: "ok",
      listener: `:${dual}`,
    });
  });

  test("LOCAL and UNKNOWN (balancer health checks): the balancer stays the client and is not firewalled", async () => {
    const local = await send(port, [Buffer.concat([v2Header({ command: "local", family: "unspec" }), hello])]);
    expect(local.received.toString()).toBe("ok");
    const unknown = await send(port, [Buffer.concat([enc.encode("PROXY UNKNOWN whatever follows\r\n"), hello])]);
    expect(unknown.received.toString()).toBe("ok");
    const fromBalancer = () =>
      proxy
        .access()
        .filter((r) => String(r.client).startsWith("127.0.0.1:") && r.outcome === "ok" && r.client === r.peer);
    await waitFor(() => fromBalancer().length >= 2, 3000, "two records with the balancer as client");
  });

  test("the firewall judges the client from the header, never the balancer", async () => {
    const r = await send(port, [Buffer.concat([enc.encode("PROXY TCP4 192.0.2.66 203.0.113.1 40007 443\r\n"), hello])]);
    expect(r).toEqual({ received: Buffer.alloc(0), end: "reset" });
    expect(await access((x) => x.client === "192.0.2.66:40007")).toMatchObject({ outcome: "blocked_ip" });
    const six = await send(port, [
      Buffer.concat([
        v2Header({ family: "inet6", source: ["2001:db8:bad::1", 40008], destination: ["2001:db8::1", 443] }),
        hello,
      ]),
    ]);
    expect(six.end).toBe("reset");
    expect(await access((x) => x.client === "[2001:db8:bad::1]:40008")).toMatchObject({ outcome: "blocked_cidr" });
  });

  test("50 IPv6 clients of one /64 behind the balancer are rate-limited as one client", async () => {
    const results: Outcome[] = [];
    for (let i = 1; i <= 50; i++) {
      const h = v2Header({
        family: "inet6",
        source: [`2001:db8:77:1:${i.toString(16)}::${i.toString(16)}`, 41000 + i],
        destination: ["2001:db8::1", 443],
      });
      results.push(await send(port, [Buffer.concat([h, hello])], { holdMs: 800 }));
    }
    expect(results.filter((r) => r.received.toString() === "ok").length).toBe(5);
    expect(results.filter((r) => r.end === "reset" && r.received.length === 0).length).toBe(45);
    await waitFor(
      () =>
        proxy.access().filter((x) => String(x.client).startsWith("[2001:db8:77:1:") && x.outcome === "rate_limited")
          .length === 45,
      4000,
      "45 rate_limited",
    );
  });

  const refused: [string, () => Uint8Array[], string][] = [
    ["a ClientHello with no header", () => [hello], "bad_proxy_header"],
    ["HTTP", () => [enc.encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n")], "bad_proxy_header"],
    [
      "v1 with port 70000",
      () => [Buffer.concat([enc.encode("PROXY TCP4 198.51.100.1 203.0.113.1 70000 443\r\n"), hello])],
      "bad_proxy_header",
    ],
    [
      "v1 without CR",
      () => [Buffer.concat([enc.encode("PROXY TCP4 198.51.100.1 203.0.113.1 1 443\n"), hello])],
      "bad_proxy_header",
    ],
    ["v1 of 200 bytes and no CRLF", () => [enc.encode(`PROXY TCP4 ${"9".repeat(194)}`)], "bad_proxy_header"],
    [
      "v2 with a wrong signature",
      () => [
        (() => {
          const h = v2Header({ family: "unspec" });
          h[9] = 0;
          return Buffer.concat([h, hello]);
        })(),
      ],
      "bad_proxy_header",
    ],
    [
      "v2 version nibble 1",
      () => [
        Buffer.concat([
          v2Header({ family: "inet", version: 1, source: ["198.51.100.1", 1], destination: ["203.0.113.1", 2] }),
          hello,
        ]),
      ],
      "bad_proxy_header",
    ],
    [
      "v2 command 2",
      () => [
        Buffer.concat([
          v2Header({ family: "inet", commandNibble: 2, source: ["198.51.100.1", 1], destination: ["203.0.113.1", 2] }),
          hello,
        ]),
      ],
      "bad_proxy_header",
    ],
    [
      "v2 length shorter than its address block",
      () => [
        Buffer.concat([
          v2Header({ family: "inet", source: ["198.51.100.1", 1], destination: ["203.0.113.1", 2], lengthOverride: 6 }),
          hello,
        ]),
      ],
      "bad_proxy_header",
    ],
    [
      "v2 TLV running past the header",
      () => [
        Buffer.concat([
          v2Header({
            family: "inet",
            source: ["198.51.100.1", 1],
            destination: ["203.0.113.1", 2],
            rawTail: new Uint8Array([0x04, 0xff, 0xff]),
          }),
          hello,
        ]),
      ],
      "bad_proxy_header",
    ],
    [
      "v2 with a bad CRC32C",
      () => [
        (() => {
          const h = v2Header({
            family: "inet",
            source: ["198.51.100.1", 1],
            destination: ["203.0.113.1", 2],
            crc: true,
          });
          h[h.length - 1]! ^= 1;
          return Buffer.concat([h, hello]);
        })(),
      ],
      "bad_proxy_header",
    ],
  ];
  test.each(refused)("refused with a RST and no byte: %s", async (_, chunks, outcome) => {
    const before = proxy.access().filter((r) => r.outcome === outcome).length;
    const n0 = backend.conns.length;
    const r = await send(port, chunks());
    expect(r).toEqual({ received: Buffer.alloc(0), end: "reset" });
    await waitFor(() => proxy.access().filter((x) => x.outcome === outcome).length > before, 3000, outcome);
    expect(backend.conns.length).toBe(n0);
  });

  test("an untrusted peer is reset before a byte is read (outcome untrusted_proxy)", async () => {
    const r = await send(port, [Buffer.concat([enc.encode("PROXY TCP4 198.51.100.1 203.0.113.1 1 443\r\n"), hello])], {
      localAddress: "127.0.0.2",
    });
    expect(r).toEqual({ received: Buffer.alloc(0), end: "reset" });
    expect(await access((x) => String(x.client).startsWith("127.0.0.2:"))).toMatchObject({
      outcome: "untrusted_proxy",
    });
    // 127.0.0.3 is trusted by its /32 entry.
    const ok = await send(
      port,
      [Buffer.concat([enc.encode("PROXY TCP4 198.51.100.12 203.0.113.1 40009 443\r\n"), hello])],
      { localAddress: "127.0.0.3" },
    );
    expect(ok.received.toString()).toBe("ok");
  });

  test("a header incomplete at hello_timeout → hello_timeout; a FIN before it is complete → client_closed; both reset, nothing forwarded", async () => {
    const n0 = backend.conns.length;
    const slow = await send(port, [enc.encode("PROXY TCP4 198.51.100.1 ")], { holdMs: 2500 });
    expect(slow).toEqual({ received: Buffer.alloc(0), end: "reset" });
    await access((x) => x.outcome === "hello_timeout");
    const fin = await send(
      port,
      [v2Header({ family: "inet", source: ["198.51.100.1", 1], destination: ["203.0.113.1", 2] }).subarray(0, 20)],
      { fin: true },
    );
    expect(fin.received.length).toBe(0);
    await access((x) => x.outcome === "client_closed");
    expect(backend.conns.length).toBe(n0);
  });
});

describe.each(MODES)("sending PROXY headers to backends (%s)", (mode) => {
  let proxy: RunningProxy;
  let backend: ReturnType<typeof recordingBackend>;
  let plain = 0;
  let behind = 0;
  const hello = helloFor("app.example.com");
  const noSni = helloFor(null);

  beforeAll(async () => {
    backend = recordingBackend();
    plain = freePort();
    behind = freePort();
    const routes = `  [[listeners.routes]]
  hostname = "app.example.com"
  backend = "127.0.0.1:${backend.port}"
  send_proxy_protocol = "v2"
  [[listeners.routes]]
  hostname = "v1.example.com"
  backend = "127.0.0.1:${backend.port}"
  send_proxy_protocol = "v1"
  [[listeners.routes]]
  hostname = "true.example.com"
  backend = "127.0.0.1:${backend.port}"
  send_proxy_protocol = true
`;
    proxy = await startProxy(
      mode,
      `[[listeners]]
addr = "127.0.0.1:${plain}"
default_backend = "127.0.0.1:${backend.port}"
default_backend_send_proxy_protocol = "v1"
${routes}
[[listeners]]
addr = "127.0.0.1:${behind}"
proxy_protocol = true
trusted_proxies = ["127.0.0.1"]
${routes}`,
    );
  });
  afterAll(async () => {
    await proxy?.stop();
    backend?.stop();
  });

  /** Send, then read the header the backend got and check the hello follows it untouched. */
  async function through(port: number, chunks: Uint8Array[], clientHello: Uint8Array) {
    const n0 = backend.conns.length;
    const r = await send(port, chunks);
    expect(r.received.toString()).toBe("ok");
    const got = backend.conns[n0]!.bytes;
    const read = new ProxyHeaderReader().feed(got);
    if (read.kind !== "done") throw new Error(`backend got no PROXY header: ${got.subarray(0, 40).toString("hex")}`);
    const h = read.value;
    expect(Buffer.from(h.rest).equals(Buffer.from(clientHello))).toBe(true);
    const id = (
      await proxy.waitAccess(
        (x) =>
          x.outcome === "ok" &&
          backend.conns.length > n0 &&
          proxy.access().length > 0 &&
          x.id === (h.header.uniqueId ?? x.id),
        3000,
      )
    ).id;
    return { header: h.header, raw: got, id };
  }

  test("v2: the client as source, the listener's address as destination, the SNI as AUTHORITY and the log's id as UNIQUE_ID, with a valid CRC32C", async () => {
    const { header, raw, id } = await through(plain, [hello], hello);
    expect(header.version).toBe(2);
    expect(header.source?.ip).toBe("127.0.0.1");
    expect(header.destination).toEqual({ ip: "127.0.0.1", port: plain });
    expect(header.authority).toBe("app.example.com");
    expect(header.uniqueId).toBe(id as string);
    expect(
      raw.subarray(0, 12).equals(Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a])),
    ).toBe(true);
    const rec = proxy.access().find((x) => x.id === id)!;
    expect(rec.client).toBe(`127.0.0.1:${header.source!.port}`);
  });

  test("v1, `true` meaning v2, and the default backend's own setting (v1, no SNI → no AUTHORITY)", async () => {
    const v1hello = helloFor("v1.example.com");
    expect((await through(plain, [v1hello], v1hello)).header.version).toBe(1);
    const t = helloFor("true.example.com");
    expect((await through(plain, [t], t)).header.version).toBe(2);
    const d = await through(plain, [noSni], noSni);
    expect(d.header).toMatchObject({ version: 1, authority: null });
  });

  test("behind a balancer: the source is the client from the received header and the destination the address it dialled", async () => {
    const rx = proxyV2({
      source: { ip: "198.51.100.20", port: 50000 },
      destination: { ip: "203.0.113.80", port: 443 },
      authority: null,
      uniqueId: "lb-1",
    });
    const { header } = await through(behind, [Buffer.concat([rx, hello])], hello);
    expect(header).toMatchObject({
      source: { ip: "198.51.100.20", port: 50000 },
      destination: { ip: "203.0.113.80", port: 443 },
      authority: "app.example.com",
    });
    // Mixed families: sent as INET6 with the IPv4 side mapped.
    const mixed = proxyV1({
      source: { ip: "2001:db8::20", port: 50001 },
      destination: { ip: "203.0.113.80", port: 443 },
      authority: null,
      uniqueId: "",
    });
    const m = await through(behind, [Buffer.concat([mixed, hello])], hello);
    expect(m.raw[13]).toBe(0x21);
    expect(m.header).toMatchObject({ source: { ip: "2001:db8::20" }, destination: { ip: "203.0.113.80" } });
  });

  test("a received LOCAL goes on as PROXY with the balancer as source", async () => {
    const { header } = await through(
      behind,
      [Buffer.concat([v2Header({ command: "local", family: "unspec" }), hello])],
      hello,
    );
    expect(header.source?.ip).toBe("127.0.0.1");
    expect(header.destination).toEqual({ ip: "127.0.0.1", port: behind });
  });
});

describe("send_proxy_protocol over the admin API and the CLI (binary)", () => {
  test("a route added with V2 over gRPC survives a restart and sends v2; the CLI adds a v1 route and lists it", async () => {
    const { AdminClient } = await import("../../src/cli/admin_client");
    const { unixGrpcConfig } = await import("../helpers/admin");
    const { cleanEnv, command, tempDir } = await import("../helpers/proxy");
    const { join } = await import("node:path");
    const backend = recordingBackend();
    const dir = tempDir();
    const port = freePort();
    const toml = `[[listeners]]\naddr = "127.0.0.1:${port}"\n[grpc]\naddr = "unix:admin.sock"\n`;
    let proxy = await startProxy("binary", toml, { dir });
    try {
      const admin = new AdminClient(unixGrpcConfig(join(dir, "admin.sock")));
      const added = await admin.call<{ route: { send_proxy_protocol: string } }>("AddRoute", {
        listener: `127.0.0.1:${port}`,
        route: {
          hostname: "app.example.com",
          backend: `127.0.0.1:${backend.port}`,
          send_proxy_protocol: "SEND_PROXY_PROTOCOL_V2",
        },
      });
      admin.close();
      expect(added.route.send_proxy_protocol).toBe("SEND_PROXY_PROTOCOL_V2");
      const cli = (...args: string[]) =>
        Bun.spawnSync([...command("binary"), ...args, "-c", proxy.configFile], {
          env: cleanEnv(),
          stdout: "pipe",
          stderr: "pipe",
        });
      expect(
        cli("routes", "add", "--send-proxy-protocol", "v1", "v1.example.com", `127.0.0.1:${backend.port}`).exitCode,
      ).toBe(0);
      expect(cli("routes", "add", "--send-proxy-protocol", "v3", "x.example.com", "127.0.0.1:1").exitCode).toBe(2);
      proxy.signal("SIGTERM");
      expect(await proxy.exited).toBe(0);
      proxy = await startProxy("binary", toml, { dir });
      const list = cli("routes", "list").stdout.toString();
      expect(list).toContain(`app.example.com  ->  127.0.0.1:${backend.port}  (send-proxy v2)`);
      expect(list).toContain(`v1.example.com  ->  127.0.0.1:${backend.port}  (send-proxy v1)`);
      for (const [name, version] of [
        ["app.example.com", 2],
        ["v1.example.com", 1],
      ] as const) {
        const n0 = backend.conns.length;
        const r = await send(port, [helloFor(name)]);
        expect(r.received.toString()).toBe("ok");
        const h = new ProxyHeaderReader().feed(backend.conns[n0]!.bytes);
        expect(h).toMatchObject({ kind: "done", value: { header: { version } } });
      }
    } finally {
      await proxy.stop();
      backend.stop();
    }
  });
});
