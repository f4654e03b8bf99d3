// What every connection shares: settings, the deadline wheel, logger, counters
// and the backend socket handlers. One per running server.
import type { SocketHandler } from "bun";
import type { ProxyConfig } from "../config/config";
import type { AddressTable } from "../firewall/address_table";
import type { Firewall } from "../firewall/firewall";
import type { Logger } from "../log/logger";
import type { DeadlineWheel } from "../relay/deadline_wheel";
import type { RouteTable } from "../routing/route_table";
import type { Connection } from "./connection";
import type { ListenerStats } from "./stats";

export interface ListenerRuntime {
  /** The configured addr string: the listener's name. */
  readonly addr: string;
  /** Swapped whole on a route change. */
  table: RouteTable;
  maxConnections: number;
  active: number;
  /** Connections start with a PROXY header from a trusted balancer (issue 9). */
  readonly proxyProtocol: boolean;
  /** trusted_proxies compiled; null when proxyProtocol is off. */
  readonly trusted: AddressTable | null;
  readonly trustedProxies: readonly string[];
  /** Counters for GetStatus and the metrics. */
  readonly stats: ListenerStats;
}

export interface ServerContext {
  readonly proxy: ProxyConfig;
  readonly firewall: Firewall;
  readonly wheel: DeadlineWheel<Connection>;
  readonly logger: Logger;
  /** Observe the latency histograms (on when metrics are served; the plain counters always count). */
  readonly histograms: boolean;
  readonly connections: Set<Connection>;
  readonly backendHandlers: SocketHandler<Connection>;
  onConnectionClosed(): void;
}
