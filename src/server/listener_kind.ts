// The two kinds of listener an event loop binds, behind one small
// interface it drives: a TCP listener (Bun.listen with SO_REUSEPORT, in
// every loop, its connections in connection.ts) or a QUIC listener (a UDP
// socket, in the first loop only: quic_listener.ts). Each is a runtime
// (listener_runtime.ts: its slot, its counters, its label, its routes) that
// every loop's snapshot reads whether or not this loop binds it.

import type { SlotRef } from "../routing/backend_table";
import type { SocketHandler, TCPSocketListener, TCPSocketListenOptions, udp } from "bun";
import type { QuicListenerConfig, TcpListenerConfig } from "../config/types";
import { bindRetrying } from "../net/bind_retry";
import { bindHost } from "../net/host_port";
import type { NewlyBlocked } from "../firewall/firewall";
import type { Dialer } from "./backend_dial";
import type { ListenerRuntime } from "./listener_runtime";
import { backendSocket } from "./quic_backend";
import type { SweptFlow } from "./quic_established";
import { type QuicContext, QuicListener } from "./quic_listener";
import { ClientBatch } from "./quic_send_batch";

export interface ListenerKind {
  readonly runtime: ListenerRuntime;
  /**
   * The old process holds its address until it hands over (a takeover):
   * bound after the handover, in the background (QUIC: bound without
   * SO_REUSEPORT, so that the kernel never hands a new process the
   * datagrams of the old one's flows, which it could not relay).
   */
  readonly waitsForHandover: boolean;
  /** Bind its address, retrying EADDRINUSE for `retryMs`; throws when it cannot. */
  bind(retryMs: number): Promise<void>;
  /**
   * Stop accepting: TCP connections already open finish (the loop's drain); QUIC flows end (their close is encrypted).
   */
  drain(): void;
  /** Unbind at once (a start that failed). */
  close(): void;
}

/** A TCP listener, one socket per loop bound with SO_REUSEPORT. */
export class TcpKind<C> implements ListenerKind {
  readonly waitsForHandover = false;
  private bound: TCPSocketListener<unknown> | null = null;

  constructor(
    private readonly cfg: TcpListenerConfig,
    readonly runtime: ListenerRuntime,
    /** Its accepted connections' handlers (event_loop.ts clientHandlers). */
    private readonly handlers: SocketHandler<C>,
  ) {}

  async bind(): Promise<void> {
    const l = this.cfg;
    try {
      // SO_REUSEPORT always: one socket per loop on each address, and a takeover binds beside this process
      // (server_command.ts). It works on Bun.listen (measured); bun-types 1.4.4 declares it on connect options only.
      const opts = {
        hostname: bindHost(l.bind.host),
        port: l.bind.port,
        allowHalfOpen: true,
        reusePort: true,
        socket: this.handlers,
      };
      this.bound = Bun.listen<C>(opts as TCPSocketListenOptions<C>) as TCPSocketListener<unknown>;
    } catch (e) {
      throw new Error(`listeners[${l.index}].addr "${l.addr}": cannot listen: ${(e as Error).message}`);
    }
  }

  drain(): void {
    this.bound?.stop(false);
  }

  close(): void {
    this.bound?.stop(true);
  }
}

/** A QUIC listener: one UDP socket, in the first event loop; its sends batched a loop turn at a time (quic_send_batch.ts). */
export class QuicKind implements ListenerKind {
  readonly waitsForHandover = true;
  private listener: QuicListener | null = null;
  private closed = false;

  constructor(
    private readonly cfg: QuicListenerConfig,
    readonly runtime: ListenerRuntime,
    private readonly ctx: QuicContext,
    /** The loop's resolver cache and destination guards (backend_dial.ts), shared with its TCP connections. */
    private readonly dialer: Dialer,
  ) {}

  /** Bind the UDP address, retrying EADDRINUSE for `retryMs` (a takeover: the old process holds it until it hands over). */
  async bind(retryMs: number): Promise<void> {
    const cfg = this.cfg;
    const holder: { l: QuicListener | null } = { l: null };
    let socket: udp.Socket<"uint8array">;
    try {
      socket = await bindRetrying(retryMs, () =>
        Bun.udpSocket({
          hostname: bindHost(cfg.bind.host),
          port: cfg.bind.port,
          binaryType: "uint8array",
          socket: { data: (_s, d, port, addr) => holder.l?.onDatagram(d, port, addr) },
        }),
      );
    } catch (e) {
      throw new Error(`quic listener "${cfg.addr}": cannot bind UDP: ${(e as Error).message}`);
    }
    // The guard's listener lists: those of the TCP listener whose routes (and pools) it shares.
    const guardListener = cfg.routesFrom ?? cfg.index;
    const batch = new ClientBatch(socket);
    const batched = {
      port: socket.port,
      send: (d: Uint8Array, port: number, address: string) => batch.send(d, port, address),
      close: () => {
        batch.close();
        socket.close();
      },
    };
    holder.l = new QuicListener(batched, this.runtime, this.ctx, {
      dialer: this.dialer,
      guardListener,
      connect: backendSocket,
    });
    // Drained while it was binding (a takeover's late bind).
    if (this.closed) return holder.l.close();
    this.listener = holder.l;
  }

  drain(): void {
    this.close();
  }

  close(): void {
    this.closed = true;
    this.listener?.close();
  }

  /** A rule added at runtime: end the flows it newly blocks (quic_listener.ts block); how many. */
  block(blocked: NewlyBlocked): number {
    return this.listener?.block(blocked) ?? 0;
  }

  /** DISABLED with reset: end the flows on a backend (quic_listener.ts resetBackend); how many. */
  resetBackend(ref: SlotRef): number {
    return this.listener?.resetBackend(ref) ?? 0;
  }

  /** Its routed flows, for the loop's drain / lifetime sweep. */
  routedFlows(): Iterable<SweptFlow> {
    return this.listener?.routedFlows() ?? [];
  }
}
