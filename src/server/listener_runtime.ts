// A listener as one event loop runs it: its route table in force, its PROXY
// protocol settings, its counters; the limit and the open count are the
// process's (shared memory).
import type { AddressTable } from "../firewall/address_table";
import type { RouteTable } from "../routing/route_table";
import type { ListenerView } from "./data_plane";
import type { SharedCounters } from "./shared_counters";
import type { ListenerStats } from "./stats";

export class ListenerRuntime implements ListenerView {
  constructor(
    /** Position in the config: the listener's slot in the shared counters. */
    readonly index: number,
    /** The configured addr string: where it binds; its label in logs and metrics. */
    readonly addr: string,
    /** Its identity in the admin API and the store. */
    readonly name: string,
    /** Swapped whole on a route change. */
    public table: RouteTable,
    /** Connections start with a PROXY header from a trusted balancer. */
    readonly proxyProtocol: boolean,
    /** trusted_proxies compiled; null when proxyProtocol is off. */
    readonly trusted: AddressTable | null,
    readonly trustedProxies: readonly string[],
    /** This event loop's counters for GetStatus and the metrics. */
    readonly stats: ListenerStats,
    private readonly counters: SharedCounters,
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
