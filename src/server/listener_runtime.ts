// A listener as the control plane and each event loop hold it: its identity,
// the route table in force (swapped whole on a change), its PROXY protocol
// settings; the limit and the open count are the process's (shared memory).
// A loop's runtime adds the compiled trusted_proxies and its own counters.
import type { AddressTable } from "../firewall/address_table";
import type { RouteTable } from "../routing/route_table";
import type { ListenerView } from "./data_plane";
import type { SharedCounters } from "./shared_counters";
import type { ListenerStats } from "./stats";

export class Listener implements ListenerView {
  constructor(
    /** Position in the config: the listener's slot in the shared counters and backend keys. */
    readonly index: number,
    /** The configured addr string: where it binds; its label in logs and metrics. */
    readonly addr: string,
    /** Its identity in the admin API and the store. */
    readonly name: string,
    /** Swapped whole on a route change. */
    public table: RouteTable,
    /** Connections start with a PROXY header from a trusted balancer. */
    readonly proxyProtocol: boolean,
    readonly trustedProxies: readonly string[],
    protected readonly counters: SharedCounters,
  ) {}

  /** The limit in force, shared by every event loop (0 = unlimited). */
  get maxConnections(): number {
    return this.counters.max(this.index);
  }

  /** Connections open on this listener now, over every event loop. */
  get active(): number {
    return this.counters.active(this.index);
  }
}

export class ListenerRuntime extends Listener {
  constructor(
    base: { index: number; addr: string; name: string; table: RouteTable; proxyProtocol: boolean; trustedProxies: readonly string[] },
    counters: SharedCounters,
    /** trusted_proxies compiled; null when proxyProtocol is off. */
    readonly trusted: AddressTable | null,
    /** This event loop's counters for GetStatus and the metrics. */
    readonly stats: ListenerStats,
  ) {
    super(base.index, base.addr, base.name, base.table, base.proxyProtocol, base.trustedProxies, counters);
  }
}
