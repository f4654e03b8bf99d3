// A QUIC listener's datagrams, sent a turn of the event loop at a time. Bun
// 1.4.4 reads a UDP socket with recvmmsg but hands the datagrams to
// JavaScript one callback each, draining the microtask queue after every
// one, and marks no end of a receive batch (measured: 12,800 datagrams gave
// 12,800 microtask drains and 200 immediates); an immediate runs once the
// loop has dispatched every socket that was ready. So the datagrams of one
// turn for one socket leave in one sendmmsg (Bun's sendMany) instead of one
// system call each, and none waits past that turn. Each is the receive
// callback's own copy (binaryType "uint8array"), safe to keep until then.

/** What the batch uses of Bun's unconnected UDP socket: the listener's. */
export interface ManySender {
  send(d: Uint8Array, port: number, address: string): unknown;
  sendMany(packets: readonly (Uint8Array | number | string)[]): unknown;
}

/** What the batch uses of a connected UDP socket: a flow's to its backend. */
export interface ConnectedSender {
  send(d: Uint8Array): unknown;
  sendMany(packets: readonly Uint8Array[]): unknown;
}

/** Batches with something queued, flushed together at the end of the turn. */
let due: { flush(): void }[] = [];

function flushDue(): void {
  const list = due;
  due = [];
  for (const b of list) {
    try {
      b.flush();
    } catch {
      // A socket closed under its batch: its datagrams are dropped, as one send's would be (QUIC resends).
    }
  }
}

function atTurnEnd(b: { flush(): void }): void {
  if (due.length === 0) setImmediate(flushDue);
  due.push(b);
}

/** The listener socket's datagrams to clients. */
export class ClientBatch {
  private queue: (Uint8Array | number | string)[] = [];
  private closed = false;

  constructor(private readonly socket: ManySender) {}

  send(d: Uint8Array, port: number, address: string): void {
    if (this.closed) return;
    if (this.queue.length === 0) atTurnEnd(this);
    this.queue.push(d, port, address);
  }

  /** Nothing more is sent: the socket is closing. */
  close(): void {
    this.closed = true;
    this.queue = [];
  }

  flush(): void {
    const q = this.queue;
    if (q.length === 0) return;
    this.queue = [];
    // A full socket buffer drops what it cannot take, as one send would: QUIC resends (RFC 9002 §6).
    if (q.length === 3) this.socket.send(q[0] as Uint8Array, q[1] as number, q[2] as string);
    else this.socket.sendMany(q);
  }
}

/** A flow's (or path's) connected backend socket's datagrams. */
export class BackendBatch {
  private queue: Uint8Array[] = [];
  private closed = false;

  constructor(private readonly socket: ConnectedSender & { close(): void }) {}

  send(d: Uint8Array): void {
    if (this.closed) return;
    if (this.queue.length === 0) atTurnEnd(this);
    this.queue.push(d);
  }

  sendMany(ds: readonly Uint8Array[]): void {
    for (const d of ds) this.send(d);
  }

  close(): void {
    this.closed = true;
    this.queue = [];
    this.socket.close();
  }

  flush(): void {
    const q = this.queue;
    if (q.length === 0) return;
    this.queue = [];
    if (q.length === 1) this.socket.send(q[0]!);
    else this.socket.sendMany(q);
  }
}
