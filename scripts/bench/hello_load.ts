// Proxy-bound load: many short connections, each sending a
// recorded ClientHello and reading the backend's fixed reply, then closing.
// No TLS crypto on either side, so the proxy, not the handshake, is the
// bottleneck. Usage: bun hello_load.ts PORT SECONDS CONCURRENCY HELLO_FILE REPLY_BYTES [RATE]
// Without RATE each client starts its next connection as soon as one ends
// (saturation). With RATE (connections per second, all clients together)
// starts are paced on a fixed schedule, so the proxy's CPU per connection
// is measured at a load it can carry with cores to spare. Prints
// "done COMPLETED ERRORS".
import { readFileSync } from "node:fs";

const [port, seconds, concurrency, helloFile, replyBytes] = [
  Number(process.argv[2]),
  Number(process.argv[3]),
  Number(process.argv[4]),
  process.argv[5]!,
  Number(process.argv[6]),
];
const rate = process.argv[7] === undefined ? 0 : Number(process.argv[7]);
const hello = new Uint8Array(readFileSync(helloFile));
const end = Date.now() + seconds * 1000;
let completed = 0;
let errors = 0;

function one(): Promise<void> {
  return new Promise((resolve) => {
    let got = 0;
    let settled = false;
    const settle = (ok: boolean) => {
      if (settled) return;
      settled = true;
      if (ok) completed++;
      else errors++;
      resolve();
    };
    Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        open: (s) => void s.write(hello),
        data: (s, d) => {
          got += d.length;
          if (got >= replyBytes) {
            s.end();
            settle(true);
          }
        },
        close: () => settle(got >= replyBytes),
        connectError: () => settle(false),
      },
    }).catch(() => settle(false));
  });
}

async function loop(): Promise<void> {
  while (Date.now() < end) await one();
}

/** Client i of n starts at i/rate and then every n/rate seconds; a late start is not made up. */
async function paced(i: number): Promise<void> {
  const period = (concurrency * 1000) / rate;
  let next = performance.now() + (i * 1000) / rate;
  while (Date.now() < end) {
    const wait = next - performance.now();
    if (wait > 0) await Bun.sleep(wait);
    next = Math.max(next + period, performance.now());
    await one();
  }
}

await Promise.all(Array.from({ length: concurrency }, (_, i) => (rate > 0 ? paced(i) : loop())));
console.log(`done ${completed} ${errors}`);
process.exit(0);
