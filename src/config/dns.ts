// The [dns] section (docs/DNS.md): the resolver backends named by a host
// name are resolved through at connect time, and its cache's bounds. No
// servers: the system resolver (getaddrinfo, /etc/hosts honoured).

import { isIP } from "node:net";
import { parseAddressOrCidr } from "../firewall/address";
import { parseHostPort } from "../net/host_port";
import { LIMITS, type LimitKey, defaultOf } from "./limits";
import { durationError, intError } from "./ranges";
import { type Table, readSection, typed } from "./toml";
import type { DnsConfig } from "./types";

/** At most this many servers (c-ares asks them in turn). */
export const MAX_DNS_SERVERS = 8;

export const DNS_DEFAULTS: DnsConfig = {
  servers: [],
  minTtlMs: defaultOf("dns.min_ttl"),
  maxTtlMs: defaultOf("dns.max_ttl"),
  negativeTtlMs: defaultOf("dns.negative_ttl"),
  staleTtlMs: defaultOf("dns.stale_ttl"),
  cacheSize: defaultOf("dns.cache_size"),
  timeoutMs: defaultOf("dns.timeout"),
};

/** A server: an IP address, or "ip:port" / "[v6]:port"; the form setServers takes, or a problem. */
function serverOf(text: string): string | string[] {
  if (isIP(text) !== 0) return text;
  const hp = parseHostPort(text, { allowEmptyHost: false });
  if (!hp.ok || isIP(hp.value.host) === 0)
    return [
      `dns.servers: ${JSON.stringify(text)} is not an IP address or ip:port (a resolver is named by its address)`,
    ];
  return text;
}

export function validateDns(root: Table, problems: string[]): DnsConfig {
  const sec = readSection(root, "dns", problems) ?? {};
  const list = (sec.servers as string[] | undefined) ?? [];
  const servers: string[] = [];
  if (list.length > MAX_DNS_SERVERS) problems.push(`dns.servers: ${list.length} servers, at most ${MAX_DNS_SERVERS}`);
  for (const s of list.slice(0, MAX_DNS_SERVERS)) {
    const r = serverOf(s);
    if (typeof r === "string") servers.push(r);
    else problems.push(...r);
  }
  const read = (k: string, key: LimitKey, kind: "duration" | "integer"): number => {
    const v = (sec[k] as number | undefined) ?? defaultOf(key);
    const p = kind === "duration" ? durationError(v, key, LIMITS[key]) : intError(v, key, LIMITS[key]);
    if (p !== null) problems.push(p);
    return v;
  };
  const dns: DnsConfig = {
    servers,
    minTtlMs: read("min_ttl", "dns.min_ttl", "duration"),
    maxTtlMs: read("max_ttl", "dns.max_ttl", "duration"),
    negativeTtlMs: read("negative_ttl", "dns.negative_ttl", "duration"),
    staleTtlMs: read("stale_ttl", "dns.stale_ttl", "duration"),
    cacheSize: read("cache_size", "dns.cache_size", "integer"),
    timeoutMs: read("timeout", "dns.timeout", "duration"),
  };
  if (dns.minTtlMs > dns.maxTtlMs) problems.push("dns.min_ttl: must not be more than dns.max_ttl");
  return dns;
}

/** A listener's allow_destinations / deny_destinations (docs/SECURITY.md "Destination guard"): canonical entries. */
export function destinationList(item: Table, key: string, where: string, problems: string[]): string[] {
  const v = item[key];
  if (v === undefined) return [];
  const list = typed("strings", v, `${where}.${key}`, problems) as string[] | undefined;
  const out: string[] = [];
  (list ?? []).forEach((t, k) => {
    const r = parseAddressOrCidr(t);
    if (r.ok) out.push(r.value);
    else problems.push(`${where}.${key}[${k}]: ${r.error}`);
  });
  return out;
}
