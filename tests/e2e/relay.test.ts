// End to end relay behaviour, from source and through the compiled binary: byte-exact bulk
// both ways, half-close, bounded memory with a slow reader, idle timeout,
// refused and black-holed backends.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import { helloFor } from "../helpers/hello_builder";
import { freePort, rawExchange, sleep, waitFor } from "../helpers/net";
import { MODES, type RunningProxy, startProxy } from "../helpers/proxy";
import { StreamReader, StreamWriter, streamHash } from "../helpers/stream";

const MiB = 1024 * 1024;

interface BackendConn {
  reader: StreamReader;
  writer: StreamWriter | null;
  ended: boolean;
  closed: boolean;
  error: string | null;
}

/** A raw TCP backend: reads (skipping the replayed hello), and runs `onOpen` to start writing. */
function backend(
  helloLen: number,
  onOpen: (s: Socket<BackendConn>) => void,
  onEnd: (s: Socket<BackendConn>) => void = () => {},
) {
  const conns: BackendConn[] = [];
  const l = Bun.listen<BackendConn>({
    hostname: "127.0.0.1",
    port: 0,
    allowHalfOpen: true,
    socket: {
      open(s) {
        s.data = { reader: new StreamReader(helloLen), writer: null, ended: false, closed: false, error: null };
        conns.push(s.data);
        onOpen(s);
      },
      data(s, d) {
        s.data.reader.push(d);
      },
      drain(s) {
        s.data.writer?.onDrain();
      },
      end(s) {
        s.data.ended = true;
        onEnd(s);
      },
      close(s, err) {
        s.data.closed = true;
        if (err !== undefined) s.data.error = (err as NodeJS.ErrnoException).code ?? err.message;
      },
    },
  });
  return { port: l.port, conns, stop: () => l.stop(true) };
}

interface ClientState {
  reader: StreamReader;
  writer: StreamWriter | null;
  ended: boolean;
  closed: boolean;
  error: string | null;
  closedAt: number;
  onData?: (s: Socket<ClientState>, d: Uint8Array) => void;
}

function client(port: number, hooks: { onData?: ClientState["onData"] } = {}): Promise<Socket<ClientState>> {
  return Bun.connect<ClientState>({
    hostname: "127.0.0.1",
    port,
    allowHalfOpen: true,
    data: {
      reader: new StreamReader(0),
      writer: null,
      ended: false,
      closed: false,
      error: null,
      closedAt: 0,
      onData: hooks.onData,
    },
    socket: {
      data(s, d) {
        s.data.reader.push(d);
        s.data.onData?.(s, d);
      },
      drain(s) {
        s.data.writer?.onDrain();
      },
      end(s) {
        s.data.ended = true;
      },
      close(s, err) {
        s.data.closed = true;
        s.data.closedAt = performance.now();
        if (err !== undefined) s.data.error = (err as NodeJS.ErrnoException).code ?? err.message;
      },
    },
  });
}

describe.each(MODES)("relay (%s)", (mode) => {
  const bulkHello = helloFor("bulk.example.com");
  const halfHello = helloFor("half.example.com");
  const bigHello = helloFor("big.example.com");
  const idleHello = helloFor("idle.example.com");
  let proxy: RunningProxy;
  let port = 0;
  const BULK = 64 * MiB;
  const BIG = 256 * MiB;
  const REPLY = 4 * MiB;

  const bulk = backend(bulkHello.length, (s) => {
    s.data.writer = new StreamWriter(s as Socket<unknown>, 2, BULK);
    s.data.writer.start();
    void s.data.writer.done.then(() => s.shutdown());
  });
  const half = backend(
    halfHello.length,
    () => {},
    (s) => {
      // Reply only after the client's FIN: the reply must still reach it.
      s.data.writer = new StreamWriter(s as Socket<unknown>, 3, REPLY);
      s.data.writer.start();
      void s.data.writer.done.then(() => s.shutdown());
    },
  );
  const big = backend(bigHello.length, (s) => {
    s.data.writer = new StreamWriter(s as Socket<unknown>, 4, BIG);
    s.data.writer.start();
    void s.data.writer.done.then(() => s.shutdown());
  });
  const idle = backend(idleHello.length, (s) => {
    s.write("hi");
  });
  const resetHello = helloFor("reset.example.com");
  // Greets, then resets the connection a moment later.
  const resetter = backend(resetHello.length, (s) => {
    s.write("hi");
    setTimeout(() => s.terminate(), 100);
  });
  const refusedPort = freePort();
  let blackhole: { port: number; proc: import("bun").Subprocess } | null = null;

  beforeAll(async () => {
    blackhole = await startBlackhole();
    port = freePort();
    proxy = await startProxy(
      mode,
      `
[[listeners]]
addr = "127.0.0.1:${port}"
  [[listeners.routes]]
  hostname = "bulk.example.com"
  backend = "127.0.0.1:${bulk.port}"
  [[listeners.routes]]
  hostname = "half.example.com"
  backend = "127.0.0.1:${half.port}"
  [[listeners.routes]]
  hostname = "big.example.com"
  backend = "127.0.0.1:${big.port}"
  [[listeners.routes]]
  hostname = "idle.example.com"
  backend = "127.0.0.1:${idle.port}"
  [[listeners.routes]]
  hostname = "reset.example.com"
  backend = "127.0.0.1:${resetter.port}"
  [[listeners.routes]]
  hostname = "refused.example.com"
  backend = "127.0.0.1:${refusedPort}"
  [[listeners.routes]]
  hostname = "blackhole.example.com"
  backend = "127.0.0.1:${blackhole?.port ?? refusedPort}"
  [[listeners.routes]]
  hostname = "quick.example.com"
  backend = "127.0.0.1:${blackhole?.port ?? refusedPort}"
  connect_timeout = "200ms"
[proxy]
idle_timeout = "1500ms"
connect_timeout = "700ms"
`,
    );
  });

  afterAll(async () => {
    await proxy?.stop();
    for (const b of [bulk, half, big, idle, resetter]) b.stop();
    blackhole?.proc.kill();
  });

  test("64 MiB each way, byte-exact, at the same time", async () => {
    const c = await client(port);
    c.data.writer = new StreamWriter(c as Socket<unknown>, 1, BULK, bulkHello);
    c.data.writer.start();
    await c.data.writer.done;
    c.shutdown();
    await waitFor(
      () => c.data.reader.received >= BULK && bulk.conns[0]?.reader.received === BULK,
      60_000,
      "64 MiB both ways",
    );
    // A Bun socket whose own side is shut reports the FIN as a clean close.
    await waitFor(() => c.data.ended || (c.data.closed && c.data.error === null), 5000, "FIN from the proxy");
    expect(c.data.reader.digest()).toBe(streamHash(2, BULK));
    const b = bulk.conns[0]!;
    expect(Buffer.concat(b.reader.prefix).equals(Buffer.from(bulkHello))).toBe(true);
    expect(b.reader.digest()).toBe(streamHash(1, BULK));
    // The backend had already shut its side, so Bun reports the client's FIN as a clean close.
    await waitFor(() => b.ended || b.closed, 5000, "client FIN at the backend");
    const rec = await proxy.waitAccess((r) => r.sni === "bulk.example.com");
    expect(rec.outcome).toBe("ok");
    expect(rec.bytes_in).toBe(BULK + bulkHello.length);
    expect(rec.bytes_out).toBe(BULK);
    c.end();
  }, 90_000);

  test("client half-closes after its request and still receives the full reply", async () => {
    const c = await client(port);
    c.write(halfHello);
    c.write("request");
    c.shutdown();
    await waitFor(() => c.data.ended || (c.data.closed && c.data.error === null), 20_000, "reply and FIN");
    expect(c.data.reader.received).toBe(REPLY);
    expect(c.data.reader.digest()).toBe(streamHash(3, REPLY));
    expect(half.conns[0]!.ended).toBe(true);
    c.end();
  }, 30_000);

  test("256 MiB into a slow reader keeps the proxy's RSS growth under 64 MiB", async () => {
    const base = proxy.rss();
    let peak = base;
    const sampler = setInterval(() => (peak = Math.max(peak, proxy.rss())), 25);
    // Read in bursts: pause 15 ms after every 2 MiB (≈ 130 MB/s at best, well under the sender).
    let sinceBreak = 0;
    const c = await client(port, {
      onData(s, d) {
        sinceBreak += d.length;
        if (sinceBreak >= 2 * MiB) {
          sinceBreak = 0;
          s.pause();
          setTimeout(() => s.resume(), 15);
        }
      },
    });
    c.write(bigHello);
    await waitFor(() => c.data.reader.received >= BIG, 120_000, "256 MiB");
    clearInterval(sampler);
    expect(c.data.reader.digest()).toBe(streamHash(4, BIG));
    const growth = peak - base;
    console.log(
      `slow reader: proxy RSS base ${(base / MiB).toFixed(1)} MiB, peak ${(peak / MiB).toFixed(1)} MiB, growth ${(growth / MiB).toFixed(1)} MiB`,
    );
    expect(growth).toBeLessThan(64 * MiB);
    c.end();
  }, 150_000);

  test("idle_timeout closes an idle pair within 1 s of its deadline", async () => {
    const c = await client(port);
    c.write(idleHello);
    await waitFor(() => c.data.reader.received === 2, 5000, "greeting");
    const lastActivity = performance.now();
    await waitFor(() => c.data.closed || c.data.ended, 5000, "idle close");
    const waited = performance.now() - lastActivity;
    expect(waited).toBeGreaterThanOrEqual(1500 - 50);
    expect(waited).toBeLessThan(1500 + 1000);
    const rec = await proxy.waitAccess((r) => r.sni === "idle.example.com");
    expect(rec.outcome).toBe("idle_timeout");
    expect(rec.closed_by).toBe("proxy");
    await waitFor(() => idle.conns[0]!.closed || idle.conns[0]!.ended, 2000, "backend closed too");
  });

  test("a client reset resets the backend side", async () => {
    const before = idle.conns.length;
    const c = await client(port);
    c.write(idleHello);
    await waitFor(() => c.data.reader.received === 2, 5000, "greeting");
    const b = idle.conns[before]!;
    c.terminate();
    await waitFor(() => b.closed, 5000, "backend closed");
    expect(b.error).toBe("ECONNRESET");
  });

  test("a backend reset resets the client side", async () => {
    const c = await client(port);
    c.write(resetHello);
    await waitFor(() => c.data.closed, 5000, "client closed");
    expect(c.data.reader.received).toBe(2);
    expect(c.data.error).toBe("ECONNRESET");
  });

  test("backend refuses → the client gets a RST", async () => {
    const r = await rawExchange(port, helloFor("refused.example.com"));
    expect(r.end).toBe("reset");
    expect(r.received.length).toBe(0);
    const rec = await proxy.waitAccess((x) => x.sni === "refused.example.com");
    expect(rec.outcome).toBe("connect_failed");
  });

  test.skipIf(Bun.which("python3") === null)("backend never answers the SYN → RST after connect_timeout", async () => {
    const started = performance.now();
    const r = await rawExchange(port, helloFor("blackhole.example.com"), { timeoutMs: 5000 });
    const took = performance.now() - started;
    expect(r.end).toBe("reset");
    expect(took).toBeGreaterThanOrEqual(700 - 50);
    expect(took).toBeLessThan(700 + 1000);
    const rec = await proxy.waitAccess((x) => x.sni === "blackhole.example.com");
    expect(rec.outcome).toBe("connect_failed");
  });

  test.skipIf(Bun.which("python3") === null)(
    "a route's own connect_timeout (200ms) overrides [proxy] connect_timeout (700ms)",
    async () => {
      const started = performance.now();
      const r = await rawExchange(port, helloFor("quick.example.com"), { timeoutMs: 5000 });
      const took = performance.now() - started;
      expect(r.end).toBe("reset");
      // The wheel's tick is 100 ms: a deadline fires within one tick after it is due.
      expect(took).toBeGreaterThanOrEqual(200 - 50);
      expect(took).toBeLessThan(700 - 150);
      expect((await proxy.waitAccess((x) => x.sni === "quick.example.com")).outcome).toBe("connect_failed");
    },
  );
});

/**
 * A loopback listener whose accept queue is full: listen(0) and never accept,
 * then fill the queue, so further SYNs are dropped and a connect hangs.
 */
async function startBlackhole(): Promise<{ port: number; proc: import("bun").Subprocess } | null> {
  if (Bun.which("python3") === null) return null;
  const proc = Bun.spawn(
    [
      "python3",
      "-c",
      `import socket,sys,time
s=socket.socket(); s.bind(("127.0.0.1",0)); s.listen(0)
port=s.getsockname()[1]
fill=[]
for i in range(4):
    c=socket.socket(); c.setblocking(False)
    try: c.connect(("127.0.0.1",port))
    except BlockingIOError: pass
    fill.append(c)
time.sleep(0.2)
print(port, flush=True)
time.sleep(120)`,
    ],
    { stdout: "pipe", stderr: "inherit" },
  );
  const reader = proc.stdout.getReader();
  const { value } = await reader.read();
  reader.releaseLock();
  const port = Number(new TextDecoder().decode(value).trim());
  await sleep(50);
  return { port, proc };
}
