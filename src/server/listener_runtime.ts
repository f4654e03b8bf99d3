// A listener as the control plane and each event loop hold it: its identity,
// the route table in force (swapped whole on a change), its PROXY protocol
// settings; the limit and the open count are the process's (shared memory).
// A loop's runtime adds the compiled trusted_proxies, its own counters and
// the way to a place in the process's budget. A QUIC listener has its own
// (its slot in the shared counters, its stats, its label), over its own
// route table or the TCP listener's whose routes it uses.
import type { ListenerConfig } from "../config/types";
import type { AddressTable } from "../firewall/address_table";
import type { RouteTable } from "../routing/route_table";
import type { ListenerView } from "./runtime_views";
import type { SharedCounters } from "./shared_counters";
import type { ListenerStats } from "./stats";

export class Listener implements ListenerView {
  constructor(
    /** Position in the config: the listener's slot in the shared counters and backend keys. */
    readonly index: number,
    /** The configured addr string: where it binds (a QUIC listener's: "ADDR/quic"). */
    readonly addr: string,
    /** Its identity in the admin API and the store. */
    readonly name: string,
    /** Swapped whole on a route change. */
    public table: RouteTable,
    /** Connections start with a PROXY header from a trusted balancer. */
    readonly proxyProtocol: boolean,
    readonly trustedProxies: readonly string[],
    protected readonly counters: SharedCounters,
    /** TCP: connections accepted; QUIC: flows. */
    readonly protocol: "tcp" | "quic" = "tcp",
    /** Its one name in logs, metrics and status (listenerLabel). */
    readonly label: string = name,
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

/**
 * A listener's one name in logs, metrics and status (docs/METRICS_AND_LOGS.md
 * "Metrics"): its `name` (its addr when it has none), the name the admin API
 * knows it by; a QUIC listener that uses the routes of the TCP listener of
 * its name adds "/quic", as the two share that name.
 */
export function listenerLabel(l: ListenerConfig): string {
  return l.protocol === "quic" && l.routesFrom !== null ? `${l.name}/quic` : l.name;
}

/**
 * What a listener is known by, whatever holds it: its slot, its addr, its name, its label, its kind and PROXY settings.
 */
export interface ListenerIdentity {
  index: number;
  addr: string;
  name: string;
  /** Its one name in logs, metrics and status (listenerLabel); default: name. */
  label?: string;
  proxyProtocol: boolean;
  trustedProxies: readonly string[];
  protocol?: "tcp" | "quic";
}

/** A configured listener's identity: a QUIC listener's addr is "ADDR/quic", and it reads no PROXY header. */
export function identityOf(l: ListenerConfig): Required<ListenerIdentity> {
  const { index, name } = l;
  const label = listenerLabel(l);
  if (l.protocol === "quic")
    return { index, addr: `${l.addr}/quic`, name, label, proxyProtocol: false, trustedProxies: [], protocol: "quic" };
  return {
    index,
    addr: l.addr,
    name,
    label,
    proxyProtocol: l.proxyProtocol,
    trustedProxies: l.trustedProxies,
    protocol: "tcp",
  };
}

export class ListenerRuntime extends Listener {
  constructor(
    base: ListenerIdentity & { table: RouteTable },
    counters: SharedCounters,
    /** trusted_proxies compiled; null when proxyProtocol is off. */
    readonly trusted: AddressTable | null,
    /** This event loop's counters for GetStatus and the metrics. */
    readonly stats: ListenerStats,
    /** The process's connection cap (host_limits.ts connectionCap; 0 = none). */
    readonly connectionCap = 0,
  ) {
    super(
      base.index,
      base.addr,
      base.name,
      base.table,
      base.proxyProtocol,
      base.trustedProxies,
      counters,
      base.protocol,
      base.label ?? base.name,
    );
  }

  /**
   * Take a place for a connection accepted, or a QUIC flow opening its
   * backend socket, on worker `w`: one of the listener's max_connections and
   * one of the process's connection cap, counted across every event loop;
   * false (nothing taken) when either is full. Given back with givePlace.
   */
  takePlace(w: number): boolean {
    return this.counters.tryAcquire(this.index, w, this.connectionCap);
  }

  givePlace(w: number): void {
    this.counters.release(this.index, w);
  }
}
