// The backend side of a connection: the socket handlers every backend socket
// of an event loop shares, the data each socket carries (its connection and
// which try it is), and the connect itself.

import type { Socket, SocketHandler } from "bun";
import type { Logger } from "../log/logger";
import { splitHostPort } from "../net/host_port";
import type { PeerSocket } from "../relay/relay";

/** What a backend socket tells its connection (connection.ts implements it). */
export interface BackendOwner {
  readonly finished: boolean;
  readonly backend: PeerSocket | null;
  onBackendOpen(socket: PeerSocket, attempt: number): void;
  onBackendConnectError(attempt: number): void;
  backendData(chunk: Uint8Array): void;
  backendDrain(): void;
  backendEnd(): void;
  socketClosed(side: "backend", error: Error | undefined): void;
  forceClose(outcome: "internal_error"): void;
}

/**
 * The data of a backend socket: its connection and which try it is, so that
 * a socket of a try given up on (it timed out, the next one is under way)
 * is closed if it opens late, never used.
 */
export class BackendAttempt {
  constructor(
    readonly c: BackendOwner,
    readonly n: number,
  ) {}
}

export function backendHandlers(logger: Logger): SocketHandler<BackendAttempt> {
  return {
    binaryType: "uint8array",
    open: (socket) => socket.data.c.onBackendOpen(socket as unknown as PeerSocket, socket.data.n),
    data: (socket, chunk) => {
      const c = socket.data.c;
      if (!c.finished) c.backendData(chunk);
    },
    drain: (socket) => {
      const c = socket.data.c;
      if (!c.finished) c.backendDrain();
    },
    end: (socket) => {
      const c = socket.data.c;
      if (!c.finished && c.backend === (socket as unknown)) c.backendEnd();
    },
    close: (socket, err) => {
      const c = socket.data.c;
      if (c.backend === (socket as unknown as PeerSocket)) c.socketClosed("backend", err);
    },
    connectError: (socket: Socket<BackendAttempt>) => socket.data.c.onBackendConnectError(socket.data.n),
    error: (socket, err) => {
      logger.error("backend socket handler failed", { error: err.message, stack: err.stack });
      socket.data?.c.forceClose("internal_error");
    },
  };
}

/** Connect failures are reported through connectError; the rejection carries nothing more. */
const IGNORE = (): void => {};

const backendCache = new Map<string, { host: string; port: number }>();

/** "host:port" / "[v6]:port" → parts, cached; validated when the route was accepted. */
function splitBackend(backend: string): { host: string; port: number } {
  let hp = backendCache.get(backend);
  if (hp === undefined) {
    hp = splitHostPort(backend);
    if (backendCache.size > 10_000) backendCache.clear();
    backendCache.set(backend, hp);
  }
  return hp;
}

/** Start try `attempt` of `owner` to `backend` (host:port); the handlers report how it went. */
export function connectBackend(owner: BackendOwner, backend: string, attempt: number, handlers: SocketHandler<BackendAttempt>): void {
  const { host, port } = splitBackend(backend);
  Bun.connect<BackendAttempt>({ hostname: host, port, allowHalfOpen: true, data: new BackendAttempt(owner, attempt), socket: handlers }).catch(IGNORE);
}
