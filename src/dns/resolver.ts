// The resolver's shell (docs/DNS.md): the query function the cache
// (dns_cache.ts) asks, over node:dns. With [dns] servers, c-ares's Resolver
// (Bun 1.4.4 takes "ip:port" in setServers and gives each record's TTL:
// docs/BUN-NOTES.md), A and AAAA asked together; without, the system
// resolver (getaddrinfo: /etc/hosts and nsswitch honoured), which gives no
// TTL: its answers are kept SYSTEM_TTL_SEC, clamped like any other.

import { Resolver, lookup } from "node:dns";
import type { DnsConfig } from "../config/types";
import { type CacheSettings, DnsCache, type Query, type QueryResult } from "./dns_cache";

/** How long a system resolver answer is kept (then clamped to [min_ttl, max_ttl]). */
export const SYSTEM_TTL_SEC = 30;
/** Addresses kept of one answer per family: a hostile or broken zone cannot make a connection try thousands. */
export const MAX_ANSWERS = 8;
/** RFC 1035 §2.3.4: a name is at most 255 octets on the wire, 253 characters as text. */
export const MAX_NAME_CHARS = 253;

/** The answer is "no such name / no address" rather than a resolver failure. */
const NO_NAME = new Set(["ENOTFOUND", "ENODATA", "NXDOMAIN", "NODATA", "ENONAME"]);

type Ttl = { address: string; ttl: number };
type Family = { kind: "ok"; records: Ttl[] } | { kind: "none" } | { kind: "error"; reason: string };

function ask(r: Resolver, rrtype: "resolve4" | "resolve6", name: string): Promise<Family> {
  return new Promise((done) => {
    r[rrtype](name, { ttl: true }, (err, records) => {
      if (err === null) done(records.length === 0 ? { kind: "none" } : { kind: "ok", records });
      else if (NO_NAME.has(err.code ?? "")) done({ kind: "none" });
      else done({ kind: "error", reason: err.code ?? err.message });
    });
  });
}

/**
 * A and AAAA as one answer: the addresses interleaved, IPv6 first (RFC 8305 §4), each family capped, the
 * smallest TTL; "none" only when both families say so; addresses from one family when the other fails.
 */
export function mergeFamilies(v6: Family, v4: Family): QueryResult {
  const a6 = v6.kind === "ok" ? v6.records.slice(0, MAX_ANSWERS) : [];
  const a4 = v4.kind === "ok" ? v4.records.slice(0, MAX_ANSWERS) : [];
  if (a6.length + a4.length === 0) {
    const failed = v6.kind === "error" ? v6 : v4.kind === "error" ? v4 : null;
    return failed === null ? { kind: "none" } : { kind: "error", reason: failed.reason };
  }
  const addresses: string[] = [];
  for (let i = 0; i < Math.max(a6.length, a4.length); i++) {
    if (i < a6.length) addresses.push(a6[i]!.address);
    if (i < a4.length) addresses.push(a4[i]!.address);
  }
  const ttlSec = Math.min(...a6.map((r) => r.ttl), ...a4.map((r) => r.ttl));
  return { kind: "ok", addresses, ttlSec };
}

/** Bound a query by `ms` (c-ares has its own timeout; this one holds whatever the resolver does). */
function within(ms: number, p: Promise<QueryResult>): Promise<QueryResult> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<QueryResult>((done) => {
    timer = setTimeout(() => done({ kind: "error", reason: "timeout" }), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

function serversQuery(cfg: DnsConfig): Query {
  const r = new Resolver({ timeout: cfg.timeoutMs, tries: 1 });
  r.setServers(cfg.servers);
  return (name) =>
    within(
      cfg.timeoutMs,
      Promise.all([ask(r, "resolve6", name), ask(r, "resolve4", name)]).then(([v6, v4]) => mergeFamilies(v6, v4)),
    );
}

function systemQuery(cfg: DnsConfig): Query {
  const p = (name: string) =>
    new Promise<QueryResult>((done) => {
      lookup(name, { all: true, family: 0 }, (err, list) => {
        if (err === null) {
          const recs = (f: number) =>
            list.filter((a) => a.family === f).map((a) => ({ address: a.address, ttl: SYSTEM_TTL_SEC }));
          done(mergeFamilies({ kind: "ok", records: recs(6) }, { kind: "ok", records: recs(4) }));
        } else if (NO_NAME.has(err.code ?? "")) done({ kind: "none" });
        else done({ kind: "error", reason: err.code ?? err.message });
      });
    });
  return (name) => within(cfg.timeoutMs, p(name));
}

/** One event loop's resolver: its own cache (workers share none: each asks for what its connections need). */
export function newResolver(cfg: DnsConfig): DnsCache {
  const settings: CacheSettings = {
    minTtlMs: cfg.minTtlMs,
    maxTtlMs: cfg.maxTtlMs,
    negativeTtlMs: cfg.negativeTtlMs,
    staleTtlMs: cfg.staleTtlMs,
    size: cfg.cacheSize,
  };
  const query = cfg.servers.length > 0 ? serversQuery(cfg) : systemQuery(cfg);
  return new DnsCache(
    settings,
    (name) => (name.length > MAX_NAME_CHARS ? Promise.resolve({ kind: "none" }) : query(name)),
    performance.now.bind(performance),
  );
}
