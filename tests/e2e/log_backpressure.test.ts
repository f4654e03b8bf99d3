// The log's bound when stderr's reader stalls (docs/METRICS_AND_LOGS.md
// "Logs"; src/log/logger.ts), against the compiled binary: its stderr is a
// FIFO this test holds open and does not read (a stalled journald or log
// shipper), and refused hellos with long ALPN lists make big access records.
// What waits in the process stays bounded, routing goes on, the drops are
// counted in /metrics, and once a reader drains the FIFO one record says how
// many were dropped.
import { expect, test } from "bun:test";
import { closeSync, existsSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { alpnExtension, clientHelloBody, handshake, records, sniExtension } from "../helpers/hello_builder";
import { freePort, rawExchange, waitFor } from "../helpers/net";
import { BINARY, RSS_IS_LIVE, cleanEnv, ensureBinary, tempDir } from "../helpers/proxy";
import { testCert } from "../helpers/certs";
import { tlsBackend, tlsGet } from "../helpers/tls";

const HOST = "alpha.example.com";

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m![1]) / 1024;
}

test("stderr to a FIFO nobody reads: a flood of big access records: at most 9 MiB waits, RSS back within 32 MiB, routing goes on, drops counted and said once drained", async () => {
  ensureBinary();
  const be = tlsBackend("be", testCert());
  const dir = tempDir();
  const port = freePort();
  const metricsPort = freePort();
  const file = join(dir, "mc-proxy.toml");
  await Bun.write(
    file,
    `[[listeners]]\naddr = "127.0.0.1:${port}"\n  [[listeners.routes]]\n  hostname = "${HOST}"\n  backend = "127.0.0.1:${be.port}"\n[metrics]\naddr = "127.0.0.1:${metricsPort}"\n[proxy]\nworkers = 2\n[log]\nlevel = "info"\nformat = "json"\n`,
  );
  const fifo = join(dir, "stderr.fifo");
  expect(Bun.spawnSync(["mkfifo", fifo]).exitCode).toBe(0);
  // The stalled reader: this test holds the FIFO open for reading and never reads.
  const stalled = openSync(fifo, "r+");
  const writeEnd = openSync(fifo, "w");
  const proc = Bun.spawn([BINARY, "server", "-c", file], {
    cwd: dir,
    env: cleanEnv(RSS_IS_LIVE),
    stdin: "ignore",
    stdout: "ignore",
    stderr: writeEnd,
  });
  closeSync(writeEnd);
  let drain: ReturnType<typeof Bun.spawn> | null = null;
  const scrape = async () => (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  try {
    const t0 = Date.now();
    for (;;) {
      const r = await fetch(`http://127.0.0.1:${metricsPort}/readyz`).catch(() => null);
      if (r?.status === 200) break;
      if (Date.now() - t0 > 15_000 || proc.exitCode !== null) throw new Error("the proxy did not start");
      await Bun.sleep(100);
    }
    expect((await tlsGet(port, HOST, testCert())).body).toContain("hello from be");
    const before = rssMiB(proc.pid);
    // A hello naming no route, with the longest name and the most ALPN a record writes (eight names of 32 control
    // bytes, each written \u0001): about 2 KB a record.
    const sni = `${"a".repeat(63)}.${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(61)}`;
    const hello = records(
      handshake(clientHelloBody([sniExtension(sni), alpnExtension(...Array<string>(8).fill("\x01".repeat(32)))])),
    );
    const recordBytes = 2000;
    let sent = 0;
    const wanted = Math.ceil((48 * 1024 * 1024) / recordBytes);
    const lane = async () => {
      while (sent < wanted && Date.now() - t0 < 60_000) {
        sent++;
        await rawExchange(port, hello, { timeoutMs: 5000 });
      }
    };
    await Promise.all(Array.from({ length: 8 }, lane));
    // Routing goes on while stderr is stalled.
    expect((await tlsGet(port, HOST, testCert())).body).toContain("hello from be");
    // The flood's garbage is collected; what waits for the reader stays (in the writer, outside the heap): RSS comes
    // back within 32 MiB of where it was only if little waits.
    const settled = Date.now();
    let rss = rssMiB(proc.pid);
    while (rss - before >= 32 && Date.now() - settled < 30_000) {
      await Bun.sleep(250);
      rss = rssMiB(proc.pid);
    }
    const waitedMs = Date.now() - settled;
    const dropped = Number(/^mc_proxy_log_dropped_total (\d+)$/m.exec(await scrape())?.[1] ?? "0");
    // A reader drains the FIFO: what waited in the process (and the pipe's 64 KiB), then one record saying how many
    // were dropped.
    const out = join(dir, "drained.log");
    drain = Bun.spawn(["sh", "-c", `exec cat "${fifo}" > "${out}"`], { stdin: "ignore" });
    const read = () => (existsSync(out) ? readFileSync(out, "utf8") : "");
    await waitFor(() => read().includes('"msg":"log lines dropped"'), 20_000, "the drop record").catch(() => {});
    await Bun.sleep(300);
    const drained = read();
    console.log(
      `log backpressure: ${sent} refused hellos (~${Math.round((sent * recordBytes) / 2 ** 20)} MiB of records); RSS ${before.toFixed(1)} → ${rss.toFixed(1)} MiB ${waitedMs} ms after; ${dropped} records dropped; ${(drained.length / 2 ** 20).toFixed(1)} MiB waited`,
    );
    expect(rss - before).toBeLessThan(32);
    expect(drained.length).toBeLessThan(9 * 1024 * 1024);
    expect(dropped).toBeGreaterThan(sent / 2);
    const notes = drained
      .split("\n")
      .filter((l) => l.includes('"msg":"log lines dropped"'))
      .map((l) => JSON.parse(l) as { level: string; dropped: number });
    expect(notes.length).toBeGreaterThan(0);
    expect(notes[0]!.level).toBe("warn");
    expect(notes.reduce((n, r) => n + r.dropped, 0)).toBe(dropped);
  } finally {
    proc.kill("SIGKILL");
    await proc.exited;
    drain?.kill("SIGKILL");
    closeSync(stalled);
    be.stop();
  }
}, 120_000);
