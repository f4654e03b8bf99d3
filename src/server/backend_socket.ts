// The backend side of a connection: the socket handlers every backend socket
// of an event loop shares, the data each socket carries (its connection and
// which try it is), the connect itself, and its result for passive health.

import type { Socket, SocketHandler } from "bun";
import type { Logger } from "../log/logger";
import type { SendProxy } from "../config/types";
import { splitHostPort } from "../net/host_port";
import { normaliseIp } from "../net/ip";
import type { ProxyHeader } from "../proxy_header/proxy_header";
import { headerFor } from "../proxy_header/proxy_header_writer";
import type { PeerSocket, Relay } from "../relay/relay";
import type { BackendTable } from "../routing/backend_table";
import type { RoutePool } from "../routing/pool";

/** What a backend socket tells its connection (connection.ts implements it): the connect's result to it, the bytes to its relay. */
export interface BackendOwner {
  readonly relay: Relay;
  onBackendOpen(socket: PeerSocket, attempt: number): void;
  onBackendConnectError(attempt: number): void;
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
      const r = socket.data.c.relay;
      if (!r.finished) r.backendData(chunk);
    },
    drain: (socket) => {
      const r = socket.data.c.relay;
      if (!r.finished) r.backendDrain();
    },
    end: (socket) => {
      const r = socket.data.c.relay;
      if (!r.finished && r.backend === (socket as unknown)) r.backendEnd();
    },
    close: (socket, err) => {
      const r = socket.data.c.relay;
      if (r.backend === (socket as unknown as PeerSocket)) r.socketClosed("backend", err);
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

/**
 * Start try `attempt` of `owner` to `backend` (host:port); the result comes
 * back through the owner's BackendOwner methods. An event loop connects with
 * Bun's sockets (bunConnector); a unit test with a fake of its own.
 */
export type BackendConnector = (owner: BackendOwner, backend: string, attempt: number) => void;

/** Connect with Bun's sockets, every backend socket of the loop sharing one set of handlers. */
export function bunConnector(logger: Logger): BackendConnector {
  const handlers = backendHandlers(logger);
  return (owner, backend, attempt) => {
    const { host, port } = splitBackend(backend);
    const data = new BackendAttempt(owner, attempt);
    Bun.connect<BackendAttempt>({ hostname: host, port, allowHalfOpen: true, data, socket: handlers }).catch(IGNORE);
  };
}

/** What a connect's result is counted with (loop_context.ts). */
interface HealthContext {
  readonly backends: BackendTable;
  readonly logger: Logger;
  readonly workerId: number;
  readonly wheel: { readonly nowSec: number };
}

/**
 * A try's connect result for backend `i` of `pool`, counted for passive
 * health (backend_table.ts connectResult); a backend it marks down is logged.
 */
export function reportConnect(ctx: HealthContext, pool: RoutePool, i: number, ok: boolean, listener: string): void {
  const went = ctx.backends.connectResult(pool.ref(i), ok, pool.fall, pool.checksOn, pool.holdSec, ctx.wheel.nowSec);
  if (went !== "down") return;
  const fields = { listener, route: pool.name, backend: pool.addr(i), worker: ctx.workerId };
  ctx.logger.warn("backend down after connect failures", fields);
}

/**
 * The PROXY header a backend is sent first (send_proxy_protocol v1 or v2):
 * the client as source (a received LOCAL leaves the balancer); as
 * destination what it dialled — the received header's, else our local address.
 */
export function proxyPreamble(
  send: Exclude<SendProxy, "off">,
  source: { ip: string; port: number },
  received: ProxyHeader | null,
  client: PeerSocket,
  sni: string | null,
  id: string,
): Uint8Array {
  const local = client as unknown as { localAddress?: string; localPort: number };
  const destination = received?.destination ?? {
    ip: normaliseIp(local.localAddress ?? "0.0.0.0"),
    port: local.localPort,
  };
  return headerFor(send, source, destination, sni, id);
}
