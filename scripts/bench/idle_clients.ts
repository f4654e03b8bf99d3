// Holds N idle TLS connections through a proxy, then proves each still works.
// Protocol on stdio: prints "ready OPEN FAILED" once every handshake is done;
// on the line "check" sends one request on each and prints "ok WORKING".
// Usage: bun idle_clients.ts PORT COUNT SERVERNAME
import { connect, type TLSSocket } from "node:tls";

const [port, count, servername] = [Number(process.argv[2]), Number(process.argv[3]), process.argv[4]!];
const sockets: TLSSocket[] = [];
let failed = 0;

function open(): Promise<void> {
  return new Promise((resolve) => {
    const s = connect({ host: "127.0.0.1", port, servername, rejectUnauthorized: false });
    s.once("secureConnect", () => {
      sockets.push(s);
      resolve();
    });
    s.once("error", () => {
      failed++;
      resolve();
    });
  });
}

// Open in waves so the accept queues are not the thing being measured.
for (let i = 0; i < count; i += 100) {
  await Promise.all(Array.from({ length: Math.min(100, count - i) }, open));
}
console.log(`ready ${sockets.length} ${failed}`);

for await (const line of console) {
  if (line.trim() !== "check") continue;
  let ok = 0;
  await Promise.all(
    sockets.map(
      (s) =>
        new Promise<void>((resolve) => {
          let text = "";
          const t = setTimeout(resolve, 20_000);
          s.on("data", (d: Buffer) => {
            text += d.toString("latin1");
            if (text.includes("\r\n\r\n") && text.startsWith("HTTP/1.1 200")) {
              ok++;
              clearTimeout(t);
              resolve();
            }
          });
          s.on("error", () => resolve());
          s.write(`GET /small HTTP/1.1\r\nHost: ${servername}\r\n\r\n`);
        }),
    ),
  );
  console.log(`ok ${ok}`);
  process.exit(0);
}
