// quic_send_batch.ts: the datagrams queued in one turn of the event loop
// leave in one sendMany per socket once the turn ends (one alone: one send);
// nothing leaves from a closed batch. Small fakes of Bun's sockets.
import { describe, expect, test } from "bun:test";
import { BackendBatch, ClientBatch } from "../../src/server/quic_send_batch";

const turn = () => new Promise((r) => setImmediate(r));
const dgram = (b: number) => Uint8Array.of(b);

function fakeListenerSocket() {
  const calls: { kind: "send" | "sendMany"; args: unknown[] }[] = [];
  return {
    calls,
    send: (d: Uint8Array, port: number, address: string) => void calls.push({ kind: "send", args: [d, port, address] }),
    sendMany: (p: readonly unknown[]) => void calls.push({ kind: "sendMany", args: [...p] }),
  };
}

function fakeBackendSocket() {
  const calls: { kind: "send" | "sendMany"; args: Uint8Array[] }[] = [];
  return {
    calls,
    closed: false,
    send(d: Uint8Array) {
      calls.push({ kind: "send", args: [d] });
    },
    sendMany(ds: readonly Uint8Array[]) {
      calls.push({ kind: "sendMany", args: [...ds] });
    },
    close() {
      this.closed = true;
    },
  };
}

describe("quic_send_batch", () => {
  test("a turn's datagrams to clients leave in one sendMany at the turn's end, in order", async () => {
    const s = fakeListenerSocket();
    const b = new ClientBatch(s);
    b.send(dgram(1), 1001, "192.0.2.1");
    b.send(dgram(2), 1002, "192.0.2.2");
    b.send(dgram(3), 1001, "192.0.2.1");
    expect(s.calls).toEqual([]);
    await turn();
    expect(s.calls).toEqual([
      {
        kind: "sendMany",
        args: [dgram(1), 1001, "192.0.2.1", dgram(2), 1002, "192.0.2.2", dgram(3), 1001, "192.0.2.1"],
      },
    ]);
    // The next turn starts empty: one datagram alone is one send.
    b.send(dgram(4), 1003, "192.0.2.3");
    await turn();
    expect(s.calls[1]).toEqual({ kind: "send", args: [dgram(4), 1003, "192.0.2.3"] });
    expect(s.calls).toHaveLength(2);
  });

  test("each backend socket sends its own turn's datagrams together; a closed one sends nothing more", async () => {
    const x = fakeBackendSocket();
    const y = fakeBackendSocket();
    const bx = new BackendBatch(x);
    const by = new BackendBatch(y);
    bx.sendMany([dgram(1), dgram(2)]);
    by.send(dgram(9));
    bx.send(dgram(3));
    await turn();
    expect(x.calls).toEqual([{ kind: "sendMany", args: [dgram(1), dgram(2), dgram(3)] }]);
    expect(y.calls).toEqual([{ kind: "send", args: [dgram(9)] }]);
    by.send(dgram(10));
    by.close();
    by.send(dgram(11));
    await turn();
    expect(y.closed).toBe(true);
    expect(y.calls).toHaveLength(1);
  });

  test("a client batch closed with datagrams queued sends none of them", async () => {
    const s = fakeListenerSocket();
    const b = new ClientBatch(s);
    b.send(dgram(1), 1001, "192.0.2.1");
    b.close();
    b.send(dgram(2), 1001, "192.0.2.1");
    await turn();
    expect(s.calls).toEqual([]);
  });
});

test("a socket that throws loses its own datagrams only: the others of the turn, and later turns, still leave", async () => {
  const bad = {
    send: () => {
      throw new Error("closed");
    },
    sendMany: () => {
      throw new Error("closed");
    },
    close() {},
  };
  const good: Uint8Array[] = [];
  const ok = {
    send: (d: Uint8Array) => void good.push(d),
    sendMany: (ds: readonly Uint8Array[]) => void good.push(...ds),
    close() {},
  };
  const b1 = new BackendBatch(bad);
  const b2 = new BackendBatch(ok);
  b1.send(dgram(1));
  b2.send(dgram(2));
  await turn();
  b2.send(dgram(3));
  await turn();
  expect(good).toEqual([dgram(2), dgram(3)]);
});
