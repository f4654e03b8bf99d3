// The byte pump alone, over real loopback sockets: a minimal owner (no
// hello, no routing) accepts a client, connects to a backend and relays.
// Bytes arrive whole and in order both ways, a half-close travels as a FIN
// with the other direction still flowing, a reset on one side resets the
// other, and the replayed bytes and preamble go first.
import { afterEach, expect, test } from "bun:test";
import type { Socket, TCPSocketListener } from "bun";
import { type PeerSocket, Relay, type RelayEnd, type RelayOwner } from "../../src/relay/relay";
import { waitFor } from "../helpers/net";

/** The relay's owner here: it only records how the relay ended. */
class EndRecorder implements RelayOwner {
  ended: RelayEnd | null = null;
  relayEnded(end: RelayEnd): void {
    this.ended = end;
  }
  touch(): void {}
}

class TestRelay extends Relay {
  private readonly recorder: EndRecorder;
  constructor(client: PeerSocket) {
    const recorder = new EndRecorder();
    super(client, recorder);
    this.recorder = recorder;
  }
  get ended(): RelayEnd | null {
    return this.recorder.ended;
  }
}

const open: { stop(): void }[] = [];
/** Every chunk the relays were handed, both ways (to see which were freed). */
const seen: { d: Uint8Array; len: number }[] = [];
afterEach(() => {
  for (const o of open.splice(0)) o.stop();
});

/** A relay in front of `backendPort`: every accepted client gets one, started with `replay` and `preamble`. */
function relayTo(
  backendPort: number,
  replay = new Uint8Array(0),
  preamble: Uint8Array | null = null,
): { port: number; relays: TestRelay[] } {
  const relays: TestRelay[] = [];
  const l: TCPSocketListener<TestRelay> = Bun.listen<TestRelay>({
    hostname: "127.0.0.1",
    port: 0,
    allowHalfOpen: true,
    socket: {
      binaryType: "uint8array",
      open: (client) => {
        const r = new TestRelay(client as unknown as PeerSocket);
        client.data = r;
        relays.push(r);
        client.pause();
        void Bun.connect<TestRelay>({
          hostname: "127.0.0.1",
          port: backendPort,
          allowHalfOpen: true,
          data: r,
          socket: {
            binaryType: "uint8array",
            open: (b) => {
              r.start(b as unknown as PeerSocket, replay, false, preamble);
              client.resume();
            },
            data: (b, d) => {
              seen.push({ d, len: d.byteLength });
              b.data.backendData(d);
            },
            drain: (b) => b.data.backendDrain(),
            end: (b) => b.data.backendEnd(),
            close: (b, e) => b.data.socketClosed("backend", e),
          },
        });
      },
      data: (c, d) => {
        seen.push({ d, len: d.byteLength });
        c.data.clientData(d);
      },
      drain: (c) => c.data.clientDrain(),
      end: (c) => c.data.clientEnd(),
      close: (c, e) => c.data?.socketClosed("client", e),
    },
  });
  open.push({ stop: () => l.stop(true) });
  return { port: l.port, relays };
}

/** A backend that records what it reads and runs `onData` for each chunk (`onDrain` when its socket can take more). */
function backend(
  onData: (s: Socket<{ got: Buffer[] }>, d: Uint8Array) => void = () => {},
  onEnd: (s: Socket<{ got: Buffer[] }>) => void = () => {},
  onDrain: (s: Socket<{ got: Buffer[] }>) => void = () => {},
) {
  const all: { got: Buffer[] }[] = [];
  const l = Bun.listen<{ got: Buffer[] }>({
    hostname: "127.0.0.1",
    port: 0,
    allowHalfOpen: true,
    socket: {
      open: (s) => {
        s.data = { got: [] };
        all.push(s.data);
      },
      data: (s, d) => {
        s.data.got.push(Buffer.from(d));
        onData(s, d);
      },
      end: (s) => onEnd(s),
      drain: (s) => onDrain(s),
    },
  });
  open.push({ stop: () => l.stop(true) });
  return { port: l.port, received: () => Buffer.concat(all.flatMap((x) => x.got)) };
}

function client(port: number) {
  const got: Buffer[] = [];
  let ended = false;
  let error: string | null = null;
  const p = Bun.connect({
    hostname: "127.0.0.1",
    port,
    allowHalfOpen: true,
    socket: {
      data: (_s, d) => void got.push(Buffer.from(d)),
      end: () => void (ended = true),
      close: (_s, e) => {
        if (e !== undefined) error = (e as NodeJS.ErrnoException).code ?? e.message;
        ended = true;
      },
      error: (_s, e) => void (error = e.message),
    },
  });
  return { p, received: () => Buffer.concat(got), ended: () => ended, error: () => error };
}

test("4 MiB each way arrive whole and in order; the preamble and the replay go first", async () => {
  const big = Buffer.alloc(4 * 1024 * 1024);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7 + (i >> 13)) & 0xff;
  // Echo every byte back. A socket's write takes what its kernel buffer has room for and returns how much: the
  // rest waits for drain (a busy machine fills the buffer; writing and forgetting lost bytes and failed the test).
  const queue: Buffer[] = [];
  const flush = (s: Socket<{ got: Buffer[] }>) => {
    while (queue.length > 0) {
      const n = s.write(queue[0]!);
      if (n < queue[0]!.length) {
        queue[0] = queue[0]!.subarray(Math.max(n, 0));
        return;
      }
      queue.shift();
    }
  };
  const b = backend(
    (s, d) => {
      queue.push(Buffer.from(d));
      flush(s);
    },
    () => {},
    flush,
  );
  const r = relayTo(b.port, new Uint8Array([9, 9]), new Uint8Array([7]));
  const c = client(r.port);
  const s = await c.p;
  let off = 0;
  const pump = () => {
    while (off < big.length) {
      const n = s.write(big.subarray(off, off + 65536));
      off += n;
      if (n === 0) return setTimeout(pump, 1);
    }
  };
  pump();
  await waitFor(() => c.received().length === big.length + 3, 15_000, "the echo");
  expect(b.received().subarray(0, 3)).toEqual(Buffer.from([7, 9, 9]));
  expect(b.received().subarray(3).equals(big)).toBe(true);
  // The preamble is not the client's: the echo of it arrives, but only the client's bytes are counted.
  expect(c.received().subarray(3).equals(big)).toBe(true);
  expect(r.relays[0]!.bytesFromClient).toBe(big.length + 2);
  // Bulk chunks are freed once written whole (docs/PERFORMANCE.md "The allocator"); small ones never.
  const freed = seen.filter((x) => (x.d.buffer as ArrayBuffer).detached);
  expect(freed.length).toBeGreaterThan(0);
  expect(freed.filter((x) => x.len < 16384).map((x) => x.len)).toEqual([]);
  s.end();
});

test("a client's FIN reaches the backend while the backend's reply still flows; then both close (ok)", async () => {
  const b = backend(
    () => {},
    (s) => {
      // Reply after the client half-closed, then close.
      s.write("late reply");
      s.end();
    },
  );
  const r = relayTo(b.port);
  const c = client(r.port);
  const s = await c.p;
  s.write("request");
  s.shutdown();
  await waitFor(() => c.ended(), 5000, "the end");
  expect(c.received().toString()).toBe("late reply");
  expect(b.received().toString()).toBe("request");
  await waitFor(() => r.relays[0]!.ended !== null, 2000, "the relay's end");
  expect(r.relays[0]!.ended).toBe("ok");
  expect(r.relays[0]!.closedBy).toBe("client");
});

test("a backend reset resets the client", async () => {
  const b = backend((s) => s.terminate());
  const r = relayTo(b.port);
  const c = client(r.port);
  const s = await c.p;
  s.write("x");
  await waitFor(() => c.ended(), 5000, "the reset");
  expect(c.error()).toBe("ECONNRESET");
  expect(r.relays[0]!.closedBy).toBe("backend");
});
