// With the purge delay at a second (how `mc-proxy server` runs:
// docs/PERFORMANCE.md "The allocator"), memory freed during a burst stays in
// the process for the rest of it and for a burst that follows at once. What
// it keeps must be a high-water mark, not a leak: later identical bursts
// reuse it, so the resident size they leave stays near the first one's.
import { expect, test } from "bun:test";
import type { Socket } from "bun";
import { readFileSync } from "node:fs";
import { PURGE_DELAY_MS, PURGE_VARIABLE } from "../../src/cli/allocator";
import { helloFor } from "../helpers/hello_builder";
import { freePort, sleep } from "../helpers/net";
import { listenerToml, startProxy } from "../helpers/proxy";

const CLIENTS = 400;
const PER_CLIENT = 512 * 1024;
const BURSTS = 4;
const MiB = 2 ** 20;

/** A backend that answers each connection's first bytes with PER_CLIENT bytes, then ends it. */
function sender(): { port: number; stop(): void } {
  const block = new Uint8Array(64 * 1024).fill(0x5a);
  const left = new Map<Socket<unknown>, number>();
  const pump = (s: Socket<unknown>) => {
    let n = left.get(s) ?? 0;
    while (n > 0) {
      const w = s.write(block.subarray(0, Math.min(n, block.length)));
      n -= w;
      if (w === 0) break;
    }
    left.set(s, n);
    if (n === 0) {
      left.delete(s);
      s.end();
    }
  };
  const server = Bun.listen<unknown>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      data: (s) => {
        if (!left.has(s)) {
          left.set(s, PER_CLIENT);
          pump(s);
        }
      },
      drain: (s) => pump(s),
      close: (s) => void left.delete(s),
      error: () => {},
    },
  });
  return { port: server.port, stop: () => server.stop(true) };
}

/** CLIENTS clients at once, each reading PER_CLIENT bytes through the proxy; how many got all of them. */
async function burst(port: number): Promise<number> {
  const hello = helloFor("bulk.example.com");
  const one = () =>
    new Promise<boolean>((resolve) => {
      let got = 0;
      Bun.connect({
        hostname: "127.0.0.1",
        port,
        socket: {
          open: (s) => void s.write(hello),
          data: (_s, d) => void (got += d.length),
          close: () => resolve(got === PER_CLIENT),
          error: () => resolve(false),
        },
      }).catch(() => resolve(false));
    });
  const done = await Promise.all(Array.from({ length: CLIENTS }, one));
  return done.filter(Boolean).length;
}

test("purge delay at a second: later bursts reuse what the first left; the resident size stays near its first high-water mark", async () => {
  const backend = sender();
  const port = freePort();
  const proxy = await startProxy("binary", listenerToml(port, { "bulk.example.com": backend.port }));
  try {
    // The shipped behaviour: the server runs with the purge delay it sets.
    expect(readFileSync(`/proc/${proxy.pid}/environ`, "latin1").split("\0")).toContain(
      `${PURGE_VARIABLE}=${PURGE_DELAY_MS}`,
    );
    const before = proxy.rss();
    const after: number[] = [];
    for (let i = 0; i < BURSTS; i++) {
      expect(await burst(port)).toBe(CLIENTS);
      await sleep(300);
      after.push(proxy.rss());
    }
    console.log(
      `allocator reuse: RSS ${(before / MiB).toFixed(1)} MiB at start; after bursts ${after.map((r) => (r / MiB).toFixed(1)).join(", ")} MiB (${CLIENTS} × ${PER_CLIENT / 1024} KiB each)`,
    );
    // The first burst leaves its high-water mark. The later ones relay the same bytes again and may add a little
    // (the JavaScript heap grows until its collector's next threshold, purge delay or not): kept buffers reused,
    // not kept again, leave them well under 5 % of what they relayed (one relay chunk kept per read would be 100 %).
    const relayedLater = (BURSTS - 1) * CLIENTS * PER_CLIENT;
    expect(after[BURSTS - 1]! - after[0]!).toBeLessThan(relayedLater * 0.05);
  } finally {
    await proxy.stop();
    backend.stop();
  }
}, 120_000);
