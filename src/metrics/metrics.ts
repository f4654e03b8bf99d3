// Prometheus metrics: an observer of what the server already
// counts (src/server/stats.ts), read at scrape time. prom-client supplies the
// registry, the exposition format and the process metrics; the hot path never
// calls it: its labelled inc()/observe() hash the label set on every call
// (measured in docs/METRICS_AND_LOGS.md "Metrics"), so per-connection counting stays in the
// server's own pre-resolved counters and is turned into samples here.
//
// Labels come only from bounded sets: the listener's one name (its `name`,
// else its addr; a QUIC listener using a TCP listener's routes is "NAME/quic",
// as in the access log: its flows count as connections), outcome, firewall
// reason, a configured route hostname or _default / _none, a configured
// backend. A client's SNI never becomes a label value.

import { Counter, type Metric, Registry, collectDefaultMetrics } from "prom-client";
import { logRecordsDropped } from "../log/logger";
import { type BackendTables, type BackendUpSample, backendUpSamples } from "./backend_up";
import type { HistogramSnapshot, Snapshot } from "../server/snapshot";
import { OUTCOMES } from "../server/stats";
import { VERSION } from "../version";

type Labels = Record<string, string>;
interface Sample {
  labels: Labels;
  value: number;
  metricName?: string;
}
type Kind = "counter" | "gauge" | "histogram";

/** A metric whose samples are computed when scraped (prom-client calls get()). */
function scraped(name: string, help: string, type: Kind, samples: () => Sample[]): Metric {
  return {
    name,
    help,
    type,
    aggregator: "sum",
    get: async () => ({ name, help, type, values: samples(), aggregator: "sum" }),
  } as unknown as Metric;
}

/** The Prometheus samples of one histogram: cumulative buckets, +Inf, sum and count. */
function histogramSamples(name: string, labels: Labels, h: HistogramSnapshot): Sample[] {
  const out: Sample[] = [];
  let cum = 0;
  for (let i = 0; i < h.bounds.length; i++) {
    cum += h.counts[i]!;
    out.push({ metricName: `${name}_bucket`, labels: { ...labels, le: String(h.bounds[i]) }, value: cum });
  }
  out.push({ metricName: `${name}_bucket`, labels: { ...labels, le: "+Inf" }, value: h.count });
  out.push({ metricName: `${name}_sum`, labels, value: h.sum });
  out.push({ metricName: `${name}_count`, labels, value: h.count });
  return out;
}

/** Firewall verdicts by the reason label they are exported under. */
const FIREWALL_REASONS: [string, (typeof OUTCOMES)[number]][] = [
  ["ip", "blocked_ip"],
  ["cidr", "blocked_cidr"],
  ["country", "blocked_country"],
  ["ja4", "blocked_ja4"],
  ["rate", "rate_limited"],
];

/**
 * prom-client 15.1.3's default metrics that are dropped under Bun:
 * - three gauges named like counters (`*_total`), which `promtool check
 *   metrics` rejects (the numbers are not meaningful under Bun anyway);
 * - the per-"space" heap gauges: Bun answers v8.getHeapSpaceStatistics() by
 *   walking the whole JavaScriptCore heap — measured 11 ms with 200,000
 *   objects, 8.4 of the 10.6 ms a scrape of this process took under load —
 *   and the event loop waits meanwhile. JSC has no V8 spaces; the heap's
 *   size stays exported by nodejs_heap_size_{total,used}_bytes
 *   (process.memoryUsage(), 8 µs).
 */
const DROPPED_DEFAULTS = [
  "nodejs_active_handles_total",
  "nodejs_active_requests_total",
  "nodejs_active_resources_total",
  "nodejs_heap_space_size_total_bytes",
  "nodejs_heap_space_size_used_bytes",
  "nodejs_heap_space_size_available_bytes",
];

export class Metrics {
  readonly registry = new Registry();
  readonly adminRequests: Counter<"method" | "code">;
  readonly geoipReloads: Counter<"result">;

  /** The data plane's counters, taken once per scrape (summed over every event loop). */
  private current: Snapshot | null = null;
  /** The backends' health, read with the same scrape. */
  private backendUp: BackendUpSample[] = [];

  constructor(
    /** The control plane: its counters, and the tables in force with the backend table. */
    private readonly source: { snapshot(): Promise<Snapshot> } & BackendTables,
    store: { readonly invalidValues: number } = { invalidValues: 0 },
    /** The process's takeover generation (server_command.ts): which process a scrape reached. */
    generation = 1,
  ) {
    const r = this.registry;
    collectDefaultMetrics({ register: r });
    for (const n of DROPPED_DEFAULTS) r.removeSingleMetric(n);
    const snap = () => this.current!;
    const listeners = () => snap().listeners;

    r.registerMetric(
      scraped(
        "mc_proxy_connections_accepted_total",
        "Connections accepted (on a QUIC listener: first datagrams from a new client address), including those refused at once.",
        "counter",
        () => listeners().map((l) => ({ labels: { listener: l.label }, value: l.accepted })),
      ),
    );
    r.registerMetric(
      scraped(
        "mc_proxy_connections_closed_total",
        "Connections ended, by access-log outcome (every outcome present from the start).",
        "counter",
        () =>
          listeners().flatMap((l) =>
            OUTCOMES.map((o, i) => ({ labels: { listener: l.label, outcome: o }, value: l.closed[i]! })),
          ),
      ),
    );
    r.registerMetric(
      scraped("mc_proxy_connections_active", "Connections open now.", "gauge", () =>
        listeners().map((l) => ({ labels: { listener: l.label }, value: l.active })),
      ),
    );
    r.registerMetric(
      scraped("mc_proxy_listener_max_connections", "The listener's max_connections (0 = unlimited).", "gauge", () =>
        listeners().map((l) => ({ labels: { listener: l.label }, value: l.maxConnections })),
      ),
    );
    r.registerMetric(
      scraped(
        "mc_proxy_backend_up",
        "1 while a route's backend is up, 0 once health checks or failed connects took it down (drain / disable aside).",
        "gauge",
        () => this.backendUp,
      ),
    );
    r.registerMetric(
      scraped(
        "mc_proxy_store_invalid_values_total",
        "Values read from the store (etcd) that broke the config rules: skipped, logged by key.",
        "counter",
        () => [{ labels: {}, value: store.invalidValues }],
      ),
    );
    r.registerMetric(
      scraped(
        "mc_proxy_connection_cap",
        "Connections the process holds at most, from its open-file limit (0 = none).",
        "gauge",
        () => [{ labels: {}, value: snap().connectionCap }],
      ),
    );
    r.registerMetric(
      scraped("mc_proxy_routes", "Routes in the listener's table.", "gauge", () =>
        listeners().map((l) => ({ labels: { listener: l.label }, value: l.routes })),
      ),
    );
    r.registerMetric(
      scraped(
        "mc_proxy_firewall_blocked_total",
        "Connections refused by the firewall, by reason (ip, cidr, country, rate).",
        "counter",
        () =>
          FIREWALL_REASONS.map(([reason, outcome]) => {
            const i = OUTCOMES.indexOf(outcome);
            return { labels: { reason }, value: listeners().reduce((n, l) => n + l.closed[i]!, 0) };
          }),
      ),
    );
    r.registerMetric(
      scraped("mc_proxy_firewall_rules", "Firewall rules in force, by type.", "gauge", () => {
        const c = snap().rules;
        return [
          { labels: { type: "ip" }, value: c.ip },
          { labels: { type: "cidr" }, value: c.cidr },
          { labels: { type: "country" }, value: c.country },
          { labels: { type: "ja4" }, value: c.ja4 },
        ];
      }),
    );
    r.registerMetric(
      scraped(
        "mc_proxy_rate_limiter_tracked_addresses",
        "Clients (IPv4 addresses, IPv6 networks) the rate limiter tracks now.",
        "gauge",
        () => [{ labels: {}, value: snap().rateTracked }],
      ),
    );
    // The resolver caches of every loop, summed (docs/METRICS_AND_LOGS.md "Resolver", docs/DNS.md).
    for (const [name, help, key] of [
      ["mc_proxy_dns_queries_total", "Queries sent to the resolver (a name not fresh in a loop's cache).", "queries"],
      [
        "mc_proxy_dns_failures_total",
        "Resolver queries that failed: timeout, SERVFAIL, refused (no such name is an answer).",
        "failures",
      ],
      [
        "mc_proxy_dns_cache_hits_total",
        "Backend names answered from a fresh cache entry, negative ones included.",
        "hits",
      ],
      ["mc_proxy_dns_stale_answers_total", "Expired answers served while the resolver failed (stale_ttl).", "stale"],
    ] as const)
      r.registerMetric(scraped(name, help, "counter", () => [{ labels: {}, value: snap().dns[key] }]));
    r.registerMetric(
      scraped(
        "mc_proxy_bytes_total",
        "Bytes relayed, by route and direction (from_client, to_client), counted while connections run.",
        "counter",
        () =>
          listeners().flatMap((l) =>
            l.routeStats.flatMap((rs) => [
              { labels: { listener: l.label, route: rs.label, direction: "from_client" }, value: rs.bytesFromClient },
              { labels: { listener: l.label, route: rs.label, direction: "to_client" }, value: rs.bytesToClient },
            ]),
          ),
      ),
    );
    r.registerMetric(
      scraped("mc_proxy_hello_duration_seconds", "Time from accept to a complete ClientHello.", "histogram", () =>
        listeners().flatMap((l) => histogramSamples("mc_proxy_hello_duration_seconds", { listener: l.label }, l.hello)),
      ),
    );
    r.registerMetric(
      scraped(
        "mc_proxy_backend_connect_duration_seconds",
        "Time to connect to the backend, by route.",
        "histogram",
        () =>
          listeners().flatMap((l) =>
            l.routeStats.flatMap((rs) =>
              histogramSamples(
                "mc_proxy_backend_connect_duration_seconds",
                { listener: l.label, route: rs.label },
                rs.connect,
              ),
            ),
          ),
      ),
    );
    r.registerMetric(
      scraped("mc_proxy_connection_duration_seconds", "Whole connection time, by outcome.", "histogram", () =>
        listeners().flatMap((l) =>
          OUTCOMES.flatMap((o, i) =>
            histogramSamples("mc_proxy_connection_duration_seconds", { listener: l.label, outcome: o }, l.duration[i]!),
          ),
        ),
      ),
    );
    r.registerMetric(
      scraped(
        "mc_proxy_geoip_database_build_timestamp_seconds",
        "Build time of the GeoIP database in use (absent without one).",
        "gauge",
        () => {
          const t = snap().geoipBuildEpoch;
          return t === null ? [] : [{ labels: {}, value: t }];
        },
      ),
    );
    r.registerMetric(
      scraped("mc_proxy_draining", "1 from the first SIGTERM/SIGINT on.", "gauge", () => [
        { labels: {}, value: snap().draining ? 1 : 0 },
      ]),
    );
    r.registerMetric(
      scraped(
        "mc_proxy_generation",
        "This process's place in a chain of takeovers: 1 for a plain start, one more per takeover.",
        "gauge",
        () => [{ labels: {}, value: generation }],
      ),
    );
    r.registerMetric(
      scraped(
        "mc_proxy_log_dropped_total",
        "Log records dropped while stderr was not read fast enough.",
        "counter",
        () => [{ labels: {}, value: logRecordsDropped() }],
      ),
    );
    r.registerMetric(
      scraped("mc_proxy_build_info", "Version of mc-proxy and of the Bun runtime in it.", "gauge", () => [
        { labels: { version: VERSION, bun_version: Bun.version }, value: 1 },
      ]),
    );

    this.geoipReloads = new Counter({
      name: "mc_proxy_geoip_reloads_total",
      help: "GeoIP database reloads (SIGHUP), by result.",
      labelNames: ["result"],
      registers: [r],
    });
    for (const result of ["ok", "error"]) this.geoipReloads.labels(result).inc(0);
    this.adminRequests = new Counter({
      name: "mc_proxy_admin_requests_total",
      help: "Admin API calls, by method and gRPC status code.",
      labelNames: ["method", "code"],
      registers: [r],
    });
  }

  /** The exposition text (Prometheus text format 0.0.4), from one snapshot of the data plane. */
  text(): Promise<string> {
    // One scrape at a time: each renders from the snapshot it took.
    const next = this.scraping.then(async () => {
      this.current = await this.source.snapshot();
      this.backendUp = backendUpSamples(this.source);
      return this.registry.metrics();
    });
    this.scraping = next.catch(() => "");
    return next;
  }

  private scraping: Promise<unknown> = Promise.resolve();

  get contentType(): string {
    return this.registry.contentType;
  }
}
