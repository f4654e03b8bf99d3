// The backend side of a connection: the socket handlers every backend socket
// of an event loop shares, the data each socket carries (its connection and
// which try it is), the connect itself, and its result for passive health.

import type { Socket, SocketHandler } from "bun";
import type { Logger } from "../log/logger";
import type { SendProxy } from "../config/types";
import { normaliseIp } from "../net/ip";
import type { ProxyHeader } from "../proxy_header/proxy_header";
import { headerFor } from "../proxy_header/proxy_header_writer";
import type { PeerSocket, Relay } from "../relay/relay";
import type { BackendTable } from "../routing/backend_table";
import type { RoutePool } from "../routing/pool";
import { type DialOwner, type Dialer, dial, targetOf } from "./backend_dial";

/** What a backend socket tells its connection (connection.ts implements it): the connect's result to it, the bytes to its relay. */
export interface BackendOwner extends DialOwner {
  readonly relay: Relay;
  onBackendOpen(socket: PeerSocket, attempt: number): void;
  onBackendConnectError(attempt: number): void;
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
    /** The addresses of this try, and which is being connected to (backend_dial.ts). */
    readonly addresses: readonly string[] = [],
    readonly port = 0,
    readonly i = 0,
  ) {}
}

export function backendHandlers(logger: Logger): SocketHandler<BackendAttempt> {
  const handlers: SocketHandler<BackendAttempt> = {
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
    connectError: (socket: Socket<BackendAttempt>) => {
      const d = socket.data;
      // The next address of a name's answer, in the same try (its connect_timeout covers them all).
      if (d.i + 1 < d.addresses.length && d.c.awaits(d.n)) connectTo(d.c, d.n, d.addresses, d.port, d.i + 1, handlers);
      else d.c.onBackendConnectError(d.n);
    },
    error: (socket, err) => {
      logger.error("backend socket handler failed", { error: err.message, stack: err.stack });
      socket.data?.c.forceClose("internal_error");
    },
  };
  return handlers;
}

/** Connect failures are reported through connectError; the rejection carries nothing more. */
const IGNORE = (): void => {};

/** Connect try `n` of `c` to its i-th address (an IP literal: nothing is resolved here). */
function connectTo(
  c: BackendOwner,
  n: number,
  addresses: readonly string[],
  port: number,
  i: number,
  socket: SocketHandler<BackendAttempt>,
): void {
  const hostname = addresses[i]!;
  if (c.resolved !== null) c.resolved = hostname;
  const data = new BackendAttempt(c, n, addresses, port, i);
  Bun.connect<BackendAttempt>({ hostname, port, allowHalfOpen: true, data, socket }).catch(IGNORE);
}

/**
 * Start try `attempt` of `owner` to `backend` (host:port); the result comes
 * back through the owner's BackendOwner methods. An event loop connects with
 * Bun's sockets (bunConnector); a unit test with a fake of its own.
 */
export type BackendConnector = (owner: BackendOwner, backend: string, attempt: number) => void;

/**
 * Connect with Bun's sockets, every backend socket of the loop sharing one set of handlers; a backend named
 * by a host name through the loop's resolver and its routes' destination guards (backend_dial.ts).
 */
export function bunConnector(logger: Logger, dialer: Dialer): BackendConnector {
  const handlers = backendHandlers(logger);
  return (owner, backend, attempt) => {
    const t = targetOf(backend);
    owner.resolved = t.literal ? null : "";
    dial(owner, t, attempt, dialer.dns, dialer.guards, (addresses) =>
      connectTo(owner, attempt, addresses, t.port, 0, handlers),
    );
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
  // A templated backend stands for every host its template fills: one host's failures say nothing of another's,
  // and a client choosing the name would otherwise take the route down for all (docs/ROUTING.md "Templated routes").
  if (pool.templated) return;
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
