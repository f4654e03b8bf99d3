// Proxy-bound load (issue 11): many short connections, each sending a
// recorded ClientHello and reading the backend's fixed reply, then closing.
// No TLS crypto on either side, so the proxy, not the handshake, is the
// bottleneck. Usage: bun hello_load.ts PORT SECONDS CONCURRENCY HELLO_FILE REPLY_BYTES
// Prints "done COMPLETED ERRORS".
import { readFileSync } from "node:fs";

const [port, seconds, concurrency, helloFile, replyBytes] = [Number(process.argv[2]), Number(process.argv[3]), Number(process.argv[4]), process.argv[5]!, Number(process.argv[6])];
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

await Promise.all(Array.from({ length: concurrency }, loop));
console.log(`done ${completed} ${errors}`);
process.exit(0);
