// The resolver's cache (docs/DNS.md): answers kept for their TTL clamped to
// [min_ttl, max_ttl], a name that does not exist kept for negative_ttl
// (RFC 2308 §5), an expired answer served for stale_ttl while the resolver
// fails (RFC 8767 §4), at most cache_size names (least recently used
// evicted), one query in flight per name. Socket-free: the query function
// and the clock are given (resolver.ts gives the real ones).

/** What one query of a name gave. */
export type QueryResult =
  | { readonly kind: "ok"; readonly addresses: readonly string[]; readonly ttlSec: number }
  /** The name does not exist, or has no address record (NXDOMAIN, NODATA). */
  | { readonly kind: "none" }
  /** The resolver did not answer (timeout, refused, SERVFAIL, unreachable). */
  | { readonly kind: "error"; readonly reason: string };

export type Query = (name: string) => Promise<QueryResult>;

/** A lookup's result: addresses (stale: an expired answer served while the resolver fails), or why none. */
export type Lookup =
  | { readonly kind: "ok"; readonly addresses: readonly string[]; readonly stale: boolean }
  | { readonly kind: "failed"; readonly reason: string };

export interface CacheSettings {
  readonly minTtlMs: number;
  readonly maxTtlMs: number;
  readonly negativeTtlMs: number;
  readonly staleTtlMs: number;
  readonly size: number;
}

/**
 * What one loop's cache has counted since it started (docs/METRICS_AND_LOGS.md "Resolver"): queries sent,
 * queries the resolver failed (timeout, SERVFAIL, refused, unreachable; "no such name" is an answer),
 * lookups answered from a fresh entry (negative ones too), and expired answers served (serve-stale).
 */
export interface DnsCounts {
  queries: number;
  failures: number;
  hits: number;
  stale: number;
}

/** After a failed refresh, the stale answer is served without asking again for this long (RFC 8767 §5's failure recheck). */
export const FAILURE_RECHECK_MS = 1000;

interface Entry {
  /** null: the name does not exist (a negative entry). */
  readonly addresses: readonly string[] | null;
  readonly expiresAt: number;
  /** Stale answers: no new query before this (0: ask). */
  recheckAt: number;
}

export class DnsCache {
  /** Insertion order is recency order (a hit moves its name to the end). */
  private readonly entries = new Map<string, Entry>();
  private readonly inFlight = new Map<string, Promise<Lookup>>();
  private readonly counted: DnsCounts = { queries: 0, failures: 0, hits: 0, stale: 0 };

  constructor(
    private readonly settings: CacheSettings,
    private readonly query: Query,
    private readonly now: () => number,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /** A copy of the counts (a loop's snapshot carries it). */
  counts(): DnsCounts {
    return { ...this.counted };
  }

  /** `name`'s addresses: synchronously from a fresh entry, else once the one query for it settles. */
  lookup(name: string): Lookup | Promise<Lookup> {
    const e = this.entries.get(name);
    const now = this.now();
    if (e !== undefined) {
      if (now < e.expiresAt) {
        this.touch(name, e);
        this.counted.hits++;
        return e.addresses === null ? NO_SUCH_NAME : { kind: "ok", addresses: e.addresses, stale: false };
      }
      if (e.addresses !== null && now < e.recheckAt && now < e.expiresAt + this.settings.staleTtlMs) {
        this.counted.stale++;
        return { kind: "ok", addresses: e.addresses, stale: true };
      }
    }
    let p = this.inFlight.get(name);
    if (p === undefined) {
      p = this.ask(name);
      this.inFlight.set(name, p);
    }
    return p;
  }

  private async ask(name: string): Promise<Lookup> {
    this.counted.queries++;
    let r: QueryResult;
    try {
      r = await this.query(name);
    } catch (err) {
      r = { kind: "error", reason: err instanceof Error ? err.message : String(err) };
    } finally {
      this.inFlight.delete(name);
    }
    const s = this.settings;
    const now = this.now();
    if (r.kind === "ok") {
      const ttl = Math.min(s.maxTtlMs, Math.max(s.minTtlMs, r.ttlSec * 1000));
      this.store(name, { addresses: r.addresses, expiresAt: now + ttl, recheckAt: 0 });
      return { kind: "ok", addresses: r.addresses, stale: false };
    }
    if (r.kind === "none") {
      this.store(name, { addresses: null, expiresAt: now + s.negativeTtlMs, recheckAt: 0 });
      return NO_SUCH_NAME;
    }
    this.counted.failures++;
    const e = this.entries.get(name);
    if (e?.addresses != null && now < e.expiresAt + s.staleTtlMs) {
      e.recheckAt = now + FAILURE_RECHECK_MS;
      this.counted.stale++;
      return { kind: "ok", addresses: e.addresses, stale: true };
    }
    return { kind: "failed", reason: r.reason };
  }

  private touch(name: string, e: Entry): void {
    this.entries.delete(name);
    this.entries.set(name, e);
  }

  private store(name: string, e: Entry): void {
    this.touch(name, e);
    while (this.entries.size > this.settings.size) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
    }
  }
}

const NO_SUCH_NAME: Lookup = { kind: "failed", reason: "no such name" };
