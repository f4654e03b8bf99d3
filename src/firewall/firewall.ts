// The global firewall (docs/SPEC.md §3 step 2), evaluated on the peer address before
// any byte is read: blocked IP, blocked CIDR, blocked country, then the rate
// limit. Rules are an immutable snapshot swapped by reference, so a rule change
// applies to the next accept and never to half of one.
import { ipv6PrefixKey } from "./address";
import { AddressTable, ipv4ToUint32 } from "./address_table";
import { CountryDatabase } from "./country_database";
import { Ja4Rules } from "./ja4_rule";
import { IPV4_TAG, RateLimiter, networkKey } from "./rate_limiter";

export type FirewallVerdict = "blocked_ip" | "blocked_cidr" | "blocked_country" | "rate_limited" | null;

/** What a rule (not the rate limit) blocks a session with: its address, its country, or its hello's fingerprint. */
export type RuleVerdict = "blocked_ip" | "blocked_cidr" | "blocked_country" | "blocked_ja4";

/**
 * Of a session already admitted, what the rules now in force block that the
 * rules it was admitted under (`passed`) did not: the verdict, or null.
 * `ip` "" for a client whose address no rule judges (a PROXY header's LOCAL
 * command); `ja4` "" for a fingerprint not computed (no hello yet).
 */
export type NewlyBlocked = (ip: string, ja4: string) => RuleVerdict | null;

export interface FirewallRules {
  blockedIps: readonly string[];
  /** Canonical "address/prefix" strings. */
  blockedCidrs: readonly string[];
  blockedCountries: readonly string[];
  /** JA4 fingerprints and patterns (ja4_rule.ts); judged once the hello is read. */
  blockedJa4: readonly string[];
}

/** Rules by type (the metrics' and GetStatus's counts). */
export function ruleCounts(set: FirewallRules): { ip: number; cidr: number; country: number; ja4: number } {
  return {
    ip: set.blockedIps.length,
    cidr: set.blockedCidrs.length,
    country: set.blockedCountries.length,
    ja4: set.blockedJa4.length,
  };
}

/** A rule snapshot compiled into lookup tables once, when it is installed. */
class RuleSet {
  readonly ips: AddressTable;
  readonly cidrs: AddressTable;
  readonly countries: ReadonlySet<string>;
  readonly ja4: Ja4Rules;
  constructor(readonly rules: FirewallRules) {
    this.ja4 = new Ja4Rules(rules.blockedJa4);
    this.ips = new AddressTable(rules.blockedIps);
    this.cidrs = new AddressTable(rules.blockedCidrs);
    this.countries = new Set(rules.blockedCountries);
  }
}

export interface FirewallOptions {
  rules: FirewallRules;
  geoipDb: string | null;
  rateLimit: number;
  rateWindowMs: number;
  /** IPv6 clients are rate-limited per network of this prefix length (48–128; default 64). */
  rateLimitIpv6Prefix?: number;
  /** The rate limiter's table, shared by every worker (made here when absent). */
  rateBuffer?: SharedArrayBuffer;
  /** The event loop's worker id: its rate-limiter lock token. */
  workerId?: number;
  /** A GeoIP database already read into memory (shared by workers), instead of reading geoipDb. */
  geoipData?: Uint8Array;
}

/** Entries of the QUIC flows' rate table (1.3 MiB; QUIC listeners run in one event loop). */
const UDP_RATE_ENTRIES = 1 << 16;

export class Firewall {
  private set: RuleSet;
  private geo: CountryDatabase | null = null;
  private readonly rate: RateLimiter | null;
  /**
   * New QUIC flows' own rate table: a UDP source address is unvalidated (a
   * datagram can carry any source), so forged datagrams must not spend a
   * TCP client's budget in the shared table. Made on the first UDP check.
   */
  private udpRate: RateLimiter | null = null;
  private readonly rateLimit: number;
  private readonly rateWindowMs: number;
  private readonly workerId: number;
  private readonly ipv6Prefix: number;
  readonly geoipPath: string | null;

  /** Throws when the GeoIP database is configured but cannot be opened. */
  constructor(opts: FirewallOptions) {
    this.set = new RuleSet(opts.rules);
    this.geoipPath = opts.geoipDb;
    if (opts.geoipDb !== null)
      this.geo =
        opts.geoipData !== undefined
          ? CountryDatabase.fromBytes(opts.geoipData, opts.geoipDb)
          : CountryDatabase.open(opts.geoipDb);
    this.rate =
      opts.rateLimit > 0
        ? new RateLimiter(opts.rateLimit, opts.rateWindowMs, undefined, opts.rateBuffer, opts.workerId ?? 0)
        : null;
    this.rateLimit = opts.rateLimit;
    this.rateWindowMs = opts.rateWindowMs;
    this.workerId = opts.workerId ?? 0;
    this.ipv6Prefix = opts.rateLimitIpv6Prefix ?? 64;
  }

  /** Swap in a new rule snapshot (admin API). */
  replaceRules(rules: FirewallRules): void {
    this.set = new RuleSet(rules);
  }

  /**
   * What the rules in force block that `passed` did not (NewlyBlocked): the
   * verdicts an admission would give now — address, CIDR, country, then
   * ja4, as check() and checkJa4() judge them — without the rate limit.
   */
  newlyBlocked(passed: FirewallRules): NewlyBlocked {
    const now = this.set;
    const before = new RuleSet(passed);
    return (ip, ja4) => {
      const v = this.ruleVerdict(now, ip, ja4);
      return v !== null && this.ruleVerdict(before, ip, ja4) === null ? v : null;
    };
  }

  private ruleVerdict(s: RuleSet, ip: string, ja4: string): RuleVerdict | null {
    if (ip !== "") {
      const v = this.addressVerdict(s, ip, ipv4ToUint32(ip));
      if (v !== null) return v;
    }
    return ja4 !== "" && s.ja4.matches(ja4) ? "blocked_ja4" : null;
  }

  /** The address rules and the country of `ip` (`v4` its IPv4 number, or negative). */
  private addressVerdict(s: RuleSet, ip: string, v4: number): "blocked_ip" | "blocked_cidr" | "blocked_country" | null {
    if (s.ips.has(ip, v4)) return "blocked_ip";
    if (s.cidrs.has(ip, v4)) return "blocked_cidr";
    if (s.countries.size > 0 && this.geo !== null) {
      const cc = this.geo.country(ip);
      if (cc !== null && s.countries.has(cc)) return "blocked_country";
    }
    return null;
  }

  /** Rules in force, by type (for the metrics). */
  ruleCounts(): { ip: number; cidr: number; country: number; ja4: number } {
    return ruleCounts(this.set.rules);
  }

  /** Whether any JA4 rule is in force (then every hello's fingerprint is computed). */
  get hasJa4Rules(): boolean {
    return this.set.ja4.size > 0;
  }

  /** The verdict on a hello's fingerprint: after the hello, before any routing (docs/SPEC.md §3). */
  checkJa4(fp: string): "blocked_ja4" | null {
    return this.set.ja4.matches(fp) ? "blocked_ja4" : null;
  }

  /** Build time of the GeoIP database in use (seconds since the epoch), or null without one. */
  get geoipBuildEpoch(): number | null {
    return this.geo?.buildEpoch ?? null;
  }

  /** Install a GeoIP database read (and checked) elsewhere: SIGHUP with workers reads the file once. */
  useGeoIp(data: Uint8Array): void {
    if (this.geoipPath !== null) this.geo = CountryDatabase.fromBytes(data, this.geoipPath);
  }

  /** Addresses (IPv4) and IPv6 networks the rate limiter is tracking now. */
  get rateTracked(): number {
    return this.rate?.tracked(this.lastRateCheckMs) ?? 0;
  }

  /** The clock of the last rate check (the caller's clock: the deadline wheel's, or a test's). */
  private lastRateCheckMs = 0;

  /**
   * `ip` must already be normalised (IPv4-mapped IPv6 → IPv4). `transport`
   * "udp" (a new QUIC flow) counts in a rate table of its own (udpRate).
   */
  check(ip: string, nowMs: number, transport: "tcp" | "udp" = "tcp"): FirewallVerdict {
    const v4 = ipv4ToUint32(ip);
    const blocked = this.addressVerdict(this.set, ip, v4);
    if (blocked !== null) return blocked;
    const rate = transport === "tcp" ? this.rate : this.udpRateTable();
    if (rate !== null) {
      this.lastRateCheckMs = nowMs;
      let allowed: boolean;
      if (v4 >= 0) allowed = rate.allow(v4 | 0, IPV4_TAG, nowMs);
      else {
        const [k0, k1] = networkKey(ipv6PrefixKey(ip, this.ipv6Prefix));
        allowed = rate.allow(k0, k1, nowMs);
      }
      if (!allowed) return "rate_limited";
    }
    return null;
  }

  private udpRateTable(): RateLimiter | null {
    if (this.rateLimit <= 0) return null;
    this.udpRate ??= new RateLimiter(this.rateLimit, this.rateWindowMs, UDP_RATE_ENTRIES, undefined, this.workerId);
    return this.udpRate;
  }
}
