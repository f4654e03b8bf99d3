// The sections beside the listeners: [firewall], [grpc], [etcd], [metrics]
// and the defaults [proxy] takes. Each validates its own keys and names the
// key in every problem.

import { readFileSync } from "node:fs";
import { parseRule } from "../firewall/rule_set";
import { type HostPort, parseHostPort } from "../net/host_port";
import { formatDuration } from "./duration";
import { LIMITS, defaultOf, outOfRange } from "./limits";
import { type Table, readSection, show } from "./toml";
import type {
  EtcdConfig,
  FingerprintsConfig,
  FirewallConfig,
  GrpcConfig,
  ListenerConfig,
  MetricsConfig,
  PoolDefaults,
} from "./types";

/** The [proxy] health-check settings and retries a route that sets none takes (config/limits.ts). */
export const POOL_DEFAULTS: PoolDefaults = {
  check: {
    intervalMs: defaultOf("proxy.health_check_interval"),
    timeoutMs: defaultOf("proxy.health_check_timeout"),
    rise: defaultOf("proxy.health_check_rise"),
    fall: defaultOf("proxy.health_check_fall"),
  },
  retries: defaultOf("proxy.retries"),
};

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

export function validateFirewall(sec: Table, pathOf: (p: string) => string, problems: string[]): FirewallConfig {
  const ips = (sec.blocked_ips as string[] | undefined) ?? [];
  const cidrs = (sec.blocked_cidrs as string[] | undefined) ?? [];
  const countries = (sec.blocked_countries as string[] | undefined) ?? [];
  const ja4 = (sec.blocked_ja4 as string[] | undefined) ?? [];
  const fw: FirewallConfig = {
    geoipDb: typeof sec.geoip_db === "string" && sec.geoip_db !== "" ? pathOf(sec.geoip_db) : null,
    blockedIps: [],
    blockedCidrs: [],
    blockedCountries: [],
    blockedJa4: [],
    rateLimit: (sec.rate_limit as number | undefined) ?? defaultOf("firewall.rate_limit"),
    rateWindowMs: (sec.rate_window as number | undefined) ?? defaultOf("firewall.rate_window"),
    rateLimitIpv6Prefix:
      (sec.rate_limit_ipv6_prefix as number | undefined) ?? defaultOf("firewall.rate_limit_ipv6_prefix"),
  };
  if (outOfRange("firewall.rate_limit_ipv6_prefix", fw.rateLimitIpv6Prefix)) {
    const { min, max } = LIMITS["firewall.rate_limit_ipv6_prefix"];
    problems.push(
      `firewall.rate_limit_ipv6_prefix: ${fw.rateLimitIpv6Prefix} is out of range ${min}-${max} (IPv6 clients are counted per network of this size; 64 is one customer)`,
    );
  }
  for (const [type, key, list, out] of [
    ["ip", "blocked_ips", ips, fw.blockedIps],
    ["cidr", "blocked_cidrs", cidrs, fw.blockedCidrs],
    ["country", "blocked_countries", countries, fw.blockedCountries],
    ["ja4", "blocked_ja4", ja4, fw.blockedJa4],
  ] as const)
    list.forEach((v, i) => {
      const r = parseRule(type, v);
      if (r.ok) out.push(r.value);
      else problems.push(`firewall.${key}[${i}]: ${r.error}`);
    });
  if (fw.blockedCountries.length > 0 && fw.geoipDb === null) {
    problems.push(`firewall.geoip_db: required when firewall.blocked_countries is set`);
  }
  const rate = LIMITS["firewall.rate_limit"];
  if (fw.rateLimit < rate.min)
    problems.push(`firewall.rate_limit: ${fw.rateLimit} is negative (0 turns the limit off)`);
  else if (fw.rateLimit > rate.max)
    problems.push(`firewall.rate_limit: ${fw.rateLimit} is out of range ${rate.min}-${rate.max}`);
  if (fw.rateWindowMs === 0) problems.push(`firewall.rate_window: must be greater than zero`);
  return fw;
}

export function validateGrpc(root: Table, pathOf: (p: string) => string, problems: string[]): GrpcConfig | null {
  const sec = readSection(root, "grpc", problems);
  if (sec === null) return null;
  const opt = (k: string): string | null =>
    typeof sec[k] === "string" && sec[k] !== "" ? pathOf(sec[k] as string) : null;
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
    if (!hp.ok) problems.push(`grpc.addr: ${show(addr)}: ${hp.error}`);
    if (g.tlsCert === null || g.tlsKey === null) {
      problems.push(
        `grpc.tls_cert, grpc.tls_key: both required for a TCP admin address (TLS 1.3 is mandatory; use a unix: address for a local plaintext socket)`,
      );
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
      problems.push(
        `grpc.admin_clients: names clients by their certificates, so it needs a TCP address with grpc.client_ca (a unix: socket is guarded by its file mode)`,
      );
    }
    g.adminClients.forEach((n, i) => {
      if (n.trim() === "")
        problems.push(`grpc.admin_clients[${i}]: empty name (expected a certificate CN or DNS subjectAltName)`);
    });
  }
  if (g.allowUnauthenticatedAdmin && (unix || g.clientCa !== null)) {
    problems.push(
      `grpc.allow_unauthenticated_admin: only meaningful for a TCP address without grpc.client_ca; remove it`,
    );
  }
  return g;
}

export function validateEtcd(
  root: Table,
  pathOf: (p: string) => string,
  store: string,
  problems: string[],
): EtcdConfig | null {
  const sec = readSection(root, "etcd", problems);
  if (store !== "etcd") {
    if (sec !== null)
      problems.push(`etcd: set, but store.backend is ${show(store)} (set store.backend = "etcd" to use it)`);
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
    dialTimeoutMs: (sec.dial_timeout as number | undefined) ?? defaultOf("etcd.dial_timeout"),
  };
  if (e.endpoints.length === 0)
    problems.push(`etcd.endpoints: at least one is required (e.g. ["https://10.0.0.1:2379"])`);
  e.endpoints.forEach((u, i) => {
    if (!/^https?:\/\/[^/\s]+$/.test(u)) problems.push(`etcd.endpoints[${i}]: ${show(u)} must be http(s)://host:port`);
  });
  const tls = e.endpoints.some((u) => u.startsWith("https://"));
  if (tls && e.endpoints.some((u) => u.startsWith("http://")))
    problems.push(`etcd.endpoints: mixes http:// and https://`);
  if (!e.prefix.startsWith("/") || !e.prefix.endsWith("/") || e.prefix.length < 2)
    problems.push(`etcd.prefix: ${show(e.prefix)} must start and end with "/" (e.g. "/mc-proxy/prod/")`);
  if ((e.cert === null) !== (e.key === null))
    problems.push(`etcd.cert, etcd.key: set both (a client certificate and its key) or neither`);
  if (!tls && (e.ca !== null || e.cert !== null))
    problems.push(`etcd.ca / etcd.cert: TLS settings need https:// endpoints`);
  if ((e.username === null) !== (e.password === null))
    problems.push(`etcd.username, etcd.password: set both or neither`);
  if (e.dialTimeoutMs === 0) problems.push(`etcd.dial_timeout: must be greater than zero`);
  return e;
}

/** Two TCP addresses collide when their ports match and a host is the same or a wildcard. */
export function collides(a: HostPort, b: HostPort): boolean {
  return (
    a.port === b.port &&
    (a.host === b.host ||
      a.host === "" ||
      b.host === "" ||
      a.host === "::" ||
      b.host === "::" ||
      a.host === "0.0.0.0" ||
      b.host === "0.0.0.0")
  );
}

/** [fingerprints]: how many JA4 fingerprints the live top table holds per event loop, over what window. */
export function validateFingerprints(sec: Table, problems: string[]): FingerprintsConfig {
  const f: FingerprintsConfig = {
    top: (sec.top as number | undefined) ?? defaultOf("fingerprints.top"),
    windowMs: (sec.window as number | undefined) ?? defaultOf("fingerprints.window"),
  };
  const top = LIMITS["fingerprints.top"];
  if (outOfRange("fingerprints.top", f.top))
    problems.push(`fingerprints.top: ${f.top} is out of range ${top.min}-${top.max} (0 turns the table off)`);
  const w = LIMITS["fingerprints.window"];
  if (outOfRange("fingerprints.window", f.windowMs)) {
    problems.push(
      `fingerprints.window: ${f.windowMs / 1000} s is out of range ${formatDuration(w.min)}-${formatDuration(w.max)}`,
    );
  }
  return f;
}

export function validateMetrics(
  root: Table,
  pathOf: (p: string) => string,
  listeners: readonly ListenerConfig[],
  grpc: GrpcConfig | null,
  problems: string[],
): MetricsConfig | null {
  const sec = readSection(root, "metrics", problems);
  if (sec === null) return null;
  const m: MetricsConfig = {
    addr: (sec.addr as string | undefined) ?? "",
    path: (sec.path as string | undefined) ?? "/metrics",
  };
  if (!m.path.startsWith("/")) problems.push(`metrics.path: ${show(m.path)} must start with "/"`);
  else if (m.path === "/healthz" || m.path === "/readyz")
    problems.push(`metrics.path: ${show(m.path)} is taken by the health endpoint of the same name`);
  if (m.addr === "") {
    problems.push(`metrics.addr: required when [metrics] is present (host:port, or unix:/path/to/metrics.sock)`);
  } else if (m.addr.startsWith("unix:")) {
    if (m.addr.length === "unix:".length) problems.push(`metrics.addr: ${show(m.addr)} names no socket path`);
    else m.addr = `unix:${pathOf(m.addr.slice(5))}`;
    if (grpc !== null && grpc.addr === m.addr)
      problems.push(`metrics.addr: ${show(m.addr)} is the admin API's address (grpc.addr)`);
  } else {
    const hp = parseHostPort(m.addr, { allowEmptyHost: true });
    if (!hp.ok) problems.push(`metrics.addr: ${show(m.addr)}: ${hp.error}`);
    else {
      listeners.forEach((l, i) => {
        if (l.addr !== "" && collides(hp.value, l.bind))
          problems.push(`metrics.addr: ${show(m.addr)} is the address of listeners[${i}] (${show(l.addr)})`);
      });
      if (grpc !== null && !grpc.addr.startsWith("unix:")) {
        const g = parseHostPort(grpc.addr, { allowEmptyHost: true });
        if (g.ok && collides(hp.value, g.value))
          problems.push(`metrics.addr: ${show(m.addr)} is the admin API's address (grpc.addr ${show(grpc.addr)})`);
      }
    }
  }
  return m;
}
