// The takeover load run, as its own program so that tests/e2e/takeover.test.ts
// can start it inside a network namespace of its own (where it may set
// net.ipv4.tcp_migrate_req without touching the machine's). Everything —
// backends, the compiled binary, the clients — runs here on loopback; every
// loop is bounded; the last stdout line is the result as JSON.
//
//   MCPROXY_TAKEOVERS  takeovers to run (alternating configs that add and remove a listener)
//   MCPROXY_BINARY     the compiled binary
//   MCPROXY_NEW_EVERY_MS  the pace of new TLS connections (default 25 ms: 40/s)
//
// Load while they run: new TLS connections (real TLS, to a TLS backend)
// paced at a steady rate; 8 paced downloads of 24 MiB, sha-checked, one
// after another on each of 8 lanes; 500 idle connections that send a byte
// every 2–4 s and expect one back, reconnecting after a clean close.
import type { Socket } from "bun";
import { openSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { testCert } from "../helpers/certs";
import { helloFor } from "../helpers/hello_builder";
import { freePort, percentile, sleep } from "../helpers/net";
import { cleanEnv, tempDir } from "../helpers/proxy";
import { pacedDownload, streamBackend, streamHash } from "../helpers/stream";
import { tlsBackend, tlsGet } from "../helpers/tls";

const TAKEOVERS = Number(process.env.MCPROXY_TAKEOVERS ?? "10");
const BINARY = process.env.MCPROXY_BINARY!;
const IDLE = 500;
const LANES = 8;
const DOWNLOAD = 24 * 1024 * 1024;
const NEW_EVERY_MS = Number(process.env.MCPROXY_NEW_EVERY_MS ?? "25");
const SHUTDOWN_TIMEOUT_S = 4;

const cert = testCert();
const web = tlsBackend("web", cert);
const seed = 7;
const dl = streamBackend(seed, DOWNLOAD);
const want = streamHash(seed, DOWNLOAD);
// The idle connections' backend: after the relayed hello, one byte back for every "P".
const helloIdle = helloFor("idle.example.com");
const pong = Bun.listen<{ skip: number }>({
  hostname: "127.0.0.1",
  port: 0,
  socket: {
    open(s) {
      s.data = { skip: helloIdle.length };
    },
    data(s, d) {
      let n = 0;
      for (let i = 0; i < d.length; i++) {
        if (s.data.skip > 0) s.data.skip--;
        else if (d[i] === 0x50) n++;
      }
      if (n > 0) s.write("p".repeat(n));
    },
  },
});

const dir = tempDir("mcproxy-takeover-");
const p1 = freePort();
const p2 = freePort();
const cfgFile = join(dir, "mc-proxy.toml");
const routes = `  [[listeners.routes]]\n  hostname = "alpha.example.com"\n  backend = "127.0.0.1:${web.port}"\n  [[listeners.routes]]\n  hostname = "dl.example.com"\n  backend = "127.0.0.1:${dl.port}"\n  [[listeners.routes]]\n  hostname = "idle.example.com"\n  backend = "127.0.0.1:${pong.port}"\n`;
const config = (two: boolean) =>
  `[[listeners]]\naddr = "127.0.0.1:${p1}"\n${routes}` +
  (two ? `[[listeners]]\naddr = "127.0.0.1:${p2}"\n${routes}` : "") +
  `[grpc]\naddr = "unix:admin.sock"\n[proxy]\nworkers = 2\nshutdown_timeout = "${SHUTDOWN_TIMEOUT_S}s"\nidle_timeout = "5m"\n[log]\nlevel = "warn"\n`;
writeFileSync(cfgFile, config(false));
// Whatever happens to this program, no process of the chain outlives it (it would keep the namespace alive).
process.on("exit", () => void Bun.spawnSync(["pkill", "-KILL", "-f", cfgFile]));
// Every process of the chain (and each reload) appends to one log.
const logFile = openSync(join(dir, "proxy.log"), "a");
const first = Bun.spawn([BINARY, "server", "-c", cfgFile], {
  cwd: dir,
  env: cleanEnv(),
  stdin: "ignore",
  stdout: logFile,
  stderr: logFile,
});
for (let i = 0; ; i++) {
  const up = await Bun.connect({ hostname: "127.0.0.1", port: p1, socket: { data() {} } }).then(
    (s) => {
      s.end();
      return true;
    },
    () => false,
  );
  if (up) break;
  if (i > 200) throw new Error("the first process did not listen within 10 s");
  await sleep(50);
}

let running = true;
const result = {
  takeovers: 0,
  takeoverMs: [] as number[],
  reloadFailures: [] as string[],
  newConns: 0,
  newFailed: 0,
  newFailures: [] as string[],
  second: { tried: 0, ok: 0 },
  downloads: 0,
  downloadsBad: 0,
  idlePings: 0,
  idleFailed: 0,
  idleFailures: [] as string[],
  idleClosedCleanly: 0,
};

// New TLS connections at a steady pace, each a full request and answer.
const paced = (async () => {
  while (running) {
    const t = performance.now();
    result.newConns++;
    void tlsGet(p1, "alpha.example.com", cert, { timeoutMs: 5000 }).then((r) => {
      if (r.error !== null || !r.body.includes("hello from web")) {
        result.newFailed++;
        if (result.newFailures.length < 5) result.newFailures.push(r.error ?? r.body.slice(0, 80));
      }
    });
    await sleep(Math.max(0, NEW_EVERY_MS - (performance.now() - t)));
  }
})();

// 8 lanes of paced 24 MiB downloads, each checked whole.
const lanes = Array.from({ length: LANES }, async () => {
  while (running) {
    // A refused or reset connect is a lost new connection (counted with them), not a cut transfer.
    const d = await pacedDownload(p1, helloFor("dl.example.com"), 25).catch((e: Error) => e);
    if (d instanceof Error) {
      result.newConns++;
      result.newFailed++;
      if (result.newFailures.length < 5) result.newFailures.push(`download connect: ${d.message}`);
      await sleep(100);
      continue;
    }
    await Promise.race([d.done, sleep(60_000)]);
    result.downloads++;
    if (d.reader.received !== DOWNLOAD || d.reader.digest() !== want) result.downloadsBad++;
  }
});

// 500 idle connections: a byte every 2–4 s, answered; a clean close (a drain deadline) is counted and replaced.
type Idle = { waiting: number; closed: boolean; failed: boolean };
async function idleClient(): Promise<void> {
  while (running) {
    const st: Idle = { waiting: 0, closed: false, failed: false };
    let sock: Socket<Idle>;
    try {
      sock = await Bun.connect<Idle>({
        hostname: "127.0.0.1",
        port: p1,
        data: st,
        socket: {
          data(s, d) {
            s.data.waiting -= d.length;
          },
          close(s, err) {
            s.data.closed = true;
            if (err !== undefined) {
              s.data.failed = true;
              if (result.idleFailures.length < 5) result.idleFailures.push(`closed with ${err.message}`);
            }
          },
          error(s, err) {
            s.data.failed = true;
            if (result.idleFailures.length < 5) result.idleFailures.push(err.message);
          },
        },
      });
    } catch (e) {
      result.idleFailed++;
      if (result.idleFailures.length < 5) result.idleFailures.push(`connect: ${(e as Error).message}`);
      await sleep(500);
      continue;
    }
    sock.write(helloIdle);
    while (running && !st.closed) {
      await sleep(2000 + Math.random() * 2000);
      if (!running || st.closed) break;
      st.waiting++;
      sock.write("P");
      result.idlePings++;
      const end = Date.now() + 3000;
      while (st.waiting > 0 && !st.closed && Date.now() < end) await sleep(20);
      if (st.waiting > 0 && !st.closed) {
        st.failed = true;
        if (result.idleFailures.length < 5) result.idleFailures.push("no answer within 3 s");
        sock.end();
        break;
      }
    }
    if (st.failed) result.idleFailed++;
    else if (st.closed && running) result.idleClosedCleanly++;
    if (!st.closed) sock.end();
  }
}
const idles = Array.from({ length: IDLE }, async (_, i) => {
  await sleep((i * 3000) / IDLE);
  await idleClient();
});

// The takeovers: every 2 s, alternating configs (the second listener added, then removed).
await sleep(3000);
for (let k = 1; k <= TAKEOVERS; k++) {
  const two = k % 2 === 1;
  writeFileSync(cfgFile, config(two));
  const t0 = performance.now();
  const r = Bun.spawn([BINARY, "reload", "-c", cfgFile], {
    cwd: dir,
    env: cleanEnv(),
    stdin: "ignore",
    stdout: logFile,
    stderr: logFile,
  });
  const code = await r.exited;
  if (code !== 0) {
    result.reloadFailures.push(`takeover ${k}: exit ${code}`);
    continue;
  }
  result.takeovers++;
  result.takeoverMs.push(Math.round(performance.now() - t0));
  // The second listener serves while it is in the config, and is gone after.
  result.second.tried++;
  const g = await tlsGet(p2, "alpha.example.com", cert, { timeoutMs: 3000 });
  if (two === (g.error === null && g.body.includes("hello from web"))) result.second.ok++;
  await sleep(2000);
}
await sleep(1000);
running = false;
await paced;
await Promise.all(lanes);
await Promise.all(idles);
// Let the last paced requests finish, then stop the last process.
await sleep(1000);
Bun.spawnSync(["sh", "-c", `pkill -TERM -f "${cfgFile}"`]);
await Promise.race([first.exited, sleep(100)]);
await sleep(SHUTDOWN_TIMEOUT_S * 1000 + 500);
web.stop();
dl.stop();
pong.stop(true);
const ms = result.takeoverMs;
console.log(
  JSON.stringify({
    ...result,
    p50: ms.length ? percentile(ms, 0.5) : null,
    p99: ms.length ? percentile(ms, 0.99) : null,
    log: join(dir, "proxy.log"),
  }),
);
process.exit(0);
