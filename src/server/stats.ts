// What the server counts, per listener and per route: plain numbers and
// fixed arrays resolved once (when a listener or route is created), so that
// counting on the hot path is an index and an increment — no label strings,
// no maps keyed by client input. GetStatus and the Prometheus metrics
// (src/metrics) read these; they never count anything themselves.

import { DEFAULT_ROUTE_LABEL } from "../routing/pool";

/** Access-log outcome names (docs/SPEC.md §9), plus client_closed, shutdown, internal_error and the PROXY protocol's two. */
export const OUTCOMES = [
  "ok",
  "blocked_ip",
  "blocked_cidr",
  "blocked_country",
  "blocked_ja4",
  "rate_limited",
  "over_capacity",
  "untrusted_proxy",
  "bad_proxy_header",
  "not_tls",
  "malformed",
  "too_large",
  "hello_timeout",
  "no_sni",
  "no_route",
  "route_denied",
  "no_backend",
  "connect_failed",
  // A backend named by a host name (docs/DNS.md): no answer (past stale_ttl), or every address refused
  // by the destination guard (docs/SECURITY.md "Destination guard").
  "dns_failed",
  "destination_denied",
  "backend_closed",
  "idle_timeout",
  "client_closed",
  "shutdown",
  "backend_disabled",
  "internal_error",
  // QUIC listeners: a first datagram that is not a client Initial we can read, or of a QUIC version we cannot.
  "not_quic",
  "quic_version",
  // A routed QUIC flow's client address: a long header naming another connection (quic/new_connection.ts), not relayed.
  "quic_new_connection",
] as const;

export type Outcome = (typeof OUTCOMES)[number];

export const OUTCOME_INDEX: Readonly<Record<Outcome, number>> = Object.fromEntries(
  OUTCOMES.map((o, i) => [o, i]),
) as Record<Outcome, number>;

/** Route label for connections that matched no route (a listener's default route's: routing/pool.ts DEFAULT_ROUTE_LABEL). */
export const NO_ROUTE_LABEL = "_none";

/**
 * A histogram with fixed upper bounds (seconds), counted in place. Exposed
 * in the Prometheus format by src/metrics; `observe` allocates nothing.
 */
export class Histogram {
  /** counts[i] = observations ≤ bounds[i] and > bounds[i-1]; the last slot is +Inf. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length + 1);
  }
  observe(v: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && v > b[i]!) i++;
    this.counts[i]!++;
    this.sum += v;
    this.count++;
  }
}

/** Histogram bounds chosen for a proxy (docs/METRICS_AND_LOGS.md "Metrics"). */
export const BUCKETS = {
  /** Time to a complete ClientHello: a client on a LAN is under 1 ms, a slow mobile link a second. */
  hello: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  /** Backend connect: loopback ~0.1 ms, same datacentre ~1 ms, across regions 100 ms. */
  connect: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
  /** Whole connections: a refusal takes microseconds, a download minutes, a websocket hours. */
  connection: [0.001, 0.01, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 14400, 86400],
} as const;

export class RouteStats {
  /** Bytes of connections on this route that have ended; live ones are added at scrape time. */
  bytesFromClient = 0;
  bytesToClient = 0;
  readonly connect = new Histogram(BUCKETS.connect);
  constructor(readonly label: string) {}
}

export class ListenerStats {
  accepted = 0;
  readonly closed = new Float64Array(OUTCOMES.length);
  readonly hello = new Histogram(BUCKETS.hello);
  /** Connection duration per outcome, indexed like OUTCOMES. */
  readonly duration: Histogram[] = OUTCOMES.map(() => new Histogram(BUCKETS.connection));
  /** By route label: a configured hostname, DEFAULT_ROUTE_LABEL or NO_ROUTE_LABEL; never a client's SNI. */
  readonly routes = new Map<string, RouteStats>();
  readonly none: RouteStats;

  /** `label`: the listener's one name in logs and metrics (listener_runtime.ts listenerLabel). */
  constructor(readonly label: string) {
    this.none = this.route(NO_ROUTE_LABEL);
    this.route(DEFAULT_ROUTE_LABEL);
  }

  /** The stats of a configured route (made on first use and kept: a removed route's series stop growing). */
  route(label: string): RouteStats {
    let r = this.routes.get(label);
    if (r === undefined) this.routes.set(label, (r = new RouteStats(label)));
    return r;
  }
}
