// Process lifecycle through the compiled binary: graceful drain, forced close
// at shutdown_timeout, a second signal, SIGHUP GeoIP reload, max_connections.
import { describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import { renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { testCert } from "../helpers/certs";
import { helloFor } from "../helpers/hello_builder";
import { writeMmdb } from "../helpers/mmdb_writer";
import { freePort, rawExchange, sleep, waitFor } from "../helpers/net";
import { listenerToml, startProxy, tempDir } from "../helpers/proxy";
import { StreamReader, StreamWriter, streamHash } from "../helpers/stream";
import { bodyOf, tlsBackend, tlsGet } from "../helpers/tls";

const MiB = 1024 * 1024;

/** A backend that accepts and stays silent; `sockets` lets a test close them. */
function silentBackend() {
  const sockets: Socket<unknown>[] = [];
  const l = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    allowHalfOpen: true,
    socket: { open: (s) => void sockets.push(s), data() {} },
  });
  return { port: l.port, sockets, stop: () => l.stop(true) };
}

interface Held {
  closed: boolean;
  error: string | null;
  bytes: number;
}

/** Connect, send a hello, keep the connection open. */
async function hold(port: number, hello: Uint8Array): Promise<Socket<Held>> {
  const s = await Bun.connect<Held>({
    hostname: "127.0.0.1",
    port,
    allowHalfOpen: true,
    data: { closed: false, error: null, bytes: 0 },
    socket: {
      data(s, d) {
        s.data.bytes += d.length;
      },
      close(s, err) {
        s.data.closed = true;
        if (err !== undefined) s.data.error = (err as NodeJS.ErrnoException).code ?? err.message;
      },
    },
  });
  s.write(hello);
  return s;
}

describe("lifecycle (binary)", () => {
  test("SIGTERM mid-transfer: new connections refused at once, the transfer completes, exit 0", async () => {
    const TOTAL = 48 * MiB;
    const hello = helloFor("slow.example.com");
    // The backend streams TOTAL bytes once connected.
    const l = Bun.listen<{ w: StreamWriter | null }>({
      hostname: "127.0.0.1",
      port: 0,
      allowHalfOpen: true,
      socket: {
        open(s) {
          s.data = { w: new StreamWriter(s as Socket<unknown>, 9, TOTAL) };
          s.data.w!.start();
          void s.data.w!.done.then(() => s.shutdown());
        },
        drain(s) {
          s.data.w?.onDrain();
        },
        data() {},
      },
    });
    const port = freePort();
    const proxy = await startProxy(
      "binary",
      `${listenerToml(port, { "slow.example.com": l.port })}
[proxy]
shutdown_timeout = "30s"`,
    );
    try {
      const reader = new StreamReader(0);
      let done = false;
      // A slow reader: 1 MiB per 40 ms, so the transfer takes ~2 s.
      let burst = 0;
      const c = await Bun.connect({
        hostname: "127.0.0.1",
        port,
        allowHalfOpen: true,
        socket: {
          data(s, d) {
            reader.push(d);
            burst += d.length;
            if (burst >= MiB) {
              burst = 0;
              s.pause();
              setTimeout(() => s.resume(), 40);
            }
          },
          close() {
            done = true;
          },
          end(s) {
            done = true;
            // Done reading: close our side too, or the pair stays half-open.
            s.end();
          },
        },
      });
      c.write(hello);
      await waitFor(() => reader.received > 2 * MiB, 10_000, "transfer under way");
      proxy.signal("SIGTERM");
      await waitFor(() => proxy.output.includes("shutting down"), 5000, "drain started");
      const refused = await rawExchange(port, helloFor("slow.example.com"));
      expect(refused.end).toBe("refused");
      expect(reader.received).toBeLessThan(TOTAL);
      await waitFor(() => done, 30_000, "transfer end");
      expect(reader.received).toBe(TOTAL);
      expect(reader.digest()).toBe(streamHash(9, TOTAL));
      expect(await proxy.exited).toBe(0);
      expect(proxy.access().find((r) => r.sni === "slow.example.com")?.outcome).toBe("ok");
    } finally {
      await proxy.stop();
      l.stop(true);
    }
  }, 60_000);

  test("a stuck connection is force-closed at shutdown_timeout, then exit 0", async () => {
    const be = silentBackend();
    const port = freePort();
    const proxy = await startProxy(
      "binary",
      `${listenerToml(port, { "stuck.example.com": be.port })}
[proxy]
shutdown_timeout = "1s"`,
    );
    try {
      const s = await hold(port, helloFor("stuck.example.com"));
      await waitFor(() => be.sockets.length === 1, 5000, "backend connection");
      const t0 = performance.now();
      proxy.signal("SIGTERM");
      expect(await proxy.exited).toBe(0);
      const took = performance.now() - t0;
      expect(took).toBeGreaterThanOrEqual(950);
      expect(took).toBeLessThan(3000);
      await waitFor(() => s.data.closed, 2000, "client closed");
      expect(proxy.access().find((r) => r.sni === "stuck.example.com")?.outcome).toBe("shutdown");
    } finally {
      await proxy.stop();
      be.stop();
    }
  });

  test("a second signal exits at once", async () => {
    const be = silentBackend();
    const port = freePort();
    const proxy = await startProxy(
      "binary",
      `${listenerToml(port, { "stuck.example.com": be.port })}
[proxy]
shutdown_timeout = "60s"`,
    );
    try {
      await hold(port, helloFor("stuck.example.com"));
      await waitFor(() => be.sockets.length === 1, 5000, "backend connection");
      proxy.signal("SIGTERM");
      await waitFor(() => proxy.output.includes("shutting down"), 5000, "drain started");
      const t0 = performance.now();
      proxy.signal("SIGINT");
      expect(await proxy.exited).toBe(0);
      expect(performance.now() - t0).toBeLessThan(2000);
    } finally {
      await proxy.stop();
      be.stop();
    }
  });

  test("SIGHUP reloads the GeoIP database without a restart; a bad file keeps the old one", async () => {
    const cert = testCert();
    const alpha = tlsBackend("alpha", cert);
    const dir = tempDir();
    const db = join(dir, "geo.mmdb");
    const writeDb = (cc: string) => {
      writeFileSync(
        join(dir, "next.mmdb"),
        writeMmdb([{ cidr: "127.0.0.7/32", record: { country: { iso_code: cc } } }]),
      );
      renameSync(join(dir, "next.mmdb"), db);
    };
    writeDb("US");
    const port = freePort();
    const proxy = await startProxy(
      "binary",
      `${listenerToml(port, { "alpha.example.com": alpha.port })}
[firewall]
geoip_db = "geo.mmdb"
blocked_countries = ["KP"]`,
      { dir },
    );
    try {
      expect(bodyOf(await tlsGet(port, "alpha.example.com", cert, { localAddress: "127.0.0.7" }))).toBe(
        "hello from alpha\n",
      );
      writeDb("KP");
      proxy.signal("SIGHUP");
      await waitFor(() => proxy.records().some((r) => r.msg === "GeoIP database reloaded"), 5000, "reload log");
      expect((await tlsGet(port, "alpha.example.com", cert, { localAddress: "127.0.0.7" })).error).toBe("ECONNRESET");
      await proxy.waitAccess((r) => r.outcome === "blocked_country");
      // A broken file: the reload fails, is logged, and the KP data stays in force.
      writeFileSync(db, "garbage");
      proxy.signal("SIGHUP");
      await waitFor(
        () => proxy.records().some((r) => r.msg.startsWith("GeoIP reload failed")),
        5000,
        "failed reload log",
      );
      expect((await tlsGet(port, "alpha.example.com", cert, { localAddress: "127.0.0.7" })).error).toBe("ECONNRESET");
      expect(proxy.proc.exitCode).toBeNull();
    } finally {
      await proxy.stop();
      alpha.stop();
    }
  });

  test("max_connections: the extra connection is reset; a later one succeeds once a slot frees", async () => {
    const be = silentBackend();
    const port = freePort();
    const proxy = await startProxy(
      "binary",
      `${listenerToml(port, { "cap.example.com": be.port }, { maxConnections: 2 })}
`,
    );
    try {
      const a = await hold(port, helloFor("cap.example.com"));
      await hold(port, helloFor("cap.example.com"));
      await waitFor(() => be.sockets.length === 2, 5000, "two backend connections");
      const extra = await rawExchange(port, null);
      expect(extra.end).toBe("reset");
      await proxy.waitAccess((r) => r.outcome === "over_capacity");
      a.end();
      await proxy.waitAccess((r) => r.sni === "cap.example.com" && r.outcome === "ok");
      const later = await hold(port, helloFor("cap.example.com"));
      await waitFor(() => be.sockets.length === 3, 5000, "third backend connection");
      await sleep(100);
      expect(later.data.closed).toBe(false);
    } finally {
      await proxy.stop();
      be.stop();
    }
  });
});
