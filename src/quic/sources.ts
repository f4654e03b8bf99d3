// Who a QUIC datagram counts against: its source's network as the rate
// limiter groups it (src/firewall/firewall.ts) — an IPv4 address, an IPv6
// /64 (one subscriber's usual allocation, so one host cannot pass a
// per-address limit by changing addresses inside it) — and a counter of
// flows per source, bounded. Pure.
import { ipv6PrefixKey } from "../firewall/address";

export const SOURCE_IPV6_PREFIX = 64;

/** Flows (pending or routed) and extra paths one source may hold at most. */
export const MAX_FLOWS_PER_SOURCE = 256;

/**
 * What one source may hold under the process's connection cap (0 = none):
 * a quarter of it at most, so that one address or /64 cannot take every
 * descriptor from TCP clients and other sources (docs/HTTP3.md).
 */
export function flowsPerSource(connectionCap: number): number {
  if (connectionCap <= 0) return MAX_FLOWS_PER_SOURCE;
  return Math.min(MAX_FLOWS_PER_SOURCE, Math.max(1, Math.floor(connectionCap / 4)));
}

/** The source `ip` (normalised: IPv4-mapped IPv6 is IPv4) counts against. */
export function sourceKey(ip: string): string {
  return ip.includes(":") ? ipv6PrefixKey(ip, SOURCE_IPV6_PREFIX) : ip;
}

/** Open things per source, at most `max` each. */
export class SourceCounts {
  private readonly counts = new Map<string, number>();

  constructor(readonly max: number) {}

  /** Take one for `source`: false (nothing taken) when it already holds `max`. */
  take(source: string): boolean {
    const n = this.counts.get(source) ?? 0;
    if (n >= this.max) return false;
    this.counts.set(source, n + 1);
    return true;
  }

  give(source: string): void {
    const n = (this.counts.get(source) ?? 1) - 1;
    if (n <= 0) this.counts.delete(source);
    else this.counts.set(source, n);
  }

  count(source: string): number {
    return this.counts.get(source) ?? 0;
  }

  /** Sources holding at least one. */
  get size(): number {
    return this.counts.size;
  }
}
