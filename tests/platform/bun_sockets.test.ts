// The Bun 1.4.4 behaviours the relay depends on (../shared/BUN-NOTES.md), each
// checked on real loopback sockets so that a Bun upgrade that changes one
// fails here first.
import { expect, test } from "bun:test";
import type { Socket } from "bun";
import { BlockList } from "node:net";
import { sleep, waitFor } from "../helpers/net";

interface Ev {
  events: string[];
  data: number;
  error: string | null;
}

function listen(handlers: Partial<import("bun").SocketHandler<Ev>>, allowHalfOpen: boolean, hostname = "127.0.0.1") {
  const accepted: Socket<Ev>[] = [];
  const l = Bun.listen<Ev>({
    hostname,
    port: 0,
    allowHalfOpen,
    socket: {
      open(s) {
        s.data = { events: ["open"], data: 0, error: null };
        accepted.push(s);
        handlers.open?.(s);
      },
      data(s, d) {
        s.data.data += d.length;
        s.data.events.push(`data`);
        handlers.data?.(s, d);
      },
      end(s) {
        s.data.events.push("end");
        handlers.end?.(s);
      },
      close(s, err) {
        s.data.events.push(err ? `close:${(err as NodeJS.ErrnoException).code}` : "close");
      },
      drain(s) {
        handlers.drain?.(s);
      },
    },
  });
  return { l, accepted };
}

function connect(
  port: number,
  allowHalfOpen: boolean,
  handlers: Partial<import("bun").SocketHandler<Ev>> = {},
  hostname = "127.0.0.1",
) {
  return Bun.connect<Ev>({
    hostname,
    port,
    allowHalfOpen,
    data: { events: [], data: 0, error: null },
    socket: {
      data(s, d) {
        s.data.data += d.length;
        s.data.events.push("data");
        handlers.data?.(s, d);
      },
      end(s) {
        s.data.events.push("end");
        handlers.end?.(s);
      },
      close(s, err) {
        s.data.events.push(err ? `close:${(err as NodeJS.ErrnoException).code}` : "close");
      },
    },
  });
}

test("write() takes what the kernel takes: partial when full, 0 when already full", async () => {
  const { l } = listen({ open: (s) => void s.pause() }, true);
  const c = await connect(l.port, true);
  const big = new Uint8Array(64 * 1024 * 1024);
  const n = c.write(big);
  expect(n).toBeGreaterThan(0);
  expect(n).toBeLessThan(big.length);
  expect(c.write(big.subarray(n))).toBe(0);
  c.terminate();
  l.stop(true);
});

test("write() returns -1 once the socket is closed", async () => {
  const { l } = listen({}, true);
  const c = await connect(l.port, true);
  c.end();
  await sleep(20);
  expect(c.write("x")).toBe(-1);
  l.stop(true);
});

test("pause() in a data handler stops delivery at once; resume() restarts it", async () => {
  let paused: Socket<Ev> | null = null;
  const { l } = listen(
    {
      data(s) {
        if (paused === null) {
          paused = s;
          s.pause();
        }
      },
    },
    true,
  );
  const c = await connect(l.port, true);
  c.write("first");
  await waitFor(() => paused !== null);
  const before = paused!.data.data;
  c.write("second");
  await sleep(100);
  expect(paused!.data.data).toBe(before);
  paused!.resume();
  await waitFor(() => paused!.data.data === before + 6);
  c.terminate();
  l.stop(true);
});

test("without allowHalfOpen the socket closes itself on the peer's FIN; with it, it stays writable", async () => {
  for (const half of [false, true]) {
    const { l, accepted } = listen({}, half);
    const c = await connect(l.port, true);
    await waitFor(() => accepted.length === 1);
    c.shutdown();
    await waitFor(
      () => accepted[0]!.data.events.includes("end") || accepted[0]!.data.events.some((e) => e.startsWith("close")),
    );
    await sleep(30);
    const w = accepted[0]!.write("late reply");
    if (half) expect(w).toBe(10);
    else expect(w).toBe(-1);
    c.terminate();
    l.stop(true);
  }
});

test("shutdown() sends FIN and keeps reading; end() is a full close", async () => {
  const { l, accepted } = listen(
    {
      end(s) {
        s.write("reply");
      },
    },
    true,
  );
  const c = await connect(l.port, true);
  c.shutdown();
  await waitFor(() => c.data.data === 5, 2000, "reply after shutdown");

  const c2 = await connect(l.port, true);
  c2.end();
  await sleep(100);
  expect(c2.data.data).toBe(0);
  expect(accepted.length).toBe(2);
  l.stop(true);
});

test("terminate() resets: the peer sees ECONNRESET in close(socket, err)", async () => {
  const { l } = listen({ open: (s) => s.terminate() }, true);
  const c = await connect(l.port, true);
  await waitFor(() => c.data.events.some((e) => e.startsWith("close")));
  expect(c.data.events).toContain("close:ECONNRESET");
  l.stop(true);
});

test("a FIN that arrives after our own shutdown() is reported as close, not end", async () => {
  const { l } = listen({ end: (s) => s.shutdown() }, true);
  const c = await connect(l.port, true);
  c.shutdown();
  await waitFor(() => c.data.events.some((e) => e.startsWith("close")), 2000, "close");
  expect(c.data.events).not.toContain("end");
  expect(c.data.events).toContain("close");
  l.stop(true);
});

test("a :: listener reports IPv4 peers as ::ffff:a.b.c.d", async () => {
  const { l, accepted } = listen({}, true, "::");
  const c = await connect(l.port, true, {}, "127.0.0.1");
  await waitFor(() => accepted.length === 1);
  expect(accepted[0]!.remoteAddress).toBe("::ffff:127.0.0.1");
  c.terminate();
  l.stop(true);
});

test("net.BlockList: an IPv4 rule also matches the ::ffff: form", () => {
  const b = new BlockList();
  b.addSubnet("10.0.0.0", 8, "ipv4");
  expect(b.check("10.1.2.3", "ipv4")).toBe(true);
  expect(b.check("::ffff:10.1.2.3", "ipv6")).toBe(true);
  expect(b.check("11.0.0.1", "ipv4")).toBe(false);
});

test("Bun.TOML.parse takes text and throws on integers above 2^53", () => {
  expect(Bun.TOML.parse("a = 1\n")).toEqual({ a: 1 });
  expect(() => Bun.TOML.parse("a = 9007199254740993\n")).toThrow();
});

test("Bun raises the soft open-file limit to the hard limit at start (host_limits.ts relies on it)", () => {
  const r = Bun.spawnSync([
    "prlimit",
    "--nofile=256:4096",
    process.execPath,
    "-e",
    'console.log(require("fs").readFileSync("/proc/self/limits", "utf8"))',
  ]);
  expect(r.exitCode).toBe(0);
  expect(/^Max open files\s+(\d+)\s+(\d+)/m.exec(r.stdout.toString())?.slice(1)).toEqual(["4096", "4096"]);
});
