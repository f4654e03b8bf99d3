// What reaches a QUIC listener's established flows, as it reaches TCP
// connections: a firewall rule added at runtime (docs/SECURITY.md "Rules
// reach established connections") and the end of drains and lifetimes
// (docs/POOLS.md "Drains end"). The decisions are the TCP side's own
// (Firewall.newlyBlocked; connection_sweep.ts dueReason over the same
// facts); only the ending differs: a QUIC flow has no FIN to send (its close
// is encrypted), so it ends by being dropped — its backend sockets closed,
// its datagrams no longer relayed — and its endpoints' idle timers close the
// connection.

import type { NewlyBlocked, RuleVerdict } from "../firewall/firewall";
import type { Closer } from "../relay/relay";
import type { Sweepable } from "./connection_sweep";
import type { Flow, Path } from "./quic_flow";

/** What a rule change blocks: flows to end (with the outcome admission would give now), paths to close. */
export interface BlockedFlows {
  readonly flows: [Flow, RuleVerdict][];
  readonly paths: Path[];
}

/**
 * The flows `blocked` (the rules now in force against those they were admitted under) blocks: a flow by the
 * address that opened it or its hello's JA4 (every path ends with it); a path of a flow that stays, by its own
 * address (its client is judged like a new flow's: quic_paths.ts).
 */
export function blockedFlows(flows: Iterable<Flow>, blocked: NewlyBlocked): BlockedFlows {
  const out: BlockedFlows = { flows: [], paths: [] };
  for (const f of flows) {
    if (f.state === "ended") continue;
    const v = blocked(f.clientIp, f.ja4);
    if (v !== null) {
      out.flows.push([f, v]);
      continue;
    }
    for (const p of f.paths) if (blocked(p.ip, "") !== null) out.paths.push(p);
  }
  return out;
}

/** Nothing to reset after the grace: a flow's end was its drop. */
const NO_CLIENT = { terminate(): void {} };

/**
 * A routed flow as the loop's sweep (connection_sweep.ts) sees a
 * connection: its ages, route, listener and backend slot. Nothing waits to
 * be written (UDP), so a due flow ends at once; FIN or RST alike, it is
 * dropped, `closed_by` drain or lifetime.
 */
export class SweptFlow implements Sweepable {
  readonly relay: Sweepable["relay"];

  constructor(
    readonly flow: Flow,
    end: (f: Flow, by: Closer) => void,
  ) {
    this.relay = {
      get finished() {
        return flow.state === "ended";
      },
      pending: false,
      client: NO_CLIENT,
      closeBoth: (by) => end(flow, by),
      resetBoth: (by) => end(flow, by),
    };
  }

  get acceptedAt(): number {
    return this.flow.acceptedAt;
  }

  get connectedAt(): number {
    return this.flow.connectedAt;
  }

  get route(): Flow["route"] {
    return this.flow.route;
  }

  get listener(): Flow["listener"] {
    return this.flow.listener;
  }

  get backendSlot(): Flow["backendSlot"] {
    return this.flow.backendSlot;
  }
}
