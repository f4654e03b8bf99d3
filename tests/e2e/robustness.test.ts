// Hostile bytes from the network, end to end against the compiled binary:
// a bounded flood of garbage, truncated and mutated hellos, abandoned
// half-hellos and unknown names. The process must stay up, account for every
// connection, hold none of them afterwards, and not grow.
import { expect, test } from "bun:test";
import { join } from "node:path";
import { AdminClient } from "../../src/cli/admin_client";
import { unixGrpcConfig } from "../helpers/admin";
import { clientHelloBody, handshake, helloFor, records, sniExtension } from "../helpers/hello_builder";
import { freePort, sleep } from "../helpers/net";
import { RSS_IS_LIVE, listenerToml, startProxy, tempDir } from "../helpers/proxy";
import { prng, randInt } from "../helpers/prng";

const CONNECTIONS = 1500;
const CONCURRENCY = 50;

let connected = 0;

/** One hostile client: send `bytes` (in small pieces), then close, reset, or just stay silent. */
async function hostile(port: number, bytes: Uint8Array, ending: "close" | "reset" | "stay"): Promise<void> {
  await new Promise<void>((resolve) => {
    const sock = require("node:net").createConnection({ host: "127.0.0.1", port });
    const done = () => {
      clearTimeout(t);
      resolve();
    };
    const t = setTimeout(() => {
      sock.destroy();
      done();
    }, 3000);
    sock.on("error", done);
    sock.on("close", done);
    sock.on("connect", async () => {
      connected++;
      for (let o = 0; o < bytes.length; o += 97) sock.write(bytes.subarray(o, o + 97));
      if (ending === "close") sock.end();
      else if (ending === "reset") typeof sock.resetAndDestroy === "function" ? sock.resetAndDestroy() : sock.destroy();
      else await sleep(1500); // outlive hello_timeout
    });
  });
}

test(`${CONNECTIONS} hostile connections: the proxy stays up, accounts for all, holds none, and does not grow`, async () => {
  const dir = tempDir();
  const port = freePort();
  const proxy = await startProxy(
    "binary",
    `${listenerToml(port, { "known.example.com": freePort() })}
[grpc]
addr = "unix:admin.sock"
[proxy]
hello_timeout = "1s"
connect_timeout = "500ms"
`,
    { dir, env: RSS_IS_LIVE },
  );
  const admin = new AdminClient(unixGrpcConfig(join(dir, "admin.sock")));
  try {
    const rand = prng(7);
    const good = helloFor("known.example.com");
    const makers: (() => [Uint8Array, "close" | "reset" | "stay"])[] = [
      () => [new Uint8Array(randInt(rand, 1, 2000)).map(() => randInt(rand, 0, 255)), "close"],
      () => [good.subarray(0, randInt(rand, 1, good.length - 1)), "close"],
      () => [good.subarray(0, randInt(rand, 1, good.length - 1)), "stay"],
      () => [good.subarray(0, randInt(rand, 1, good.length - 1)), "reset"],
      () => {
        const m = good.slice();
        for (let k = 0; k < 4; k++) m[randInt(rand, 0, m.length - 1)] = randInt(rand, 0, 255);
        return [m, "close"];
      },
      () => [helloFor(`nope${randInt(rand, 0, 9999)}.example.org`), "close"],
      () => [records(handshake(clientHelloBody([sniExtension("one.example", "two.example")])), 1), "close"],
      () => [new Uint8Array([22, 3, 1, 0xff, 0xff]), "stay"],
      // A known name: the backend refuses, so this ends in connect_failed.
      () => [good, "close"],
    ];
    const rssBefore = proxy.rss();
    let next = 0;
    const worker = async () => {
      while (next < CONNECTIONS) {
        next++;
        const [bytes, ending] = makers[randInt(rand, 0, makers.length - 1)]!();
        await hostile(port, bytes, ending);
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));

    // Every connection is accounted for and none is left open.
    let status = { total_connections: 0, active_connections: -1, outcomes: [] as { outcome: string; count: number }[] };
    for (let i = 0; i < 150; i++) {
      status = await admin.call("GetStatus");
      if (status.total_connections >= connected && status.active_connections === 0) break;
      await sleep(100);
    }
    expect(status.active_connections).toBe(0);
    console.log(
      `hostile flood: ${connected} of ${CONNECTIONS} clients connected; proxy counted ${status.total_connections}`,
    );
    expect(status.total_connections).toBe(connected);
    const outcomes = Object.fromEntries(status.outcomes.map((o) => [o.outcome, o.count]));
    for (const o of ["not_tls", "malformed", "hello_timeout", "client_closed", "no_route", "connect_failed"])
      expect(outcomes[o] ?? 0).toBeGreaterThan(0);
    expect(proxy.proc.exitCode).toBeNull();
    await sleep(500);
    const growth = proxy.rss() - rssBefore;
    console.log(`hostile flood: outcomes ${JSON.stringify(outcomes)}; RSS growth ${(growth / 2 ** 20).toFixed(1)} MiB`);
    expect(growth).toBeLessThan(32 * 2 ** 20);
    expect(connected).toBeGreaterThan(CONNECTIONS * 0.95);
    expect(proxy.access().length).toBe(connected);
  } finally {
    admin.close();
    await proxy.stop();
  }
}, 90_000);
