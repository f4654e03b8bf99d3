// Where a QUIC flow's datagrams go: the same dial as a TCP connection's
// (backend_dial.ts) — an IP literal as written; a host name, or a templated
// route's filled-in backend, through the loop's resolver cache, every
// address checked by the route's destination guard (docs/SECURITY.md
// "Destination guard") — then a connected UDP socket to the checked IP
// literal itself: Bun is never handed a name, which it would resolve again,
// unguarded (DNS rebinding). A UDP connect probes nothing, so of a name's
// answer the first address the guard permits is used. A path the flow moves
// to (quic_paths.ts) uses the flow's checked address, never resolved again.

import { isIP } from "node:net";
import { type DialOwner, type Dialer, dial, targetOf } from "./backend_dial";
import type { BackendDatagramConnector, Flow } from "./quic_flow";
import { BackendBatch } from "./quic_send_batch";

/** How a QUIC listener's flows reach their backends. */
export interface QuicBackends {
  /** The event loop's resolver cache and destination guards, shared with its TCP connections. */
  readonly dialer: Dialer;
  /**
   * The listener whose allow_destinations / deny_destinations apply with a route's own: the TCP listener whose
   * routes the QUIC listener uses (their pools, and so their guards, are shared), else its own index (none).
   */
  readonly guardListener: number;
  /** The UDP socket to an IP literal: Bun's (backendSocket), or a unit test's fake. */
  readonly connect: BackendDatagramConnector;
}

/** Why a flow got no backend address: the name did not resolve, or the guard refused every address. */
export type DialRefusal = "destination_denied" | "dns_failed" | "internal_error";

/**
 * Dial flow f's backend (f.backendAddr, its route's target): `go` gets the
 * IP literal and port to connect to (f.resolved set for a name), or
 * `refused` why not. Synchronous for a literal and a cached name; a lookup
 * that settles after the flow ended is dropped.
 */
export function dialFlow(
  f: Flow,
  b: QuicBackends,
  go: (ip: string, port: number) => void,
  refused: (outcome: DialRefusal) => void,
): void {
  const t = targetOf(f.backendAddr!);
  f.resolved = t.literal ? null : "";
  const owner: DialOwner = {
    route: f.route,
    listener: { index: b.guardListener },
    get resolved() {
      return f.resolved;
    },
    set resolved(v) {
      f.resolved = v;
    },
    awaits: () => f.state === "connecting",
    onBackendRefused: (_attempt, outcome) => refused(outcome),
    forceClose: (outcome) => refused(outcome),
  };
  dial(owner, t, 1, b.dialer.dns, b.dialer.guards, (addresses) => {
    const ip = addresses[0]!;
    if (f.resolved !== null) f.resolved = ip;
    go(ip, t.port);
  });
}

/** A connected UDP socket to the backend at ip (an IP literal) and port, handing its datagrams to onData: Bun's. */
export const backendSocket: BackendDatagramConnector = (ip, port, onData) => {
  // The dial gives IP literals only: a name here would be resolved by Bun, past the destination guard.
  if (isIP(ip) === 0) return Promise.reject(new Error(`not an IP literal: ${ip}`));
  return Bun.udpSocket({
    binaryType: "uint8array",
    connect: { hostname: ip, port },
    socket: {
      data: (_s, d) => onData(d),
      error: () => {},
    },
  }).then((s) => new BackendBatch(s));
};
