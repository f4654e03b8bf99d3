// Plain TCP backends for the end-to-end tests: one that answers its name to
// the first bytes (counting connections, open ones too), and one that reads
// and closes without answering (a broken server).
import type { Socket } from "bun";

export interface NamedBackend {
  readonly name: string;
  port: number;
  /** Connections accepted so far. */
  conns: number;
  /** Connections open now. */
  open: number;
  stop(): void;
}

/** Answers `name` to whatever it reads; keeps the connection open; ends when the client does. */
export function named(name: string, port = 0): NamedBackend {
  const state: NamedBackend = { name, port: 0, conns: 0, open: 0, stop: () => {} };
  const l = Bun.listen({
    hostname: "127.0.0.1",
    port,
    allowHalfOpen: true,
    socket: {
      open: () => {
        state.conns++;
        state.open++;
      },
      data: (s) => void s.write(name),
      end: (s) => void s.end(),
      close: () => void state.open--,
    },
  });
  state.port = l.port;
  state.stop = () => l.stop(true);
  return state;
}

/** Reads what it is sent, then closes 50 ms later without answering. */
export function closer(): { port: number; received(): Buffer; stop(): void } {
  const got: Buffer[] = [];
  const l = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      data: (s: Socket<undefined>, d) => {
        got.push(Buffer.from(d));
        setTimeout(() => s.end(), 50);
      },
    },
  });
  return { port: l.port, received: () => Buffer.concat(got), stop: () => l.stop(true) };
}
