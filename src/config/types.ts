// What a validated config is: the types every consumer reads. Built by
// config.ts from the sections below it; nothing here parses.

import type { LogFormat, LogLevel } from "../log/logger";
import type { HostPort } from "../net/host_port";

/** The PROXY header sent to a backend: none, v1 (text) or v2 (binary). */
export type SendProxy = "off" | "v1" | "v2";

/** Active health-check settings: the [proxy] defaults, or a route's own. */
export interface CheckSettings {
  intervalMs: number;
  timeoutMs: number;
  rise: number;
  fall: number;
}

/** The [proxy] defaults a route's unset settings take. */
export interface PoolDefaults {
  check: CheckSettings;
  retries: number;
}

/**
 * Reads a listener's [[listeners.routes]] tables: the route section is
 * validated beside the route model (routing/route_config.ts), which hands
 * this reader to the loader, so config depends on no route code.
 */
export type RouteReader<R> = (tables: unknown, where: string, problems: string[]) => R[];

/** What every listener has, TCP or QUIC; `R` is the route type the reader builds. */
interface ListenerBase<R> {
  /** As written in the config: where it binds, and its label in logs and metrics (a QUIC listener's: "ADDR/quic"). */
  addr: string;
  /**
   * Its identity in the admin API and the store (default: addr). Instances of
   * a fleet that bind different addresses share a route table by sharing a name.
   */
  name: string;
  bind: HostPort;
  /** Its slot in the shared counters and its place in every snapshot: the TCP listeners first, then the QUIC ones. */
  index: number;
  /** Open connections (TCP) or routed flows (QUIC) at once, over every event loop; 0 = unlimited. */
  maxConnections: number;
  /** Its own routes (none for a QUIC listener that uses a TCP listener's: QuicListenerConfig.routesFrom). */
  routes: R[];
}

/** A TCP listener (config/listeners.ts validateListeners). */
export interface TcpListenerConfig<R = unknown> extends ListenerBase<R> {
  protocol: "tcp";
  /** A connection older than this is ended (docs/POOLS.md "Drains end"); 0 never; a route's own wins. */
  maxConnectionLifetimeMs: number;
  defaultBackend: string | null;
  defaultBackendSendProxyProtocol: SendProxy;
  /** Every connection starts with a PROXY header from one of trustedProxies. */
  proxyProtocol: boolean;
  /** Canonical "address/prefix" strings; empty unless proxyProtocol. */
  trustedProxies: string[];
  /** The destination guard's lists for every route of this listener (docs/SECURITY.md "Destination guard"). */
  allowDestinations?: string[];
  denyDestinations?: string[];
}

/** A UDP listener routing QUIC (config/listeners.ts validateQuicListeners; docs/HTTP3.md). */
export interface QuicListenerConfig<R = unknown> extends ListenerBase<R> {
  protocol: "quic";
  /**
   * The index of the TCP listener of the same name, whose routes it uses
   * (and changes to them); null: it has routes of its own, stored and
   * changed by its name like a TCP listener's.
   */
  routesFrom: number | null;
}

/** A listener as configured, of either kind. */
export type ListenerConfig<R = unknown> = TcpListenerConfig<R> | QuicListenerConfig<R>;

export interface GrpcConfig {
  addr: string;
  tlsCert: string | null;
  tlsKey: string | null;
  clientCa: string | null;
  /** Used by the CLI to reach the admin API. */
  clientCert: string | null;
  clientKey: string | null;
  serverCa: string | null;
  /** Accept TLS clients without a certificate (no client_ca on a TCP address): an explicit, logged risk. */
  allowUnauthenticatedAdmin: boolean;
  /** Certificate names (CN or DNS SAN) that may call mutating RPCs; null = every verified client. */
  adminClients: string[] | null;
}

/** What a dashboard user may do (docs/DASHBOARD.md "Roles"); the same three levels as the admin API's callers. */
export type DashboardRole = "reader" | "operator" | "admin";

export interface DashboardUser {
  name: string;
  role: DashboardRole;
  /** An argon2id PHC string (`mc-proxy passwd`). */
  passwordHash: string;
}

/** The web dashboard (docs/DASHBOARD.md): off when the section is absent. */
export interface DashboardConfig {
  /** host:port, or unix:/absolute/path. */
  addr: string;
  /** Both set: HTTPS. Neither: plain HTTP, on a loopback address or a unix socket only. */
  tlsCert: string | null;
  tlsKey: string | null;
  sessionTtlMs: number;
  users: DashboardUser[];
}

export interface FirewallConfig {
  geoipDb: string | null;
  blockedIps: string[];
  blockedCidrs: string[];
  blockedCountries: string[];
  blockedJa4: string[];
  rateLimit: number;
  rateWindowMs: number;
  rateLimitIpv6Prefix: number;
}

export interface ProxyConfig {
  connectTimeoutMs: number;
  idleTimeoutMs: number;
  /** A QUIC flow with no datagram either way for this long is over (its backend socket closed, its record written). */
  quicIdleTimeoutMs: number;
  helloTimeoutMs: number;
  maxHelloBytes: number;
  shutdownTimeoutMs: number;
  /** Connections left on a drained or removed backend are closed this long after (docs/POOLS.md "Drains end"); 0 never. */
  drainTimeoutMs: number;
  /** Event loops: "auto" = one per CPU this process may run on. */
  workers: number | "auto";
  /** Health-check settings and retries for routes that do not set their own. */
  pool: PoolDefaults;
}

export interface MetricsConfig {
  /** host:port, or unix:/absolute/path. */
  addr: string;
  /** The scrape path, starting with "/". */
  path: string;
}

export interface EtcdConfig {
  endpoints: string[];
  /** Every key lives under it; ends with "/". */
  prefix: string;
  ca: string | null;
  cert: string | null;
  key: string | null;
  username: string | null;
  password: string | null;
  dialTimeoutMs: number;
}

/** The live "top fingerprints" table (metrics/heavy_hitters.ts): top = 0 turns it off. */
export interface FingerprintsConfig {
  top: number;
  windowMs: number;
}

/** [dns] (config/dns.ts, docs/DNS.md): no servers = the system resolver. */
export interface DnsConfig {
  /** "ip", "ip:port" or "[v6]:port". */
  servers: string[];
  minTtlMs: number;
  maxTtlMs: number;
  negativeTtlMs: number;
  staleTtlMs: number;
  cacheSize: number;
  timeoutMs: number;
}

export interface Config<R = unknown> {
  file: string;
  /** SQLite: the store itself; with etcd, its last-known-good copy. */
  databasePath: string;
  /** Where routes, firewall rules and limits live: the embedded SQLite file, or etcd for a fleet. */
  store: "sqlite" | "etcd";
  etcd: EtcdConfig | null;
  /** The TCP listeners, in the config's order (index 0…). */
  listeners: TcpListenerConfig<R>[];
  /** The QUIC listeners, in the config's order (index after the TCP listeners'). */
  quicListeners: QuicListenerConfig<R>[];
  grpc: GrpcConfig | null;
  metrics: MetricsConfig | null;
  dashboard: DashboardConfig | null;
  firewall: FirewallConfig;
  fingerprints: FingerprintsConfig;
  dns: DnsConfig;
  proxy: ProxyConfig;
  log: { level: LogLevel; format: LogFormat };
  /** Settings that are valid but risky: `check` prints them, the server logs them at warn. */
  warnings: string[];
}

export class ConfigError extends Error {
  constructor(
    readonly file: string,
    readonly problems: string[],
  ) {
    // A problem placed in the text ("12:7: …") reads as compilers write it: FILE:12:7: …
    super(problems.map((p) => (/^\d+:\d+: /.test(p) ? `${file}:${p}` : `${file}: ${p}`)).join("\n"));
    this.name = "ConfigError";
  }
}
