// A QUIC listener against a hostile review (docs/HTTP3.md), on the compiled
// binary: a routed flow's address (or a path it moved to) carries no other
// QUIC connection past admission; forged UDP sources cannot spend a TCP
// client's rate-limit budget; refusals after the hello cannot flood the log,
// in number (a record budget) or in size (the ALPN list clipped). Client
// addresses are distinct loopback addresses (all of 127/8 is loopback on
// Linux); a datagram from a socket bound to an address is what a forged
// datagram from it looks like to the proxy.
import { describe, expect, test } from "bun:test";
import type { udp } from "bun";
import {
  alpnExtension,
  clientHelloBody,
  handshake,
  helloFor,
  paddingExtension,
  sniExtension,
} from "../helpers/hello_builder";
import { firstReply, freePort, rawExchange, sleep, tcpServer, waitFor } from "../helpers/net";
import { type RunningProxy, startProxy } from "../helpers/proxy";
import { cryptoFrame, padDatagram, sealInitial, varintBytes } from "../helpers/quic";

const HOST = "app.example.com";

/** A TCP listener and a quic listener on one address sharing its routes (`routes`: extra route tables), /metrics on `metrics`. */
function config(
  port: number,
  backendPort: number,
  metrics: number,
  opts: { routes?: string; extra?: string } = {},
): string {
  return (
    `[[listeners]]\naddr = "127.0.0.1:${port}"\n  [[listeners.routes]]\n  hostname = "${HOST}"\n  backend = "127.0.0.1:${backendPort}"\n${opts.routes ?? ""}\n` +
    `[[listeners]]\naddr = "127.0.0.1:${port}"\nprotocol = "quic"\n[metrics]\naddr = "127.0.0.1:${metrics}"\n${opts.extra ?? ""}\n`
  );
}

/** One sample of /metrics, 0 when absent. */
async function metric(port: number, series: string): Promise<number> {
  const text = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(15_000) }).then((r) =>
    r.text(),
  );
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

const closed = (port: number, outcome: string) =>
  `mc_proxy_connections_closed_total{listener="127.0.0.1:${port}/quic",outcome="${outcome}"}`;

type Client = { sock: udp.Socket<"uint8array">; got: Uint8Array[] };

async function udpClient(host: string): Promise<Client> {
  const got: Uint8Array[] = [];
  const sock = await Bun.udpSocket({
    hostname: host,
    binaryType: "uint8array",
    socket: { data: (_s, d) => void got.push(d) },
  });
  return { sock, got };
}

/** The server's connection ID the backends name in their replies. */
const SCID = Uint8Array.from([0x5c, 0x1d, 0x5c, 0x1d]);
/** A v1 Initial long header from the server naming SCID (what the proxy learns server IDs from). */
const SERVER_INITIAL = Uint8Array.from([0xc0, 0, 0, 0, 1, 0, SCID.length, ...SCID, 0, 0x01, 0x00]);

/** A UDP backend on `port` (0: any): records each datagram with its source port, answers it with SERVER_INITIAL. */
async function udpBackend(port = 0): Promise<{ port: number; got: { d: Uint8Array; from: number }[]; close(): void }> {
  const got: { d: Uint8Array; from: number }[] = [];
  const s = await Bun.udpSocket({
    hostname: "127.0.0.1",
    port,
    binaryType: "uint8array",
    socket: {
      data(sock, d, from, addr) {
        got.push({ d, from });
        sock.send(SERVER_INITIAL, from, addr);
      },
    },
  });
  return { port: s.port, got, close: () => s.close() };
}

let seq = 1;
/** A fresh 8-byte connection ID. */
function freshCid(): Uint8Array {
  const n = seq++;
  return Uint8Array.from([0xd0, 0x0d, 0, 0, (n >> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff]);
}

/** One datagram carrying a whole hello for `sni` offering `alpn`. */
function initial(sni: string, dcid: Uint8Array, alpn = ["h3"]): Uint8Array {
  return padDatagram(
    sealInitial({
      dcid,
      pn: 0,
      frames: cryptoFrame(0, handshake(clientHelloBody([sniExtension(sni), alpnExtension(...alpn)]))),
    }),
    1250,
  );
}

/** A v1 long-header packet of type 1 (0-RTT) or 2 (Handshake) naming `dcid`, with a 20-byte body (not read by the proxy). */
function longPacket(type: 1 | 2, dcid: Uint8Array): Uint8Array {
  // A 2-byte packet number and the body: the Length field (RFC 9000 §17.2).
  return Uint8Array.from([
    0xc1 | (type << 4),
    0,
    0,
    0,
    1,
    dcid.length,
    ...dcid,
    0,
    ...varintBytes(22),
    0,
    0,
    ...new Uint8Array(20).fill(7),
  ]);
}

const eq = (a: Uint8Array, b: Uint8Array) => Buffer.from(a).equals(Buffer.from(b));

async function stopAll(proxy: RunningProxy, closers: { close(): void }[]): Promise<void> {
  for (const c of closers) c.close();
  await proxy.stop();
}

describe("QUIC: another connection from a routed flow's address", () => {
  test("its long headers (a new Destination Connection ID: another name, a blocked fingerprint, coalesced behind a known one) reach no backend and are counted quic_new_connection; the flow's own Initials, 0-RTT and Handshake packets pass", async () => {
    const be = await udpBackend();
    const port = freePort();
    const mport = freePort();
    const denied = `  [[listeners.routes]]\n  hostname = "other.example.com"\n  backend = "127.0.0.1:${be.port}"\n  allow = ["10.0.0.0/8"]\n`;
    const proxy = await startProxy(
      "binary",
      config(port, be.port, mport, { routes: denied, extra: `[firewall]\nblocked_ja4 = ["q12d0202el_*_*"]\n` }),
    );
    const c = await udpClient("127.0.9.2");
    const p = await udpClient("127.0.9.3");
    try {
      const first = freshCid();
      const hello = initial(HOST, first);
      c.sock.send(hello, port, "127.0.0.1");
      await waitFor(() => be.got.length === 1 && c.got.length === 1, 5000, "the flow routed, the server's ID learned");
      // Each of these, alone from a fresh address, is refused (route_denied, blocked_ja4): from the flow's address they open nothing either.
      const strangers = [
        initial("other.example.com", freshCid()),
        initial(HOST, freshCid(), ["evil"]),
        longPacket(2, freshCid()),
        Uint8Array.from([...longPacket(2, SCID), ...initial("other.example.com", freshCid())]),
      ];
      for (const d of strangers) c.sock.send(d, port, "127.0.0.1");
      await sleep(500);
      expect(be.got.length).toBe(1);
      // The flow's own: its Initial again (first ID), 0-RTT (first ID), Handshake (the server's ID), a short header.
      const own = [hello, longPacket(1, first), longPacket(2, SCID), Uint8Array.from([0x41, ...SCID, 1, 2, 3])];
      for (const d of own) c.sock.send(d, port, "127.0.0.1");
      await waitFor(() => be.got.length === 5, 5000, "the flow's own packets at the backend");
      expect(be.got.slice(1).map((g, i) => eq(g.d, own[i]!))).toEqual([true, true, true, true]);
      expect(new Set(be.got.map((g) => g.from)).size).toBe(1);

      // Before its hello is whole, another connection's Initial is not held for the flow's backend either.
      const half = handshake(clientHelloBody([sniExtension(HOST), alpnExtension("h3"), paddingExtension(2200)]));
      const pd = freshCid();
      const d1 = padDatagram(sealInitial({ dcid: pd, pn: 0, frames: cryptoFrame(0, half.subarray(0, 1100)) }), 1250);
      const d2 = padDatagram(sealInitial({ dcid: pd, pn: 1, frames: cryptoFrame(1100, half.subarray(1100)) }), 1250);
      p.sock.send(d1, port, "127.0.0.1");
      await sleep(100);
      p.sock.send(initial("other.example.com", freshCid()), port, "127.0.0.1");
      await sleep(100);
      p.sock.send(d2, port, "127.0.0.1");
      await waitFor(() => be.got.length === 7, 5000, "the second flow's hello at the backend");
      await sleep(300);
      expect(be.got.length).toBe(7);
      expect([eq(be.got[5]!.d, d1), eq(be.got[6]!.d, d2)]).toEqual([true, true]);

      expect(await metric(mport, closed(port, "quic_new_connection"))).toBe(strangers.length + 1);
      expect(proxy.access().filter((r) => r.outcome !== "ok")).toEqual([]);
    } finally {
      await stopAll(proxy, [c.sock, p.sock, be]);
    }
  }, 30_000);

  test("a path an attacker opened at an address does not carry a later client's Initial from it to the attacker's backend", async () => {
    const beA = await udpBackend();
    const beB = await udpBackend();
    const port = freePort();
    const mport = freePort();
    const b = `  [[listeners.routes]]\n  hostname = "b.example.com"\n  backend = "127.0.0.1:${beB.port}"\n`;
    const proxy = await startProxy("binary", config(port, beA.port, mport, { routes: b }));
    const attacker = await udpClient("127.0.9.4");
    const x = await udpClient("127.0.9.5");
    try {
      attacker.sock.send(initial(HOST, freshCid()), port, "127.0.0.1");
      await waitFor(() => attacker.got.length === 1, 5000, "the attacker's flow routed");
      // A short header naming the learned ID from X: a path of the attacker's flow.
      x.sock.send(Uint8Array.from([0x41, ...SCID, 9, 9, 9]), port, "127.0.0.1");
      await waitFor(() => beA.got.length === 2, 5000, "the path opened");
      // The next user of X starts a connection for b.example.com.
      for (let i = 0; i < 3; i++) {
        x.sock.send(initial("b.example.com", freshCid()), port, "127.0.0.1");
        await sleep(200);
      }
      await sleep(300);
      expect(beA.got.length).toBe(2);
      expect(await metric(mport, closed(port, "quic_new_connection"))).toBe(3);
    } finally {
      await stopAll(proxy, [attacker.sock, x.sock, beA, beB]);
    }
  }, 30_000);
});

describe("QUIC: the rate limit of unvalidated UDP sources", () => {
  test("40 datagrams from an address (as forged ones would be) do not make its TCP connections rate_limited; its QUIC flows are rate-limited", async () => {
    const victim = "127.0.9.6";
    const echo = tcpServer(undefined, (s, d) => void s.write(d));
    const be = await udpBackend(echo.port);
    const port = freePort();
    const mport = freePort();
    const proxy = await startProxy(
      "binary",
      config(port, be.port, mport, { extra: `[firewall]\nrate_limit = 20\nrate_window = "10s"\n` }),
    );
    const socks: Client[] = [];
    try {
      // 40 flows from the victim's address: each a first half of a hello (pending), from a port of its own.
      const half = handshake(clientHelloBody([sniExtension(HOST), alpnExtension("h3"), paddingExtension(2200)]));
      for (let i = 0; i < 40; i++) {
        const s = await udpClient(victim);
        socks.push(s);
        s.sock.send(
          padDatagram(sealInitial({ dcid: freshCid(), pn: 0, frames: cryptoFrame(0, half.subarray(0, 1100)) }), 1250),
          port,
          "127.0.0.1",
        );
        if (i % 10 === 9) await sleep(20);
      }
      await sleep(300);
      expect(await metric(mport, closed(port, "rate_limited"))).toBe(20);
      // The echo backend answers each with the hello itself.
      for (let i = 0; i < 3; i++) expect(await firstReply(port, helloFor(HOST), victim)).not.toBe("");
      expect(proxy.access().filter((r) => r.outcome === "rate_limited")).toEqual([]);
    } finally {
      await stopAll(proxy, [...socks.map((s) => s.sock), be, { close: () => echo.stop() }]);
    }
  }, 30_000);
});

describe("QUIC: refusals and the log", () => {
  test("3,000 refused hellos with a fresh connection ID each, from one socket: at most the record budget is logged, the rest summed by outcome", async () => {
    const be = await udpBackend();
    const port = freePort();
    const mport = freePort();
    const proxy = await startProxy("binary", config(port, be.port, mport));
    const c = await udpClient("127.0.9.7");
    try {
      const t0 = performance.now();
      for (let i = 0; i < 3000; i++) {
        c.sock.send(initial("nope.example.com", freshCid()), port, "127.0.0.1");
        if (i % 20 === 19) await sleep(5);
      }
      const refused = async () => metric(mport, closed(port, "no_route"));
      let last = -1;
      for (let n = await refused(); n !== last; n = await refused()) {
        last = n;
        await sleep(300);
      }
      // The summary is written at most once a second: wait for the one after the last refusal.
      await sleep(1500);
      const seconds = (performance.now() - t0) / 1000;
      const records = proxy.access().filter((r) => r.outcome === "no_route").length;
      const summaries = proxy.records().filter((r) => r.msg === "quic refusals not logged");
      const unlogged = summaries.reduce((n, r) => n + Number(r.no_route ?? 0), 0);
      console.log(
        `QUIC refusal records: ${last} refusals in ${seconds.toFixed(1)} s, ${records} access records, ${summaries.length} summary line(s) for ${unlogged}`,
      );
      expect(last).toBeGreaterThan(2700);
      // The budget: a burst of 1,000, then 100 a second (quic/record_budget.ts).
      expect(records).toBeLessThanOrEqual(1000 + Math.ceil(100 * seconds));
      expect(records + unlogged).toBe(last);
      expect(summaries.length).toBeLessThanOrEqual(Math.ceil(seconds) + 1);
      expect(summaries[0]).toMatchObject({ listener: `127.0.0.1:${port}/quic` });
    } finally {
      await stopAll(proxy, [c.sock, be]);
    }
  }, 60_000);

  test("an ALPN list of thousands of names is clipped in the access record, for QUIC and TCP", async () => {
    const be = await udpBackend();
    const port = freePort();
    const mport = freePort();
    const proxy = await startProxy("binary", config(port, be.port, mport));
    const c = await udpClient("127.0.9.8");
    try {
      let k = 8000;
      let hello: Uint8Array = new Uint8Array(0);
      for (; ; k -= 10) {
        hello = handshake(clientHelloBody([sniExtension("nope.example.com"), alpnExtension(...Array(k).fill("\x01"))]));
        if (hello.length <= 16384) break;
      }
      c.sock.send(sealInitial({ dcid: freshCid(), pn: 0, frames: cryptoFrame(0, hello) }), port, "127.0.0.1");
      const q = await proxy.waitAccess((r) => r.listener === `127.0.0.1:${port}/quic`);
      expect(q.alpn).toEqual([...Array(8).fill("%01"), `…+${k - 8}`]);
      const long = Array.from({ length: 20 }, (_, i) => `${"p".repeat(39)}${i % 10}`);
      await rawExchange(port, helloFor("nope.example.com", long), { timeoutMs: 3000 });
      const t = await proxy.waitAccess((r) => r.listener === `127.0.0.1:${port}`);
      expect(t.alpn).toEqual([...Array(8).fill(`${"p".repeat(32)}…`), "…+12"]);
      const line = (l: string) => proxy.output.split("\n").find((x) => x.includes('"msg":"access"') && x.includes(l))!;
      console.log(`QUIC access record with ${k} ALPN names: ${line("/quic").length} bytes`);
      expect(line("/quic").length).toBeLessThan(1024);
    } finally {
      await stopAll(proxy, [c.sock, be]);
    }
  }, 30_000);
});
