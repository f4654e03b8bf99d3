// The CPU a stranger's QUIC Initials cost the proxy (the compiled binary),
// read from /proc/PID/stat before and after: Initials full of one-byte
// CRYPTO frames at gaps, the shape that made reassembly's work grow with
// every frame a flow had sent (src/quic/crypto_stream.ts bounds it).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { udp } from "bun";
import { readFileSync } from "node:fs";
import { freePort, sleep, waitFor } from "../helpers/net";
import { type RunningProxy, startProxy } from "../helpers/proxy";
import { cryptoFrame, padDatagram, sealInitial } from "../helpers/quic";

const FLOWS = 64;
const PER_FLOW = 16; // the datagrams a pending flow may send (MAX_PENDING_DATAGRAMS, server/quic_listener.ts)
const FRAMES = 200;

/** User + system CPU seconds of process `pid`, all its threads (proc(5): utime, stime in clock ticks). */
function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(f[11]) + Number(f[12])) / 100;
}

/** The UDP sockets bound to `port`: bytes waiting in their receive queues, datagrams they dropped (proc(5): /proc/net/udp rx_queue, drops). */
function udpSockets(port: number): { queued: number; drops: number } {
  const hexPort = `:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  const r = { queued: 0, drops: 0 };
  for (const line of readFileSync("/proc/net/udp", "utf8").split("\n").slice(1)) {
    const cols = line.trim().split(/\s+/);
    if (!cols[1]?.endsWith(hexPort)) continue;
    r.queued += Number.parseInt(cols[4]!.split(":")[1]!, 16);
    r.drops += Number(cols[12]);
  }
  return r;
}

/** An Initial of FRAMES one-byte CRYPTO frames at every other offset from `from`, in a 1,200-byte datagram. */
function gappedInitial(dcid: Uint8Array, pn: number, from: number): Uint8Array {
  const frames = new Uint8Array(FRAMES * 5);
  for (let i = 0; i < FRAMES; i++) frames.set(cryptoFrame(from + 2 * i, Uint8Array.of(0x41)), i * 5);
  return padDatagram(sealInitial({ dcid, pn, frames }));
}

describe("QUIC reader CPU under gapped CRYPTO frames (binary)", () => {
  let proxy: RunningProxy;
  const port = freePort();
  const clients: udp.Socket<"uint8array">[] = [];

  beforeAll(async () => {
    // One client address per flow: the per-source bounds of the listener are not what is measured here.
    for (let k = 0; k < FLOWS; k++)
      clients.push(await Bun.udpSocket({ hostname: `127.0.1.${k + 1}`, binaryType: "uint8array" }));
    proxy = await startProxy(
      "binary",
      `[[listeners]]\naddr = "127.0.0.1:${port}"\n  [[listeners.routes]]\n  hostname = "app.example.com"\n  backend = "127.0.0.1:1"\n` +
        `[[listeners]]\naddr = "127.0.0.1:${port}"\nprotocol = "quic"\n`,
    );
  });

  afterAll(async () => {
    for (const c of clients) c.close();
    await proxy?.stop();
  });

  /** Send rounds of one datagram per flow, each round once the proxy has read the last (its receive queues empty); the proxy's CPU seconds for all of it, and the datagrams the kernel dropped. */
  async function send(rounds: Uint8Array[][]): Promise<{ cpu: number; ms: number; drops: number }> {
    const drops0 = udpSockets(port).drops;
    const cpu0 = cpuSeconds(proxy.pid);
    const t0 = performance.now();
    for (const round of rounds) {
      for (const [k, d] of round.entries()) clients[k]!.send(d, port, "127.0.0.1");
      await waitFor(() => udpSockets(port).queued === 0, 60_000, "the proxy's UDP receive queues to empty");
    }
    // The last datagrams read may still be in hand: until the CPU count holds still for 200 ms.
    for (let last = -1, end = Date.now() + 60_000; cpuSeconds(proxy.pid) !== last && Date.now() < end; ) {
      last = cpuSeconds(proxy.pid);
      await sleep(200);
    }
    return { cpu: cpuSeconds(proxy.pid) - cpu0, ms: performance.now() - t0, drops: udpSockets(port).drops - drops0 };
  }

  test(`${FLOWS * PER_FLOW} Initials of ${FRAMES} one-byte gapped CRYPTO frames (${FLOWS} flows × ${PER_FLOW}) cost under 1 s of proxy CPU in all`, async () => {
    const dcids = Array.from({ length: FLOWS }, (_, k) => Uint8Array.from([0xc0, k, 1, 2, 3, 4, 5, 6]));
    // Datagram i of a flow carries offsets no earlier datagram of it did: unbounded, its ranges would pile up.
    const rounds = Array.from({ length: PER_FLOW }, (_, i) =>
      dcids.map((dcid) => gappedInitial(dcid, i, 1 + 2 * FRAMES * i)),
    );
    const r = await send(rounds);
    console.log(
      `QUIC gapped CRYPTO: ${FLOWS * PER_FLOW} datagrams (${FLOWS} flows × ${PER_FLOW}): proxy CPU ${r.cpu.toFixed(2)} s (${((r.cpu * 1e6) / (FLOWS * PER_FLOW)).toFixed(0)} µs a datagram), ${r.ms.toFixed(0)} ms`,
    );
    expect(r.drops).toBe(0); // every datagram was read
    expect(r.cpu).toBeLessThan(1);
  }, 180_000);

  test(`${FLOWS * PER_FLOW} such Initials, each with a connection ID of its own (each one read): the proxy CPU per datagram, under 1 s in all`, async () => {
    const rounds = Array.from({ length: PER_FLOW }, (_, i) =>
      Array.from({ length: FLOWS }, (_, k) =>
        gappedInitial(Uint8Array.from([0xd0, k, i, 3, 4, 5, 6, 7]), 0, 1 + 2 * FRAMES * i),
      ),
    );
    const r = await send(rounds);
    console.log(
      `QUIC gapped CRYPTO, a connection ID each: ${FLOWS * PER_FLOW} datagrams: proxy CPU ${r.cpu.toFixed(2)} s (${((r.cpu * 1e6) / (FLOWS * PER_FLOW)).toFixed(0)} µs a datagram), ${r.ms.toFixed(0)} ms`,
    );
    expect(r.drops).toBe(0);
    expect(r.cpu).toBeLessThan(1);
  }, 180_000);
});
