// A QUIC listener's admission and bounds against the compiled binary
// (docs/HTTP3.md): a client address that names another flow's
// connection ID passes the same firewall and route policy as a new flow;
// the pending table cannot be held against new clients; a hello has a
// deadline counted from its first datagram; held datagrams are bounded in
// bytes; routed flows are bounded per source; a retransmitted refused
// Initial is not logged once per copy. Client addresses are distinct
// loopback addresses (all of 127/8 is loopback on Linux).
import { describe, expect, test } from "bun:test";
import type { udp } from "bun";
import { alpnExtension, clientHelloBody, handshake, paddingExtension, sniExtension } from "../helpers/hello_builder";
import { freePort, sleep, waitFor } from "../helpers/net";
import { RSS_IS_LIVE, startProxy } from "../helpers/proxy";
import { cryptoFrame, padDatagram, sealInitial } from "../helpers/quic";

const HOST = "app.example.com";

/** A TCP listener and a quic listener on the same address sharing its routes; `route` adds lines to the route. */
function config(port: number, backendPort: number, opts: { route?: string; extra?: string } = {}): string {
  return (
    `[[listeners]]\naddr = "127.0.0.1:${port}"\n  [[listeners.routes]]\n  hostname = "${HOST}"\n  backend = "127.0.0.1:${backendPort}"\n${opts.route ?? ""}\n` +
    `[[listeners]]\naddr = "127.0.0.1:${port}"\nprotocol = "quic"\n${opts.extra ?? ""}\n`
  );
}

type Client = { sock: udp.Socket<"uint8array">; got: Uint8Array[] };

/** A UDP socket bound to `host` that collects what it receives. */
async function udpClient(host = "127.0.0.1"): Promise<Client> {
  const got: Uint8Array[] = [];
  const sock = await Bun.udpSocket({
    hostname: host,
    binaryType: "uint8array",
    socket: { data: (_s, d) => void got.push(d) },
  });
  return { sock, got };
}

/** Long header (Handshake, v1) naming the server's connection ID a1a2a3a4: what the proxy learns server IDs from. */
const SERVER_REPLY = Uint8Array.from([0xe0, 0, 0, 0, 1, 0, 4, 0xa1, 0xa2, 0xa3, 0xa4, 0x01, 0x00]);
/** A short-header (1-RTT) packet naming that connection ID. */
const SHORT = Uint8Array.from([0x41, 0xa1, 0xa2, 0xa3, 0xa4, 1, 2, 3, 4, 5]);

/** A UDP backend: records each datagram with the port it came from, and answers it with SERVER_REPLY. */
async function udpBackend(): Promise<{ port: number; got: { d: Uint8Array; from: number }[]; close(): void }> {
  const got: { d: Uint8Array; from: number }[] = [];
  const s = await Bun.udpSocket({
    hostname: "127.0.0.1",
    binaryType: "uint8array",
    socket: {
      data(sock, d, port, addr) {
        got.push({ d, from: port });
        sock.send(SERVER_REPLY, port, addr);
      },
    },
  });
  return { port: s.port, got, close: () => s.close() };
}

const dcid = Uint8Array.from([9, 8, 7, 6, 5, 4, 3, 2]);
/** A hello over two Initial datagrams (as Chromium's post-quantum hello is). */
const hello = handshake(clientHelloBody([sniExtension(HOST), alpnExtension("h3"), paddingExtension(2200)]));
const d1 = padDatagram(sealInitial({ dcid, pn: 0, frames: cryptoFrame(0, hello.subarray(0, 1100)) }), 1250);
const d2 = padDatagram(sealInitial({ dcid, pn: 1, frames: cryptoFrame(1100, hello.subarray(1100)) }), 1250);

function rssMiB(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(require("node:fs").readFileSync(`/proc/${pid}/status`, "utf8"))![1]) / 1024;
}

describe("QUIC: a client address that names another flow's connection ID", () => {
  test("from a firewalled or route-denied address it reaches no backend and gets nothing; an allowed one opens a path of its own, which the backend sees as a new address; the old address keeps its replies", async () => {
    const be = await udpBackend();
    const port = freePort();
    const proxy = await startProxy(
      "binary",
      `${config(port, be.port, { route: '  deny = ["127.0.0.4"]' })}[firewall]\nblocked_ips = ["127.0.0.3"]\n`,
    );
    const clients: Client[] = [];
    try {
      const c = await udpClient("127.0.0.2");
      clients.push(c);
      c.sock.send(d1, port, "127.0.0.1");
      c.sock.send(d2, port, "127.0.0.1");
      await waitFor(
        () => be.got.length === 2 && c.got.length === 2,
        5000,
        "the flow routed, the server's connection ID learned",
      );
      // The blocked address and the route-denied one name the learned ID, several times each.
      for (const host of ["127.0.0.3", "127.0.0.4"]) {
        const x = await udpClient(host);
        clients.push(x);
        for (let i = 0; i < 5; i++) x.sock.send(SHORT, port, "127.0.0.1");
      }
      await sleep(500);
      expect(be.got.length).toBe(2);
      expect(clients[1]!.got.length + clients[2]!.got.length).toBe(0);
      // An allowed address: its datagrams reach the backend from a socket of their own (the backend sees the move and validates the path, RFC 9000 §9.3).
      const moved = await udpClient("127.0.0.5");
      clients.push(moved);
      moved.sock.send(SHORT, port, "127.0.0.1");
      await waitFor(
        () => be.got.length === 3 && moved.got.length === 1,
        5000,
        "the moved client's packet at the backend, its reply at the new address",
      );
      expect(Buffer.from(be.got[2]!.d).equals(Buffer.from(SHORT))).toBe(true);
      expect(be.got[2]!.from).not.toBe(be.got[0]!.from);
      // The old address still gets what the backend sends to the old path, and only that.
      c.sock.send(SHORT, port, "127.0.0.1");
      await waitFor(() => be.got.length === 4 && c.got.length === 3, 5000, "the old address's packet and its reply");
      expect(be.got[3]!.from).toBe(be.got[0]!.from);
      await sleep(200);
      expect(moved.got.length).toBe(1);
      // The flow's record names the client that opened it and counts every byte from it, on any path.
      proxy.signal("SIGTERM");
      expect(await proxy.exited).toBe(0);
      const records = proxy.access().filter((x) => x.listener === `127.0.0.1:${port}/quic`);
      expect(records.length).toBe(1);
      expect(records[0]).toMatchObject({ outcome: "shutdown", sni: HOST });
      expect(String(records[0]!.client)).toStartWith("127.0.0.2:");
      expect(records[0]!.bytes_in).toBe(d1.length + d2.length + 2 * SHORT.length);
    } finally {
      for (const x of clients) x.sock.close();
      await proxy.stop();
      be.close();
    }
  }, 30_000);
});

describe("QUIC: the pending table", () => {
  test("after 8,000 never-finished Initials from 2,000 addresses, and more during its attempt, a new client is routed within 5 s", async () => {
    const be = await udpBackend();
    const port = freePort();
    const proxy = await startProxy("binary", `${config(port, be.port)}[proxy]\nworkers = 1\n`);
    const junk: Client[] = [];
    try {
      // 2,000 addresses (127.1.a.b), four source ports each: 8,000 flows that read the first half of a hello and wait for the rest.
      const t0 = performance.now();
      for (let i = 0; i < 2000; i++) {
        const host = `127.1.${1 + Math.floor(i / 250)}.${1 + (i % 250)}`;
        const socks = await Promise.all([0, 1, 2, 3].map(() => udpClient(host)));
        for (const s of socks) s.sock.send(d1, port, "127.0.0.1");
        for (const s of socks) s.sock.close();
        if (i % 25 === 24) await sleep(2); // the proxy's receive buffer holds ~150 datagrams: let it read
      }
      console.log(`QUIC pending flood: 8,000 Initials sent in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      // The flood goes on at ~200 Initials/s from other ports while a real client tries.
      for (let i = 0; i < 8; i++) junk.push(await udpClient(`127.1.9.${1 + i}`));
      let n = 0;
      const more = setInterval(() => {
        for (let k = 0; k < 4; k++) junk[n++ % junk.length]!.sock.send(d1, port, "127.0.0.1");
      }, 20);
      const c = await udpClient("127.0.0.2");
      junk.push(c);
      const start = performance.now();
      let sends = 0;
      const resend = setInterval(() => {
        if (c.got.length > 0) return;
        sends++;
        c.sock.send(d1, port, "127.0.0.1");
        c.sock.send(d2, port, "127.0.0.1");
      }, 200);
      try {
        await waitFor(() => c.got.length >= 2, 5000, "the real client's replies");
      } finally {
        clearInterval(resend);
        clearInterval(more);
      }
      console.log(
        `QUIC pending flood: the real client was routed after ${sends} send(s), ${(performance.now() - start).toFixed(0)} ms`,
      );
    } finally {
      for (const x of junk) x.sock.close();
      await proxy.stop();
      be.close();
    }
  }, 120_000);

  test("a hello trickled past hello_timeout is not routed, though each datagram came within it; a whole one is", async () => {
    const be = await udpBackend();
    const port = freePort();
    const proxy = await startProxy("binary", `${config(port, be.port)}[proxy]\nhello_timeout = "2s"\n`);
    const c = await udpClient("127.0.0.2");
    try {
      // The first half, repeated every 800 ms (each restarts nothing), then the second half at ~3.2 s.
      for (let i = 0; i < 4; i++) {
        c.sock.send(d1, port, "127.0.0.1");
        await sleep(800);
      }
      c.sock.send(d2, port, "127.0.0.1");
      await sleep(1000);
      expect(be.got.length).toBe(0);
      expect(c.got.length).toBe(0);
      // The same client, the whole hello at once: routed.
      const ok = await udpClient("127.0.0.3");
      ok.sock.send(d1, port, "127.0.0.1");
      ok.sock.send(d2, port, "127.0.0.1");
      await waitFor(() => be.got.length === 2, 5000, "the whole hello routed");
      ok.sock.close();
    } finally {
      c.sock.close();
      await proxy.stop();
      be.close();
    }
  }, 30_000);

  test("256 pending flows × 15 datagrams of 60 KB grow the proxy's RSS by under 64 MiB", async () => {
    const be = await udpBackend();
    const port = freePort();
    const proxy = await startProxy("binary", `${config(port, be.port)}[proxy]\nworkers = 1\n`, { env: RSS_IS_LIVE });
    const socks: Client[] = [];
    try {
      await sleep(300);
      const before = rssMiB(proxy.pid);
      // The first half of a hello padded to 60,000 bytes: a valid Initial, then zeros (RFC 9000 §14.1 allows the padding).
      const big = padDatagram(sealInitial({ dcid, pn: 0, frames: cryptoFrame(0, hello.subarray(0, 1100)) }), 60_000);
      // 32 addresses × 8 ports: 256 flows (8 per address: the per-address pending limit).
      for (let a = 0; a < 32; a++) for (let p = 0; p < 8; p++) socks.push(await udpClient(`127.2.0.${1 + a}`));
      for (let round = 0; round < 15; round++) {
        for (let i = 0; i < socks.length; i++) {
          socks[i]!.sock.send(big, port, "127.0.0.1");
          if (i % 2 === 1) await sleep(1); // ~3 datagrams of 60 KB fit in the proxy's receive buffer
        }
      }
      await sleep(1000);
      const after = rssMiB(proxy.pid);
      console.log(
        `QUIC held bytes: 256 flows × 15 datagrams of 60 KB: RSS ${before.toFixed(1)} → ${after.toFixed(1)} MiB`,
      );
      expect(after - before).toBeLessThan(64);
      expect(be.got.length).toBe(0);
    } finally {
      for (const x of socks) x.sock.close();
      await proxy.stop();
      be.close();
    }
  }, 120_000);
});

describe("QUIC: held bytes at the bounds", () => {
  // What the proxy holds is bounded (8 MiB of datagrams, MAX_HELD_BYTES, and 1,024 readers of at most 16 KiB); the
  // rest of the growth is the garbage of reading every datagram (copies, decryption), collected later: its peak
  // depends on when the collector runs (measured +61 to +90 MiB here, the most on a busy machine), so the bound is on
  // what stays once it has run — and the peak is held to a loose sanity bound.
  test("1,536 pending flows × 16 datagrams of 1,500 bytes (36 MiB sent, each flow at its own bound, the table churning): what stays is under 64 MiB", async () => {
    const be = await udpBackend();
    const port = freePort();
    const proxy = await startProxy("binary", `${config(port, be.port)}[proxy]\nworkers = 1\n`, { env: RSS_IS_LIVE });
    const socks: Client[] = [];
    try {
      await sleep(300);
      const before = rssMiB(proxy.pid);
      const mid = padDatagram(sealInitial({ dcid, pn: 0, frames: cryptoFrame(0, hello.subarray(0, 1100)) }), 1500);
      for (let a = 0; a < 192; a++) for (let p = 0; p < 8; p++) socks.push(await udpClient(`127.3.0.${1 + a}`));
      let most = before;
      const t0 = performance.now();
      for (let round = 0; round < 16; round++) {
        for (let i = 0; i < socks.length; i++) {
          socks[i]!.sock.send(mid, port, "127.0.0.1");
          if (i % 50 === 49) await sleep(1);
        }
        most = Math.max(most, rssMiB(proxy.pid));
      }
      await sleep(500);
      const peak = Math.max(most, rssMiB(proxy.pid));
      // Settled: the growth falls under the bound once the collector has run (polled for up to 20 s).
      let settled = rssMiB(proxy.pid);
      for (let i = 0; i < 40 && settled - before >= 64; i++) {
        await sleep(500);
        settled = rssMiB(proxy.pid);
      }
      console.log(
        `QUIC held bytes at the bounds: 1,536 flows × 16 datagrams of 1,500 bytes in ${((performance.now() - t0) / 1000).toFixed(1)} s: RSS ${before.toFixed(1)} → ${peak.toFixed(1)} MiB at most, ${settled.toFixed(1)} MiB settled`,
      );
      expect(settled - before).toBeLessThan(64);
      expect(peak - before).toBeLessThan(192);
      expect(be.got.length).toBe(0);
    } finally {
      for (const x of socks) x.sock.close();
      await proxy.stop();
      be.close();
    }
  }, 120_000);
});

describe("QUIC: refusals and routed flows per source", () => {
  test("200 retransmissions of one refused Initial (from 10 source ports) write at most a handful of access records", async () => {
    const be = await udpBackend();
    const port = freePort();
    const proxy = await startProxy("binary", config(port, be.port));
    const socks: Client[] = [];
    try {
      // A one-datagram hello for a name no route has: refused (no_route) once the hello is read.
      const other = handshake(clientHelloBody([sniExtension("nope.example.com"), alpnExtension("h3")]));
      const refused = padDatagram(
        sealInitial({ dcid: Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]), pn: 0, frames: cryptoFrame(0, other) }),
        1250,
      );
      for (let i = 0; i < 10; i++) socks.push(await udpClient("127.0.0.2"));
      for (let i = 0; i < 200; i++) {
        socks[i % 10]!.sock.send(refused, port, "127.0.0.1");
        if (i % 10 === 9) await sleep(5);
      }
      await proxy.waitAccess((r) => r.sni === "nope.example.com");
      await sleep(1000);
      const n = proxy.access().filter((r) => r.sni === "nope.example.com").length;
      console.log(`QUIC refusals: 200 copies of a refused Initial wrote ${n} access record(s)`);
      expect(n).toBeLessThanOrEqual(3);
      expect(be.got.length).toBe(0);
    } finally {
      for (const x of socks) x.sock.close();
      await proxy.stop();
      be.close();
    }
  }, 30_000);

  test("one address holds at most 256 routed flows", async () => {
    const be = await udpBackend();
    const port = freePort();
    // A cap of over 1,024 connections (quic/sources.ts flowsPerSource: a quarter of it, at most 256).
    const proxy = await startProxy("binary", config(port, be.port), { wrap: ["prlimit", "--nofile=20000:20000"] });
    const socks: Client[] = [];
    try {
      const one = padDatagram(
        sealInitial({
          dcid,
          pn: 0,
          frames: cryptoFrame(0, handshake(clientHelloBody([sniExtension(HOST), alpnExtension("h3")]))),
        }),
        1250,
      );
      for (let i = 0; i < 300; i++) {
        const s = await udpClient("127.0.0.2");
        socks.push(s);
        s.sock.send(one, port, "127.0.0.1");
        if (i % 10 === 9) await sleep(5);
      }
      await waitFor(() => be.got.length >= 256, 10_000, "256 flows at the backend");
      await sleep(500);
      expect(new Set(be.got.map((g) => g.from)).size).toBe(256);
      // Another address is not affected.
      const other = await udpClient("127.0.0.3");
      socks.push(other);
      other.sock.send(one, port, "127.0.0.1");
      await waitFor(() => other.got.length === 1, 5000, "another address routed");
    } finally {
      for (const x of socks) x.sock.close();
      await proxy.stop();
      be.close();
    }
  }, 60_000);
});
