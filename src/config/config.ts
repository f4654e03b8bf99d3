// The one config loader: TOML text → validated Config, or a ConfigError that
// lists every problem with the file, the key and the bad value (docs/SPEC.md §7).
// Nothing binds before this returns. Unknown keys are errors.

import { readFileSync } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";
import { parseAddressOrCidr, parseCidrRule, parseCountryRule, parseIpRule } from "../firewall/address";
import { type Balance, type BackendSpec, type CheckSettings, type HealthCheckKind, type PoolDefaults, type Route, type SendProxy, singleBackend } from "../routing/pool";
import { MAX_COUNT, MAX_DURATION_MS, MAX_DURATION_TEXT, backendError, endpointKey, intError, maxConnectionsError, parseRouteHostname, poolError, routeProblems } from "../routing/route_rules";
import { type HostPort, parseHostPort } from "../net/host_port";
import { parseDuration } from "./duration";

export type LogLevel = "debug" | "info" | "warn" | "error";
export type LogFormat = "text" | "json";

/** A route as configured: hostname normalised (lower case, no trailing dot; "*.suffix" for a wildcard). */
export type RouteConfig = Route;

export interface ListenerConfig {
  /** As written in the config: where it binds, and its label in logs and metrics. */
  addr: string;
  /**
   * Its identity in the admin API and the store (default: addr). Instances of
   * a fleet that bind different addresses share a route table by sharing a name.
   */
  name: string;
  bind: HostPort;
  maxConnections: number;
  defaultBackend: string | null;
  defaultBackendSendProxyProtocol: SendProxy;
  /** Every connection starts with a PROXY header from one of trustedProxies. */
  proxyProtocol: boolean;
  /** Canonical "address/prefix" strings; empty unless proxyProtocol. */
  trustedProxies: string[];
  routes: RouteConfig[];
}

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

export interface FirewallConfig {
  geoipDb: string | null;
  blockedIps: string[];
  blockedCidrs: string[];
  blockedCountries: string[];
  rateLimit: number;
  rateWindowMs: number;
  rateLimitIpv6Prefix: number;
}

export interface ProxyConfig {
  connectTimeoutMs: number;
  idleTimeoutMs: number;
  helloTimeoutMs: number;
  maxHelloBytes: number;
  shutdownTimeoutMs: number;
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

export interface Config {
  file: string;
  /** SQLite: the store itself; with etcd, its last-known-good copy. */
  databasePath: string;
  /** Where routes, firewall rules and limits live: the embedded SQLite file, or etcd for a fleet. */
  store: "sqlite" | "etcd";
  etcd: EtcdConfig | null;
  listeners: ListenerConfig[];
  grpc: GrpcConfig | null;
  metrics: MetricsConfig | null;
  firewall: FirewallConfig;
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
    super(problems.map((p) => `${file}: ${p}`).join("\n"));
    this.name = "ConfigError";
  }
}

type Kind = "string" | "int" | "bool" | "duration" | "strings" | "workers";
type Table = Record<string, unknown>;

/** The scalar sections and their keys; these are also the env overrides. */
const SECTIONS: Record<string, Record<string, Kind>> = {
  database: { path: "string" },
  grpc: {
    addr: "string",
    tls_cert: "string",
    tls_key: "string",
    client_ca: "string",
    client_cert: "string",
    client_key: "string",
    server_ca: "string",
    allow_unauthenticated_admin: "bool",
    admin_clients: "strings",
  },
  firewall: {
    geoip_db: "string",
    blocked_ips: "strings",
    blocked_cidrs: "strings",
    blocked_countries: "strings",
    rate_limit: "int",
    rate_window: "duration",
    rate_limit_ipv6_prefix: "int",
  },
  proxy: {
    connect_timeout: "duration",
    idle_timeout: "duration",
    hello_timeout: "duration",
    max_hello_bytes: "int",
    shutdown_timeout: "duration",
    workers: "workers",
    health_check_interval: "duration",
    health_check_timeout: "duration",
    health_check_rise: "int",
    health_check_fall: "int",
    retries: "int",
  },
  log: { level: "string", format: "string" },
  metrics: { addr: "string", path: "string" },
  store: { backend: "string" },
  etcd: {
    endpoints: "strings",
    prefix: "string",
    ca: "string",
    cert: "string",
    key: "string",
    username: "string",
    password: "string",
    dial_timeout: "duration",
  },
};

const LISTENER_KEYS: Record<string, Kind | "routes" | "send_proxy"> = {
  addr: "string",
  name: "string",
  max_connections: "int",
  default_backend: "string",
  default_backend_send_proxy_protocol: "send_proxy",
  proxy_protocol: "bool",
  trusted_proxies: "strings",
  routes: "routes",
};
const ROUTE_KEYS: Record<string, unknown> = {
  hostname: 1,
  backend: 1,
  backends: 1,
  balance: 1,
  health_check: 1,
  health_check_interval: 1,
  health_check_timeout: 1,
  health_check_rise: 1,
  health_check_fall: 1,
  retries: 1,
  send_proxy_protocol: 1,
};

/** Health checks every 5 s (HAProxy checks every 2 s; a check per backend per 5 s is enough for a pool), timeout 2 s, rise 2, fall 3 (HAProxy's), and two retries. */
export const POOL_DEFAULTS: PoolDefaults = { check: { intervalMs: 5000, timeoutMs: 2000, rise: 2, fall: 3 }, retries: 2 };

/**
 * `send_proxy_protocol`: "v1", "v2", or false (off); true means "v2", the
 * boolean form of upstream mc-proxy's config.
 */
function sendProxy(v: unknown, key: string, problems: string[]): SendProxy {
  if (v === undefined || v === false) return "off";
  if (v === true || v === "v2") return "v2";
  if (v === "v1") return "v1";
  problems.push(`${key}: ${show(v)} must be "v1", "v2" or false (true means "v2")`);
  return "off";
}

export const DEFAULTS = {
  connectTimeout: "5s",
  idleTimeout: "5m",
  helloTimeout: "10s",
  maxHelloBytes: 65536,
  shutdownTimeout: "30s",
  rateWindow: "1s",
  rateLimitIpv6Prefix: 64,
} as const;

/**
 * Read a file named by a [grpc] key (certificates, keys, CAs); null when the
 * key is not set. The error names the key and the path.
 */
export function readGrpcFile(key: string, path: string | null): Buffer | null {
  if (path === null) return null;
  try {
    return readFileSync(path);
  } catch (e) {
    throw new Error(`grpc.${key}: cannot read ${path}: ${(e as Error).message}`);
  }
}

/** Read, parse and validate a config file, applying MCPROXY_* overrides from env. */
export function loadConfig(file: string, env: Record<string, string | undefined> = process.env): Config {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new ConfigError(file, [`cannot read config file: ${(e as Error).message}`]);
  }
  return parseConfig(text, file, env);
}

export function parseConfig(text: string, file: string, env: Record<string, string | undefined> = {}): Config {
  let raw: unknown;
  try {
    raw = Bun.TOML.parse(text);
  } catch (e) {
    // Bun's TOML errors carry no line or column (docs/BUN-NOTES.md); say what we can.
    throw new ConfigError(file, [`not valid TOML: ${(e as Error).message}`]);
  }
  const problems: string[] = [];
  const root = raw as Table;
  applyEnvOverrides(root, env, problems);
  const cfg = validate(root, file, problems);
  if (problems.length > 0) throw new ConfigError(file, problems);
  return cfg;
}

function applyEnvOverrides(root: Table, env: Record<string, string | undefined>, problems: string[]): void {
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith("MCPROXY_") || value === undefined) continue;
    const rest = name.slice("MCPROXY_".length).toLowerCase();
    const us = rest.indexOf("_");
    const section = us < 0 ? rest : rest.slice(0, us);
    const key = us < 0 ? "" : rest.slice(us + 1);
    const kind = SECTIONS[section]?.[key];
    if (kind === undefined) {
      problems.push(`environment variable ${name}: no such setting (overridable: ${envNames().join(", ")})`);
      continue;
    }
    const existing = root[section];
    const table: Table = isTable(existing) ? existing : {};
    root[section] = table;
    table[key] = coerceEnv(kind, value);
  }
}

function envNames(): string[] {
  return Object.entries(SECTIONS).flatMap(([s, keys]) => Object.keys(keys).map((k) => `MCPROXY_${s}_${k}`.toUpperCase()));
}

function coerceEnv(kind: Kind, value: string): unknown {
  switch (kind) {
    case "int":
      return /^-?\d+$/.test(value.trim()) ? Number(value.trim()) : value;
    case "bool":
      return value === "true" ? true : value === "false" ? false : value;
    case "strings":
      return value.trim() === "" ? [] : value.split(",").map((s) => s.trim());
    default:
      return value;
  }
}

function isTable(v: unknown): v is Table {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function show(v: unknown): string {
  return typeof v === "string" ? JSON.stringify(v) : Array.isArray(v) ? JSON.stringify(v) : String(v);
}

/** Read one typed value; records a problem and returns undefined when it is the wrong type. */
function typed(kind: Kind, v: unknown, key: string, problems: string[]): unknown {
  switch (kind) {
    case "string":
      if (typeof v === "string") return v;
      problems.push(`${key}: expected a string, got ${show(v)}`);
      return undefined;
    case "bool":
      if (typeof v === "boolean") return v;
      problems.push(`${key}: expected true or false, got ${show(v)}`);
      return undefined;
    case "int":
      if (typeof v === "number" && Number.isSafeInteger(v)) return v;
      problems.push(`${key}: expected a whole number, got ${show(v)}`);
      return undefined;
    case "duration": {
      if (typeof v !== "string") {
        problems.push(`${key}: expected a duration string such as "500ms", "10s" or "5m", got ${show(v)}`);
        return undefined;
      }
      if (v.trim().startsWith("-")) {
        problems.push(`${key}: ${show(v)} is negative; durations must be positive`);
        return undefined;
      }
      const ms = parseDuration(v);
      if (ms === null) {
        problems.push(`${key}: ${show(v)} is not a duration (use a number and a unit: ms, s, m, h — e.g. "500ms", "10s", "5m")`);
        return undefined;
      }
      if (ms > MAX_DURATION_MS) {
        problems.push(`${key}: ${show(v)} is too long (durations are at most ${MAX_DURATION_TEXT})`);
        return undefined;
      }
      return ms;
    }
    case "strings":
      if (Array.isArray(v) && v.every((s) => typeof s === "string")) return v;
      problems.push(`${key}: expected a list of strings, got ${show(v)}`);
      return undefined;
    case "workers":
      if (v === "auto") return v;
      if (typeof v === "number" && Number.isSafeInteger(v) && v >= 1 && v <= 1024) return v;
      if (typeof v === "string" && /^[1-9]\d{0,3}$/.test(v)) return Number(v);
      problems.push(`${key}: ${show(v)} must be "auto" (one per CPU this process may use) or a whole number from 1 to 1024`);
      return undefined;
  }
}

function checkKeys(t: Table, allowed: Record<string, unknown>, where: string, problems: string[]): void {
  for (const k of Object.keys(t)) {
    if (!(k in allowed)) {
      problems.push(`${where}${k}: unknown key (allowed here: ${Object.keys(allowed).join(", ")})`);
    }
  }
}

function readSection(root: Table, name: string, problems: string[]): Table | null {
  const v = root[name];
  if (v === undefined) return null;
  if (!isTable(v)) {
    problems.push(`${name}: expected a table [${name}], got ${show(v)}`);
    return null;
  }
  checkKeys(v, SECTIONS[name]!, `${name}.`, problems);
  const out: Table = {};
  for (const [k, kind] of Object.entries(SECTIONS[name]!)) {
    if (v[k] !== undefined) out[k] = typed(kind, v[k], `${name}.${k}`, problems);
  }
  return out;
}

function validate(root: Table, file: string, problems: string[]): Config {
  const base = dirname(resolve(file));
  const pathOf = (p: string): string => (isAbsolute(p) ? p : resolve(base, p));
  checkKeys(root, { ...SECTIONS, listeners: 1 }, "", problems);

  const database = readSection(root, "database", problems) ?? {};
  const databasePath = pathOf((database.path as string | undefined) || "mc-proxy.db");

  const proxySec = readSection(root, "proxy", problems) ?? {};
  const dur = (k: string, def: string, allowZero = false): number => {
    const v = proxySec[k] as number | undefined;
    if (v === undefined) return parseDuration(def)!;
    if (v === 0 && !allowZero) problems.push(`proxy.${k}: must be greater than zero`);
    return v;
  };
  const proxy: ProxyConfig = {
    connectTimeoutMs: dur("connect_timeout", DEFAULTS.connectTimeout),
    idleTimeoutMs: dur("idle_timeout", DEFAULTS.idleTimeout),
    helloTimeoutMs: dur("hello_timeout", DEFAULTS.helloTimeout),
    maxHelloBytes: (proxySec.max_hello_bytes as number | undefined) ?? DEFAULTS.maxHelloBytes,
    shutdownTimeoutMs: dur("shutdown_timeout", DEFAULTS.shutdownTimeout, true),
    workers: (proxySec.workers as number | "auto" | undefined) ?? "auto",
    pool: {
      check: {
        intervalMs: dur("health_check_interval", "5s"),
        timeoutMs: dur("health_check_timeout", "2s"),
        rise: (proxySec.health_check_rise as number | undefined) ?? POOL_DEFAULTS.check.rise,
        fall: (proxySec.health_check_fall as number | undefined) ?? POOL_DEFAULTS.check.fall,
      },
      retries: (proxySec.retries as number | undefined) ?? POOL_DEFAULTS.retries,
    },
  };
  for (const [k, v] of [["health_check_rise", proxy.pool.check.rise], ["health_check_fall", proxy.pool.check.fall]] as const) {
    if (v < 1 || v > 100) problems.push(`proxy.${k}: ${v} must be 1-100`);
  }
  if (proxy.pool.retries < 0 || proxy.pool.retries > 30) problems.push(`proxy.retries: ${proxy.pool.retries} must be 0-30`);
  // A ClientHello is a uint24-length handshake message; a cap under 512 bytes
  // would refuse real clients (the smallest captured one is 214 bytes).
  if (proxy.maxHelloBytes < 512 || proxy.maxHelloBytes > 16_777_219) {
    problems.push(`proxy.max_hello_bytes: ${proxy.maxHelloBytes} is out of range 512-16777219`);
  }

  const logSec = readSection(root, "log", problems) ?? {};
  const level = (logSec.level as string | undefined) ?? "info";
  const format = (logSec.format as string | undefined) ?? "text";
  if (!["debug", "info", "warn", "error"].includes(level)) problems.push(`log.level: ${show(level)} is not one of debug, info, warn, error`);
  if (!["text", "json"].includes(format)) problems.push(`log.format: ${show(format)} is not one of text, json`);

  const firewall = validateFirewall(readSection(root, "firewall", problems) ?? {}, pathOf, problems);
  const grpc = validateGrpc(root, pathOf, problems);
  const listeners = validateListeners(root.listeners, problems);
  const metrics = validateMetrics(root, pathOf, listeners, grpc, problems);
  const storeSec = readSection(root, "store", problems) ?? {};
  const store = ((storeSec.backend as string | undefined) ?? "sqlite") as "sqlite" | "etcd";
  if (store !== "sqlite" && store !== "etcd") problems.push(`store.backend: ${show(store)} must be "sqlite" or "etcd"`);
  const etcd = validateEtcd(root, pathOf, store, problems);

  return {
    file,
    databasePath,
    listeners,
    grpc,
    metrics,
    store,
    etcd,
    firewall,
    proxy,
    log: { level: level as LogLevel, format: format as LogFormat },
    warnings: listeners.flatMap((l, i) =>
      l.trustedProxies.some((t) => t === "0.0.0.0/0" || t === "::/0")
        ? [`listeners[${i}].trusted_proxies: ${JSON.stringify(l.trustedProxies.filter((t) => t === "0.0.0.0/0" || t === "::/0"))} trusts every address: any client can send a PROXY header and choose the source address the firewall judges and the backends see; list only your load balancers`]
        : [],
    ),
  };
}

function validateFirewall(sec: Table, pathOf: (p: string) => string, problems: string[]): FirewallConfig {
  const ips = (sec.blocked_ips as string[] | undefined) ?? [];
  const cidrs = (sec.blocked_cidrs as string[] | undefined) ?? [];
  const countries = (sec.blocked_countries as string[] | undefined) ?? [];
  const fw: FirewallConfig = {
    geoipDb: typeof sec.geoip_db === "string" && sec.geoip_db !== "" ? pathOf(sec.geoip_db) : null,
    blockedIps: [],
    blockedCidrs: [],
    blockedCountries: [],
    rateLimit: (sec.rate_limit as number | undefined) ?? 0,
    rateWindowMs: (sec.rate_window as number | undefined) ?? parseDuration(DEFAULTS.rateWindow)!,
    rateLimitIpv6Prefix: (sec.rate_limit_ipv6_prefix as number | undefined) ?? DEFAULTS.rateLimitIpv6Prefix,
  };
  if (fw.rateLimitIpv6Prefix < 48 || fw.rateLimitIpv6Prefix > 128) {
    problems.push(`firewall.rate_limit_ipv6_prefix: ${fw.rateLimitIpv6Prefix} is out of range 48-128 (IPv6 clients are counted per network of this size; 64 is one customer)`);
  }
  ips.forEach((v, i) => {
    const r = parseIpRule(v);
    if (typeof r === "string") fw.blockedIps.push(r);
    else problems.push(`firewall.blocked_ips[${i}]: ${r.error}`);
  });
  cidrs.forEach((v, i) => {
    const r = parseCidrRule(v);
    if ("error" in r) problems.push(`firewall.blocked_cidrs[${i}]: ${r.error}`);
    else fw.blockedCidrs.push(`${r.address}/${r.prefix}`);
  });
  countries.forEach((v, i) => {
    const r = parseCountryRule(v);
    if (typeof r === "string") fw.blockedCountries.push(r);
    else problems.push(`firewall.blocked_countries[${i}]: ${r.error}`);
  });
  if (fw.blockedCountries.length > 0 && fw.geoipDb === null) {
    problems.push(`firewall.geoip_db: required when firewall.blocked_countries is set`);
  }
  if (fw.rateLimit < 0) problems.push(`firewall.rate_limit: ${fw.rateLimit} is negative (0 turns the limit off)`);
  else if (fw.rateLimit > MAX_COUNT) problems.push(`firewall.rate_limit: ${fw.rateLimit} is out of range 0-${MAX_COUNT}`);
  if (fw.rateWindowMs === 0) problems.push(`firewall.rate_window: must be greater than zero`);
  return fw;
}

function validateGrpc(root: Table, pathOf: (p: string) => string, problems: string[]): GrpcConfig | null {
  const sec = readSection(root, "grpc", problems);
  if (sec === null) return null;
  const opt = (k: string): string | null => (typeof sec[k] === "string" && sec[k] !== "" ? pathOf(sec[k] as string) : null);
  const addr = (sec.addr as string | undefined) ?? "";
  const g: GrpcConfig = {
    addr,
    tlsCert: opt("tls_cert"),
    tlsKey: opt("tls_key"),
    clientCa: opt("client_ca"),
    clientCert: opt("client_cert"),
    clientKey: opt("client_key"),
    serverCa: opt("server_ca"),
    allowUnauthenticatedAdmin: (sec.allow_unauthenticated_admin as boolean | undefined) ?? false,
    adminClients: (sec.admin_clients as string[] | undefined) ?? null,
  };
  const unix = addr.startsWith("unix:");
  if (addr === "") {
    problems.push(`grpc.addr: required when [grpc] is present (host:port, or unix:/path/to/admin.sock)`);
  } else if (unix) {
    if (addr.length === "unix:".length) problems.push(`grpc.addr: ${show(addr)} names no socket path`);
    else g.addr = `unix:${pathOf(addr.slice(5))}`;
  } else {
    const hp = parseHostPort(addr, { allowEmptyHost: true });
    if (typeof hp === "string") problems.push(`grpc.addr: ${show(addr)}: ${hp}`);
    if (g.tlsCert === null || g.tlsKey === null) {
      problems.push(`grpc.tls_cert, grpc.tls_key: both required for a TCP admin address (TLS 1.3 is mandatory; use a unix: address for a local plaintext socket)`);
    }
    // Secure by default: a TCP admin API without client certificates lets
    // anyone who reaches the port rewrite routes and firewall rules.
    if (g.clientCa === null && !g.allowUnauthenticatedAdmin) {
      problems.push(
        `grpc.client_ca: required for a TCP admin address (${show(addr)}): without it any TLS client can change routes and firewall rules. ` +
          `Set grpc.client_ca to the CA that signs your admin certificates (mTLS), or use addr = "unix:/srv/mc-proxy/admin.sock"; ` +
          `to accept the risk anyway, set grpc.allow_unauthenticated_admin = true`,
      );
    }
  }
  if (g.adminClients !== null) {
    if (unix || g.clientCa === null) {
      problems.push(`grpc.admin_clients: names clients by their certificates, so it needs a TCP address with grpc.client_ca (a unix: socket is guarded by its file mode)`);
    }
    g.adminClients.forEach((n, i) => {
      if (n.trim() === "") problems.push(`grpc.admin_clients[${i}]: empty name (expected a certificate CN or DNS subjectAltName)`);
    });
  }
  if (g.allowUnauthenticatedAdmin && (unix || g.clientCa !== null)) {
    problems.push(`grpc.allow_unauthenticated_admin: only meaningful for a TCP address without grpc.client_ca; remove it`);
  }
  return g;
}

function validateEtcd(root: Table, pathOf: (p: string) => string, store: string, problems: string[]): EtcdConfig | null {
  const sec = readSection(root, "etcd", problems);
  if (store !== "etcd") {
    if (sec !== null) problems.push(`etcd: set, but store.backend is ${show(store)} (set store.backend = "etcd" to use it)`);
    return null;
  }
  if (sec === null) {
    problems.push(`etcd: required when store.backend = "etcd" (at least endpoints and prefix)`);
    return null;
  }
  const opt = (k: string): string | null => (typeof sec[k] === "string" && sec[k] !== "" ? (sec[k] as string) : null);
  const e: EtcdConfig = {
    endpoints: (sec.endpoints as string[] | undefined) ?? [],
    prefix: opt("prefix") ?? "",
    ca: opt("ca") === null ? null : pathOf(opt("ca")!),
    cert: opt("cert") === null ? null : pathOf(opt("cert")!),
    key: opt("key") === null ? null : pathOf(opt("key")!),
    username: opt("username"),
    password: opt("password"),
    dialTimeoutMs: (sec.dial_timeout as number | undefined) ?? 5000,
  };
  if (e.endpoints.length === 0) problems.push(`etcd.endpoints: at least one is required (e.g. ["https://10.0.0.1:2379"])`);
  e.endpoints.forEach((u, i) => {
    if (!/^https?:\/\/[^/\s]+$/.test(u)) problems.push(`etcd.endpoints[${i}]: ${show(u)} must be http(s)://host:port`);
  });
  const tls = e.endpoints.some((u) => u.startsWith("https://"));
  if (tls && e.endpoints.some((u) => u.startsWith("http://"))) problems.push(`etcd.endpoints: mixes http:// and https://`);
  if (!e.prefix.startsWith("/") || !e.prefix.endsWith("/") || e.prefix.length < 2) problems.push(`etcd.prefix: ${show(e.prefix)} must start and end with "/" (e.g. "/mc-proxy/prod/")`);
  if ((e.cert === null) !== (e.key === null)) problems.push(`etcd.cert, etcd.key: set both (a client certificate and its key) or neither`);
  if (!tls && (e.ca !== null || e.cert !== null)) problems.push(`etcd.ca / etcd.cert: TLS settings need https:// endpoints`);
  if ((e.username === null) !== (e.password === null)) problems.push(`etcd.username, etcd.password: set both or neither`);
  if (e.dialTimeoutMs === 0) problems.push(`etcd.dial_timeout: must be greater than zero`);
  return e;
}

/** Two TCP addresses collide when their ports match and a host is the same or a wildcard. */
function collides(a: HostPort, b: HostPort): boolean {
  return a.port === b.port && (a.host === b.host || a.host === "" || b.host === "" || a.host === "::" || b.host === "::" || a.host === "0.0.0.0" || b.host === "0.0.0.0");
}

function validateMetrics(root: Table, pathOf: (p: string) => string, listeners: ListenerConfig[], grpc: GrpcConfig | null, problems: string[]): MetricsConfig | null {
  const sec = readSection(root, "metrics", problems);
  if (sec === null) return null;
  const m: MetricsConfig = { addr: (sec.addr as string | undefined) ?? "", path: (sec.path as string | undefined) ?? "/metrics" };
  if (!m.path.startsWith("/")) problems.push(`metrics.path: ${show(m.path)} must start with "/"`);
  else if (m.path === "/healthz" || m.path === "/readyz") problems.push(`metrics.path: ${show(m.path)} is taken by the health endpoint of the same name`);
  if (m.addr === "") {
    problems.push(`metrics.addr: required when [metrics] is present (host:port, or unix:/path/to/metrics.sock)`);
  } else if (m.addr.startsWith("unix:")) {
    if (m.addr.length === "unix:".length) problems.push(`metrics.addr: ${show(m.addr)} names no socket path`);
    else m.addr = `unix:${pathOf(m.addr.slice(5))}`;
    if (grpc !== null && grpc.addr === m.addr) problems.push(`metrics.addr: ${show(m.addr)} is the admin API's address (grpc.addr)`);
  } else {
    const hp = parseHostPort(m.addr, { allowEmptyHost: true });
    if (typeof hp === "string") problems.push(`metrics.addr: ${show(m.addr)}: ${hp}`);
    else {
      listeners.forEach((l, i) => {
        if (l.addr !== "" && collides(hp, l.bind)) problems.push(`metrics.addr: ${show(m.addr)} is the address of listeners[${i}] (${show(l.addr)})`);
      });
      if (grpc !== null && !grpc.addr.startsWith("unix:")) {
        const g = parseHostPort(grpc.addr, { allowEmptyHost: true });
        if (typeof g !== "string" && collides(hp, g)) problems.push(`metrics.addr: ${show(m.addr)} is the admin API's address (grpc.addr ${show(grpc.addr)})`);
      }
    }
  }
  return m;
}

function validateListeners(v: unknown, problems: string[]): ListenerConfig[] {
  if (v === undefined) {
    problems.push(`listeners: at least one [[listeners]] table is required`);
    return [];
  }
  if (!Array.isArray(v)) {
    problems.push(`listeners: expected [[listeners]] tables, got ${show(v)}`);
    return [];
  }
  if (v.length === 0) problems.push(`listeners: at least one [[listeners]] table is required`);
  const out: ListenerConfig[] = [];
  const seenAddr = new Map<string, number>();
  const seenName = new Map<string, number>();
  v.forEach((item, i) => {
    const where = `listeners[${i}]`;
    if (!isTable(item)) {
      problems.push(`${where}: expected a table, got ${show(item)}`);
      return;
    }
    checkKeys(item, LISTENER_KEYS, `${where}.`, problems);
    const addr = typed("string", item.addr ?? "", `${where}.addr`, problems) as string | undefined;
    let bind: HostPort = { host: "", port: 0 };
    if (addr === undefined || addr === "") {
      problems.push(`${where}.addr: required (e.g. ":443" or "127.0.0.1:8443")`);
    } else {
      const hp = parseHostPort(addr, { allowEmptyHost: true });
      if (typeof hp === "string") problems.push(`${where}.addr: ${show(addr)}: ${hp}`);
      else {
        bind = hp;
        // The same endpoint however written (":443", "[::]:443", "0.0.0.0:443").
        const key = endpointKey(hp);
        const prev = seenAddr.get(key);
        if (prev !== undefined) problems.push(`${where}.addr: ${show(addr)} is the same endpoint as listeners[${prev}].addr ${show((v[prev] as Table).addr)}`);
        else seenAddr.set(key, i);
      }
    }
    const maxConnections = item.max_connections === undefined ? 0 : (typed("int", item.max_connections, `${where}.max_connections`, problems) as number | undefined) ?? 0;
    if (maxConnections < 0) problems.push(`${where}.max_connections: ${maxConnections} is negative (0 means unlimited)`);
    else {
      const e = maxConnectionsError(maxConnections, `${where}.max_connections`);
      if (e !== null) problems.push(e);
    }
    let defaultBackend: string | null = null;
    if (item.default_backend !== undefined) {
      const db = typed("string", item.default_backend, `${where}.default_backend`, problems) as string | undefined;
      if (db !== undefined && db !== "") {
        const err = backendError(db);
        if (err !== null) problems.push(`${where}.default_backend: ${show(db)}: ${err}`);
        defaultBackend = db;
      }
    }
    const proxyProtocol = item.proxy_protocol === undefined ? false : typed("bool", item.proxy_protocol, `${where}.proxy_protocol`, problems) === true;
    const trustedProxies: string[] = [];
    if (item.trusted_proxies !== undefined) {
      const list = typed("strings", item.trusted_proxies, `${where}.trusted_proxies`, problems) as string[] | undefined;
      if (list !== undefined && !proxyProtocol) {
        problems.push(`${where}.trusted_proxies: only meaningful with proxy_protocol = true (remove it, or turn PROXY protocol on)`);
      }
      (list ?? []).forEach((t, k) => {
        const r = parseAddressOrCidr(t);
        if (typeof r === "string") trustedProxies.push(r);
        else problems.push(`${where}.trusted_proxies[${k}]: ${r.error}`);
      });
    }
    if (proxyProtocol && item.trusted_proxies === undefined) {
      problems.push(`${where}.trusted_proxies: required when proxy_protocol = true: the addresses or CIDR blocks of the load balancers allowed to send PROXY headers (e.g. ["10.0.0.0/8"])`);
    } else if (proxyProtocol && trustedProxies.length === 0 && Array.isArray(item.trusted_proxies) && item.trusted_proxies.length === 0) {
      problems.push(`${where}.trusted_proxies: must not be empty when proxy_protocol = true`);
    }
    const defaultSend = sendProxy(item.default_backend_send_proxy_protocol, `${where}.default_backend_send_proxy_protocol`, problems);
    if (defaultSend !== "off" && defaultBackend === null) problems.push(`${where}.default_backend_send_proxy_protocol: set without a default_backend`);
    let name = addr ?? "";
    if (item.name !== undefined) {
      const n = typed("string", item.name, `${where}.name`, problems) as string | undefined;
      if (n !== undefined && !/^[A-Za-z0-9][A-Za-z0-9._:\[\]-]{0,99}$/.test(n)) problems.push(`${where}.name: ${show(n)} must be 1-100 characters of A-Z a-z 0-9 . _ : - [ ] (starting with a letter or digit)`);
      else if (n !== undefined) name = n;
    }
    const prevName = seenName.get(name);
    if (prevName !== undefined) problems.push(`${where}.name: ${show(name)} is already the name of listeners[${prevName}]`);
    seenName.set(name, i);
    out.push({
      addr: addr ?? "",
      name,
      bind,
      maxConnections,
      defaultBackend,
      defaultBackendSendProxyProtocol: defaultSend,
      proxyProtocol,
      trustedProxies,
      routes: validateRoutes(item.routes, where, problems),
    });
  });
  return out;
}

function validateRoutes(v: unknown, where: string, problems: string[]): RouteConfig[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) {
    problems.push(`${where}.routes: expected [[listeners.routes]] tables, got ${show(v)}`);
    return [];
  }
  const out: RouteConfig[] = [];
  const seen = new Map<string, number>();
  v.forEach((item, j) => {
    const rw = `${where}.routes[${j}]`;
    if (!isTable(item)) {
      problems.push(`${rw}: expected a table, got ${show(item)}`);
      return;
    }
    checkKeys(item, ROUTE_KEYS, `${rw}.`, problems);
    const hostname = typed("string", item.hostname ?? "", `${rw}.hostname`, problems) as string | undefined;
    const sendProxyProtocol = sendProxy(item.send_proxy_protocol, `${rw}.send_proxy_protocol`, problems);
    const backends = routeBackends(item, rw, problems);
    const balance = item.balance === undefined ? "round_robin" : (item.balance as Balance);
    const healthCheck = item.health_check === undefined ? null : (item.health_check as HealthCheckKind);
    const check = checkOverrides(item, rw, problems);
    const retries = item.retries === undefined ? null : ((typed("int", item.retries, `${rw}.retries`, problems) as number | undefined) ?? null);
    if (hostname === undefined || backends === null) return;
    const host = parseRouteHostname(hostname);
    if (typeof host !== "string" || hostname === "") {
      problems.push(`${rw}.hostname: ${show(hostname)}: ${hostname === "" ? "required" : (host as { error: string }).error}`);
      return;
    }
    const prev = seen.get(host);
    if (prev !== undefined) problems.push(`${rw}.hostname: ${show(hostname)} duplicates ${where}.routes[${prev}] (host names compare case-insensitively)`);
    seen.set(host, j);
    const route: Route = { hostname: host, backends, balance, healthCheck, check, retries, sendProxyProtocol };
    // The same rules as the admin API and etcd values (routing/route_rules.ts).
    const bad = routeProblems(route, rw);
    if (bad.length > 0) return void problems.push(...bad);
    out.push(route);
  });
  return out;
}

/**
 * `backend = "host:port"` (a pool of one, as before) or `backends = [...]`,
 * whose entries are "host:port" or { addr, weight, backup } (Bun's TOML
 * parser takes the mixed array, measured).
 */
function routeBackends(item: Table, rw: string, problems: string[]): BackendSpec[] | null {
  if (item.backend !== undefined && item.backends !== undefined) {
    problems.push(`${rw}: both backend and backends are set; use one (backends for a pool)`);
    return null;
  }
  if (item.backends === undefined) {
    const backend = typed("string", item.backend ?? "", `${rw}.backend`, problems) as string | undefined;
    if (backend === undefined) return null;
    if (backend === "") {
      problems.push(`${rw}.backend: required (host:port), or backends = [...] for a pool`);
      return null;
    }
    const err = backendError(backend);
    if (err !== null) {
      problems.push(`${rw}.backend: ${show(backend)}: ${err}`);
      return null;
    }
    return singleBackend(backend);
  }
  if (!Array.isArray(item.backends)) {
    problems.push(`${rw}.backends: expected a list of "host:port" or { addr = "host:port", weight = 1, backup = false }, got ${show(item.backends)}`);
    return null;
  }
  const out: BackendSpec[] = [];
  for (const [k, b] of item.backends.entries()) {
    const at = `${rw}.backends[${k}]`;
    if (typeof b === "string") out.push({ addr: b, weight: 1, backup: false });
    else if (isTable(b)) {
      checkKeys(b, { addr: 1, weight: 1, backup: 1 }, `${at}.`, problems);
      const addr = typed("string", b.addr ?? "", `${at}.addr`, problems) as string | undefined;
      const weight = b.weight === undefined ? 1 : (typed("int", b.weight, `${at}.weight`, problems) as number | undefined);
      const backup = b.backup === undefined ? false : (typed("bool", b.backup, `${at}.backup`, problems) as boolean | undefined);
      if (addr === undefined || weight === undefined || backup === undefined) return null;
      out.push({ addr, weight, backup });
    } else {
      problems.push(`${at}: expected "host:port" or { addr = "host:port", weight = 1, backup = false }, got ${show(b)}`);
      return null;
    }
  }
  return out;
}

function checkOverrides(item: Table, rw: string, problems: string[]): Partial<CheckSettings> {
  const c: Partial<CheckSettings> = {};
  // Types here; ranges in routeProblems.
  const dur = (k: string) => (item[k] === undefined ? undefined : (typed("duration", item[k], `${rw}.${k}`, problems) as number | undefined));
  const int = (k: string) => (item[k] === undefined ? undefined : (typed("int", item[k], `${rw}.${k}`, problems) as number | undefined));
  const interval = dur("health_check_interval");
  const timeout = dur("health_check_timeout");
  const rise = int("health_check_rise");
  const fall = int("health_check_fall");
  if (interval !== undefined) c.intervalMs = interval;
  if (timeout !== undefined) c.timeoutMs = timeout;
  if (rise !== undefined) c.rise = rise;
  if (fall !== undefined) c.fall = fall;
  return c;
}

export { backendError, parseRouteHostname, poolError } from "../routing/route_rules";
