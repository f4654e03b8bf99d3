// QUIC flows inside the process's descriptor budget (host_limits.ts), and
// counted under their own listener ("ADDR/quic", the access log's label):
// each routed flow holds a backend socket, so it takes a place of the
// connection cap like a TCP connection; a flood of flows under a low
// `nofile` limit is refused with over_capacity instead of taking every
// descriptor, and TCP, the admin API and /metrics keep answering.
import { describe, expect, test } from "bun:test";
import type { Socket, udp } from "bun";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { alpnExtension, clientHelloBody, handshake, helloFor, sniExtension } from "../helpers/hello_builder";
import { freePort, rawExchange, sleep, waitFor } from "../helpers/net";
import { BINARY, type RunningProxy, cleanEnv, startProxy } from "../helpers/proxy";
import { cryptoFrame, padDatagram, sealInitial } from "../helpers/quic";

/** CPU seconds (user + system) the process has used, from /proc/PID/stat (clock ticks of 1/100 s). */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / 100;
}

/** One client Initial carrying a whole ClientHello for `host` (ALPN h3): a flow's first and only datagram. */
function initialFor(host: string, n: number): Uint8Array {
  const dcid = Uint8Array.from([n >> 8, n & 0xff, 7, 6, 5, 4, 3, 2]);
  const hello = handshake(clientHelloBody([sniExtension(host), alpnExtension("h3")]));
  return padDatagram(sealInitial({ dcid, pn: 0, frames: cryptoFrame(0, hello) }), 1250);
}

/** A TCP echo backend and a UDP backend on the same port number (the route's one backend serves both listeners); the UDP one answers each datagram with one byte. */
async function backends(): Promise<{ port: number; flows: Set<number>; close(): void }> {
  const flows = new Set<number>();
  for (let attempt = 0; ; attempt++) {
    const tcp = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      allowHalfOpen: true,
      socket: { data: (s, d) => void s.write(d), end: (s) => void s.end() },
    });
    try {
      const udpSock = await Bun.udpSocket({
        hostname: "127.0.0.1",
        port: tcp.port,
        binaryType: "uint8array",
        socket: {
          data: (sock, _d, port, addr) => {
            flows.add(port);
            sock.send(Uint8Array.of(1), port, addr);
          },
        },
      });
      return {
        port: tcp.port,
        flows,
        close: () => {
          tcp.stop(true);
          udpSock.close();
        },
      };
    } catch (e) {
      tcp.stop(true);
      if (attempt > 20) throw e;
    }
  }
}

function quicToml(port: number, backendPort: number, metricsPort: number, proxy: string): string {
  return `[[listeners]]
addr = "127.0.0.1:${port}"
  [[listeners.routes]]
  hostname = "app.example.com"
  backend = "127.0.0.1:${backendPort}"
[[listeners]]
addr = "127.0.0.1:${port}"
protocol = "quic"
[grpc]
addr = "unix:admin.sock"
[metrics]
addr = "127.0.0.1:${metricsPort}"
[proxy]
${proxy}
`;
}

interface StatusJson {
  active_connections: number;
  connection_cap: number;
  listeners: {
    addr: string;
    name: string;
    protocol: string;
    active_connections: number;
    max_connections: number;
    route_count: number;
  }[];
  workers: { id: number; active: number }[];
}

/** `mc-proxy status --json` against the running proxy; bounded in time (a process out of descriptors never answers). */
async function status(proxy: RunningProxy): Promise<StatusJson> {
  const p = Bun.spawn([BINARY, "status", "-c", proxy.configFile, "--json"], {
    cwd: join(proxy.configFile, ".."),
    env: cleanEnv(),
    stdout: "pipe",
    stderr: "pipe",
    timeout: 15_000,
  });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  if (code !== 0) throw new Error(`mc-proxy status exited with ${code}: ${err}`);
  return JSON.parse(out) as StatusJson;
}

/** One /metrics scrape, bounded in time; the value of the sample named exactly `series`. */
async function scrape(port: number): Promise<(series: string) => number | undefined> {
  const text = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(15_000) }).then((r) =>
    r.text(),
  );
  return (series) => {
    const line = text.split("\n").find((l) => l.startsWith(`${series} `));
    return line === undefined ? undefined : Number(line.slice(series.length + 1));
  };
}

interface Client {
  sock: udp.Socket<"uint8array">;
  /** host:port, as the access log's `client`. */
  addr: string;
  answered: boolean;
}

/** `n` UDP client sockets, spread over loopback addresses 127.0.2.1, 127.0.2.2, … (`perAddress` each); each notes whether the backend answered it. */
async function clients(n: number, perAddress: number): Promise<Client[]> {
  const out: Client[] = [];
  for (let i = 0; i < n; i++) {
    const host = `127.0.2.${1 + Math.floor(i / perAddress)}`;
    const c = { answered: false } as Client;
    c.sock = await Bun.udpSocket({
      hostname: host,
      binaryType: "uint8array",
      socket: { data: () => void (c.answered = true) },
    });
    c.addr = `${host}:${c.sock.port}`;
    out.push(c);
  }
  return out;
}

describe("QUIC flows and the descriptor budget (binary)", () => {
  test("nofile=400, 420 QUIC flows: the cap is served, the rest refused over_capacity under the QUIC listener; TCP, the admin API and /metrics answer; no spinning; places come back at quic_idle_timeout", async () => {
    const NOFILE = 400;
    const FLOWS = 420;
    const be = await backends();
    const port = freePort();
    const mport = freePort();
    // Longer than the flood takes to settle (its rounds below), so no place comes back before the counting is done.
    const idleS = 12;
    const proxy = await startProxy(
      "binary",
      quicToml(port, be.port, mport, `workers = 1\nquic_idle_timeout = "${idleS}s"`),
      { wrap: ["prlimit", `--nofile=${NOFILE}:${NOFILE}`] },
    );
    const quicLabel = `127.0.0.1:${port}/quic`;
    const tcpLabel = `127.0.0.1:${port}`;
    const udp = await clients(FLOWS, 4);
    let held: Socket<{ echoed: number }> | null = null;
    try {
      const limit = proxy.records().find((x) => x.msg === "file descriptor limit")!;
      expect(limit.soft).toBe(NOFILE);
      // host_limits.ts reservedFds: 16, the admin API 10, metrics 6, per loop its listener and 6, and the QUIC listener's UDP socket.
      expect(limit.reserved_fds).toBe(16 + 10 + 6 + 1 * (1 + 6) + 1);
      const cap = limit.connection_cap as number;
      expect(cap).toBe(Math.floor((NOFILE - (limit.reserved_fds as number)) / 2));

      // One TCP connection relaying before the flood: it holds one place, and keeps flowing throughout.
      const echoed = { echoed: 0 };
      held = await Bun.connect({
        hostname: "127.0.0.1",
        port,
        data: echoed,
        socket: { data: (s, d) => void (s.data.echoed += d.length) },
      });
      held.write(helloFor("app.example.com"));
      await waitFor(() => echoed.echoed > 0, 5000, "the TCP connection relayed");

      // The flood: one Initial per client port, in bounded batches. Like a QUIC client (RFC 9002 §6.2) each
      // sends it again until answered or refused: the listener's receive buffer may overflow on a busy machine.
      const t0 = performance.now();
      const initials = udp.map((_, i) => initialFor("app.example.com", i));
      const refusedClients = () =>
        new Set(
          proxy
            .access()
            .flatMap((r) => (r.listener === quicLabel && r.outcome === "over_capacity" ? [r.client as string] : [])),
        );
      let sends = 0;
      for (let round = 0; round < 12; round++) {
        const refused = refusedClients();
        const unsettled = udp.flatMap((c, i) => (c.answered || refused.has(c.addr) ? [] : [i]));
        if (unsettled.length === 0) break;
        for (const [k, i] of unsettled.entries()) {
          udp[i]!.sock.send(initials[i]!, port, "127.0.0.1");
          sends++;
          if (k % 20 === 19) await sleep(10);
        }
        await sleep(700);
      }
      const answered = udp.filter((c) => c.answered).length;
      console.log(
        `QUIC budget: ${FLOWS} flows settled in ${(performance.now() - t0).toFixed(0)} ms (${sends} Initials sent); cap ${cap}`,
      );
      // Exactly the places left by the one TCP connection are served; every other flow is refused over_capacity.
      expect(answered).toBe(cap - 1);
      expect(be.flows.size).toBe(cap - 1);
      expect(refusedClients().size).toBe(FLOWS - (cap - 1));
      expect(proxy.access().filter((r) => r.outcome === "connect_failed")).toEqual([]);
      const refusals = proxy.access().filter((r) => r.listener === quicLabel && r.outcome === "over_capacity").length;

      // A new TCP client is refused at once (the budget is full), not left waiting.
      const probe = await rawExchange(port, helloFor("app.example.com"), { timeoutMs: 5000 });
      expect(probe.end).not.toBe("timeout");
      expect(probe.received.length).toBe(0);
      // The established relay still flows.
      const before = echoed.echoed;
      held.write("ping through a full budget");
      await waitFor(() => echoed.echoed >= before + 26, 5000, "echo on the established connection");

      // The admin API and /metrics answer, and count the flows under the QUIC listener.
      const s = await status(proxy);
      const q = s.listeners.find((l) => l.addr === quicLabel)!;
      expect(q).toMatchObject({ protocol: "quic", active_connections: cap - 1, route_count: 1 });
      expect(s.listeners.find((l) => l.addr === tcpLabel)).toMatchObject({ protocol: "tcp", active_connections: 1 });
      expect(s.active_connections).toBe(cap);
      const m = await scrape(mport);
      expect(m(`mc_proxy_connections_active{listener="${quicLabel}"}`)).toBe(cap - 1);
      expect(m(`mc_proxy_connections_active{listener="${tcpLabel}"}`)).toBe(1);
      expect(m(`mc_proxy_connections_closed_total{listener="${quicLabel}",outcome="over_capacity"}`)).toBe(refusals);
      expect(m(`mc_proxy_connections_closed_total{listener="${tcpLabel}",outcome="over_capacity"}`)).toBe(1);

      // The descriptors it holds stay under the limit, with the reserve's room for the admin API and scrapes.
      const fds = readdirSync(`/proc/${proxy.pid}/fd`).length;
      console.log(
        `QUIC budget: ${fds} descriptors open with the budget full (limit ${NOFILE}, reserve ${limit.reserved_fds})`,
      );
      expect(fds).toBeLessThan(NOFILE - 16);

      // Full and quiet: the process must not spin (< 5 % of a core).
      const c0 = cpuSeconds(proxy.pid);
      await sleep(3000);
      const used = (cpuSeconds(proxy.pid) - c0) / 3;
      console.log(`QUIC budget: CPU with the budget full: ${(used * 100).toFixed(1)} % of a core`);
      expect(used).toBeLessThan(0.05);

      // The flows go quiet and end at quic_idle_timeout: their places come back, and TCP clients are served again.
      await waitFor(
        () => proxy.access().filter((r) => r.listener === quicLabel && r.outcome === "ok").length === cap - 1,
        (idleS + 10) * 1000,
        "the flows' records",
      );
      const after = await scrape(mport);
      expect(after(`mc_proxy_connections_active{listener="${quicLabel}"}`)).toBe(0);
      const r = await rawExchange(port, helloFor("app.example.com"), { timeoutMs: 2000 });
      expect(r.end).toBe("timeout"); // held open by the echo backend
      expect(r.received.length).toBeGreaterThan(0);
    } finally {
      held?.terminate();
      for (const c of udp) c.sock.close();
      await proxy.stop();
      be.close();
    }
  }, 90_000);

  test("nofile=400, 420 QUIC flows from one address: it holds a quarter of the cap (quic/sources.ts flowsPerSource), and new TCP clients are still served", async () => {
    const NOFILE = 400;
    const FLOWS = 420;
    const be = await backends();
    const port = freePort();
    const mport = freePort();
    const proxy = await startProxy("binary", quicToml(port, be.port, mport, `workers = 1\nquic_idle_timeout = "30s"`), {
      wrap: ["prlimit", `--nofile=${NOFILE}:${NOFILE}`],
    });
    const quicLabel = `127.0.0.1:${port}/quic`;
    const udp = await clients(FLOWS, FLOWS);
    try {
      const cap = proxy.records().find((x) => x.msg === "file descriptor limit")!.connection_cap as number;
      const share = Math.floor(cap / 4);
      const initials = udp.map((_, i) => initialFor("app.example.com", i));
      // Each client resends until answered, as a QUIC client does; the refused ones are only counted (no record), so a
      // fixed number of rounds decides: a client over the source's share is never answered.
      for (let round = 0; round < 6; round++) {
        for (const [i, c] of udp.entries()) {
          if (c.answered) continue;
          c.sock.send(initials[i]!, port, "127.0.0.1");
          if (i % 20 === 19) await sleep(10);
        }
        await sleep(600);
      }
      expect(be.flows.size).toBe(share);
      expect(udp.filter((c) => c.answered).length).toBe(share);
      const m = await scrape(mport);
      expect(m(`mc_proxy_connections_active{listener="${quicLabel}"}`)).toBe(share);
      expect(
        m(`mc_proxy_connections_closed_total{listener="${quicLabel}",outcome="over_capacity"}`),
      ).toBeGreaterThanOrEqual(FLOWS - share);
      // A new TCP client is served: relayed to the echo backend, not reset.
      const r = await rawExchange(port, helloFor("app.example.com"), { timeoutMs: 2000 });
      expect(r.end).toBe("timeout"); // held open by the echo backend
      expect(r.received.length).toBeGreaterThan(0);
      // And another source still gets a flow.
      let answered = false;
      const other = await Bun.udpSocket({
        hostname: "127.0.2.200",
        binaryType: "uint8array",
        socket: { data: () => void (answered = true) },
      });
      try {
        for (let i = 0; i < 20 && !answered; i++) {
          other.send(initialFor("app.example.com", 999), port, "127.0.0.1");
          await sleep(200);
        }
        expect(answered).toBe(true);
      } finally {
        other.close();
      }
    } finally {
      for (const c of udp) c.sock.close();
      await proxy.stop();
      be.close();
    }
  }, 90_000);
});

describe("QUIC flows under their own listener (binary)", () => {
  test("workers = 2: status, /metrics and the access log count flows and their drops under ADDR/quic, never under the TCP listener", async () => {
    const be = await backends();
    const port = freePort();
    const mport = freePort();
    const proxy = await startProxy(
      "binary",
      `${quicToml(port, be.port, mport, `workers = 2\nquic_idle_timeout = "60s"`)}[firewall]\nblocked_ips = ["127.0.3.9"]\n`,
    );
    const quicLabel = `127.0.0.1:${port}/quic`;
    const tcpLabel = `127.0.0.1:${port}`;
    const ok = await clients(2, 2);
    const blocked = await Bun.udpSocket({ hostname: "127.0.3.9", binaryType: "uint8array" });
    const junk = await Bun.udpSocket({ hostname: "127.0.0.1", binaryType: "uint8array" });
    try {
      for (let round = 0; round < 20 && !ok.every((c) => c.answered); round++) {
        for (const [i, c] of ok.entries())
          if (!c.answered) c.sock.send(initialFor("app.example.com", i), port, "127.0.0.1");
        await sleep(500);
      }
      expect(be.flows.size).toBe(2);
      // Dropped before a flow exists: a blocked address, and a datagram that is no client Initial.
      blocked.send(initialFor("app.example.com", 9), port, "127.0.0.1");
      junk.send(new Uint8Array(1300).fill(0x16), port, "127.0.0.1");
      // A flow refused after its hello: no route for the name.
      junk.send(initialFor("nothing.example.com", 10), port, "127.0.0.1");
      await proxy.waitAccess((r) => r.outcome === "no_route", 10_000);
      // Drops are counted as they happen; a scrape sums the loops' counters.
      let m = await scrape(mport);
      for (
        let i = 0;
        i < 100 && m(`mc_proxy_connections_closed_total{listener="${quicLabel}",outcome="not_quic"}`) !== 1;
        i++
      ) {
        await sleep(100);
        m = await scrape(mport);
      }
      expect(m(`mc_proxy_connections_active{listener="${quicLabel}"}`)).toBe(2);
      expect(m(`mc_proxy_connections_active{listener="${tcpLabel}"}`)).toBe(0);
      expect(m(`mc_proxy_connections_closed_total{listener="${quicLabel}",outcome="blocked_ip"}`)).toBe(1);
      expect(m(`mc_proxy_connections_closed_total{listener="${quicLabel}",outcome="no_route"}`)).toBe(1);
      for (const o of ["not_quic", "blocked_ip", "no_route"])
        expect(m(`mc_proxy_connections_closed_total{listener="${tcpLabel}",outcome="${o}"}`)).toBe(0);
      expect(m(`mc_proxy_firewall_blocked_total{reason="ip"}`)).toBe(1);
      expect(m(`mc_proxy_listener_max_connections{listener="${quicLabel}"}`)).toBe(10_000);
      expect(m(`mc_proxy_routes{listener="${quicLabel}"}`)).toBe(1);
      expect(m(`mc_proxy_bytes_total{listener="${quicLabel}",route="app.example.com",direction="from_client"}`)).toBe(
        0,
      ); // counted when a flow ends
      const s = await status(proxy);
      expect(s.active_connections).toBe(2);
      expect(s.listeners.map((l) => [l.addr, l.protocol, l.active_connections])).toEqual([
        [tcpLabel, "tcp", 0],
        [quicLabel, "quic", 2],
      ]);
      expect(s.listeners[1]!.name).toBe(tcpLabel);
      expect(s.workers.find((w) => w.id === 0)!.active).toBe(2);
      // The human form names it too.
      const human = Bun.spawnSync([BINARY, "status", "-c", proxy.configFile], {
        cwd: join(proxy.configFile, ".."),
        env: cleanEnv(),
        stdout: "pipe",
        timeout: 15_000,
      }).stdout.toString();
      expect(human).toContain(`  ${quicLabel}  routes=1  active=2  max=10000`);
      // A drain ends the flows: their records are under the QUIC listener, and the places are given back.
      proxy.signal("SIGTERM");
      expect(await proxy.exited).toBe(0);
      const records = proxy.access().filter((r) => r.sni === "app.example.com");
      expect(records.map((r) => [r.listener, r.outcome])).toEqual([
        [quicLabel, "shutdown"],
        [quicLabel, "shutdown"],
      ]);
    } finally {
      for (const c of ok) c.sock.close();
      blocked.close();
      junk.close();
      await proxy.stop();
      be.close();
    }
  }, 60_000);
});
