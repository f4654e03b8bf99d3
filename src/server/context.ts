// What every connection shares: settings, the deadline wheel, logger, counters
// and the backend socket handlers. One per event loop.
import type { SocketHandler } from "bun";
import type { ProxyConfig } from "../config/config";
import type { AddressTable } from "../firewall/address_table";
import type { Firewall } from "../firewall/firewall";
import type { Logger } from "../log/logger";
import type { DeadlineWheel } from "../relay/deadline_wheel";
import type { RouteTable } from "../routing/route_table";
import type { BackendTable } from "../routing/backend_table";
import type { BackendAttempt, Connection } from "./connection";
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

export interface ServerContext {
  readonly proxy: ProxyConfig;
  readonly firewall: Firewall;
  readonly wheel: DeadlineWheel<Connection>;
  readonly logger: Logger;
  /** Observe the latency histograms (on when metrics are served; the plain counters always count). */
  readonly histograms: boolean;
  /** Open-connection counts shared by every event loop: exact limits. */
  readonly counters: SharedCounters;
  /** This event loop's worker id (0 for a single loop): the access log's `worker`. */
  readonly workerId: number;
  /** This event loop's connections (for the drain and the live byte counts). */
  readonly connections: Set<Connection>;
  readonly backendHandlers: SocketHandler<BackendAttempt>;
  /** Backend state shared by every loop: health, operator state, connections per backend. */
  readonly backends: BackendTable;
  onConnectionClosed(): void;
}
