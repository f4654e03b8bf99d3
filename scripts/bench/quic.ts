// `bun run bench -- --quic [--rounds N] [--seconds S] [--workers N]`: datagrams through a
// QUIC listener against the same traffic sent straight to the backend and
// through nginx's UDP stream proxy (`listen … udp`), interleaved per round.
// Each of FLOWS client sockets opens with a client Initial (so mc-proxy
// routes it by name; the others just forward it), then keeps WINDOW
// datagrams of 1,200 bytes in flight to a UDP echo backend for S seconds.
// Reports echoed datagrams per second, proxy CPU per GB relayed (both
// directions) and the ratios to direct and to nginx. `--workers N` is
// mc-proxy's `[proxy] workers` (nginx's worker_processes alike; 1 by default).
import type { udp } from "bun";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { alpnExtension, clientHelloBody, handshake, sniExtension } from "../../tests/helpers/hello_builder";
import { cryptoFrame, padDatagram, sealInitial } from "../../tests/helpers/quic";
import { processTree, stopProcess, treeCpu } from "./procstat";
import { median } from "./stats";
import { ROOT, USER_ENV, WORK } from "./setup";

const FLOWS = 8;
const WINDOW = 16;
const SIZE = 1200;
const PORTS = { echo: 21701, mcproxy: 21702, nginx: 21703 };
type Sys = "direct" | "mc-proxy" | "nginx-udp";

/** `--workers N`: event loops of mc-proxy, worker processes of nginx. */
function workersArg(): number {
  const i = process.argv.indexOf("--workers");
  const n = i >= 0 ? Number(process.argv[i + 1]) : 1;
  if (!Number.isInteger(n) || n < 1) throw new Error(`--workers ${process.argv[i + 1]}: a whole number of at least 1`);
  return n;
}

interface Result {
  dgramsPerS: number;
  cpuSPerGB: number;
}

async function echoBackend(): Promise<udp.Socket<"uint8array">> {
  return Bun.udpSocket({
    hostname: "127.0.0.1",
    port: PORTS.echo,
    binaryType: "uint8array",
    socket: { data: (s, d, port, addr) => void s.send(d, port, addr) },
  });
}

async function load(port: number, seconds: number): Promise<{ echoed: number; seconds: number }> {
  const hello = handshake(clientHelloBody([sniExtension("bench.example.com"), alpnExtension("h3")]));
  const payload = new Uint8Array(SIZE).fill(0x41);
  payload[0] = 0x41; // a short-header first byte: never an Initial
  let echoed = 0;
  let running = true;
  const socks: udp.Socket<"uint8array">[] = [];
  for (let i = 0; i < FLOWS; i++) {
    const dcid = Uint8Array.from([i, 1, 2, 3, 4, 5, 6, 7]);
    const s = await Bun.udpSocket({
      hostname: "127.0.0.1",
      binaryType: "uint8array",
      socket: {
        data: (sock, d) => {
          if (d.length !== SIZE) return;
          echoed++;
          if (running) sock.send(payload, port, "127.0.0.1");
        },
      },
    });
    s.send(padDatagram(sealInitial({ dcid, pn: 0, frames: cryptoFrame(0, hello) }), SIZE + 1), port, "127.0.0.1");
    socks.push(s);
  }
  await Bun.sleep(200);
  for (const s of socks) for (let w = 0; w < WINDOW; w++) s.send(payload, port, "127.0.0.1");
  const t0 = performance.now();
  const e0 = echoed;
  await Bun.sleep(seconds * 1000);
  const got = echoed - e0;
  const took = (performance.now() - t0) / 1000;
  running = false;
  await Bun.sleep(100);
  for (const s of socks) s.close();
  return { echoed: got, seconds: took };
}

async function run(sys: Sys, seconds: number, workers: number, withFds: (c: string[]) => string[]): Promise<Result> {
  let proc: import("bun").Subprocess | null = null;
  let port = PORTS.echo;
  if (sys === "mc-proxy") {
    const conf = join(WORK, "quic-bench.toml");
    const db = join(WORK, "run/quic-bench.db");
    writeFileSync(
      conf,
      `[database]\npath = "${db}"\n[[listeners]]\naddr = "127.0.0.1:${PORTS.mcproxy}"\n  [[listeners.routes]]\n  hostname = "bench.example.com"\n  backend = "127.0.0.1:${PORTS.echo}"\n[[listeners]]\naddr = "127.0.0.1:${PORTS.mcproxy}"\nprotocol = "quic"\n[proxy]\nworkers = ${workers}\n[log]\nlevel = "warn"\n`,
    );
    proc = Bun.spawn(withFds([join(ROOT, "dist/mc-proxy"), "server", "-c", conf]), {
      env: USER_ENV,
      stdout: "ignore",
      stderr: "inherit",
    });
    port = PORTS.mcproxy;
  } else if (sys === "nginx-udp") {
    const conf = join(WORK, "nginx-udp.conf");
    writeFileSync(
      conf,
      `load_module /usr/lib/nginx/modules/ngx_stream_module.so;\nworker_processes ${workers};\ndaemon off;\npid ${join(WORK, "nginx-udp.pid")};\nerror_log stderr error;\nevents { worker_connections 4096; }\nstream {\n  server {\n    listen 127.0.0.1:${PORTS.nginx} udp;\n    proxy_pass 127.0.0.1:${PORTS.echo};\n    proxy_timeout 30s;\n  }\n}\n`,
    );
    proc = Bun.spawn(withFds(["nginx", "-c", conf]), { stdout: "ignore", stderr: "inherit" });
    port = PORTS.nginx;
  }
  await Bun.sleep(700);
  const pids = proc === null ? [] : processTree(proc.pid);
  // Warm-up, then the measured run.
  await load(port, 1);
  const c0 = treeCpu(pids);
  const r = await load(port, seconds);
  const cpu = treeCpu(pids) - c0;
  if (proc !== null) await stopProcess(proc);
  const gb = (r.echoed * SIZE * 2) / 1e9;
  return { dgramsPerS: r.echoed / r.seconds, cpuSPerGB: proc === null ? 0 : cpu / gb };
}

export async function quicBench(rounds: number, seconds: number, withFds: (c: string[]) => string[]): Promise<void> {
  const workers = workersArg();
  const echo = await echoBackend();
  const systems: Sys[] = ["direct", "mc-proxy", "nginx-udp"];
  const res = new Map<Sys, Result[]>(systems.map((s) => [s, []]));
  for (let round = 1; round <= rounds; round++) {
    const order = round % 2 === 0 ? [...systems].reverse() : systems;
    for (const sys of order) {
      const r = await run(sys, seconds, workers, withFds);
      res.get(sys)!.push(r);
      console.log(
        `quic: round ${round}/${rounds} ${sys}: ${r.dgramsPerS.toFixed(0)} echoed datagrams/s, ${r.cpuSPerGB.toFixed(2)} s CPU per GB`,
      );
    }
  }
  echo.close();
  const med = (s: Sys, k: keyof Result) => median(res.get(s)!.map((r) => r[k]));
  const d = med("direct", "dgramsPerS");
  const n = med("nginx-udp", "dgramsPerS");
  console.log(
    `\n\`bun run bench -- --quic\`: ${rounds} interleaved rounds, ${seconds} s each after a 1 s warm-up; ${FLOWS} flows × ${WINDOW} datagrams of ${SIZE} bytes in flight to a UDP echo backend; workers = ${workers} (nginx worker_processes ${workers}).\n`,
  );
  console.log(
    "| system | echoed datagrams/s (per round) | × direct | × nginx-udp | proxy CPU s per GB (both ways) | × nginx-udp |\n|---|---:|---:|---:|---:|---:|",
  );
  for (const s of systems) {
    const v = med(s, "dgramsPerS");
    const cpu = med(s, "cpuSPerGB");
    const per = res
      .get(s)!
      .map((r) => r.dgramsPerS.toFixed(0))
      .join(" / ");
    const ncpu = med("nginx-udp", "cpuSPerGB");
    console.log(
      `| ${s} | ${v.toFixed(0)} (${per}) | ${(v / d).toFixed(2)}× | ${(v / n).toFixed(2)}× | ${s === "direct" ? "–" : cpu.toFixed(2)} | ${s === "direct" ? "–" : `${(cpu / ncpu).toFixed(2)}×`} |`,
    );
  }
}
