// The QUIC flows still waiting for their ClientHello, and the datagrams they
// hold: bounded in count (in all and per source) and in bytes (per flow and
// in all), and hard to hold. A full table makes room by evicting its oldest
// entry, never by refusing the newest: an attacker must then churn the whole
// table between two datagrams of one real client's hello — which a client
// sends back to back, within a round trip — to keep that client out. Pure:
// no clock, no timers, no sockets (the hello deadline is the flow's, on the
// deadline wheel).
import { SourceCounts } from "./sources";

export interface PendingLimits {
  /** Entries at most. */
  readonly entries: number;
  /** Entries per source (an IPv4 address, an IPv6 /64: see sourceKey) at most; the newest of a source past it is refused. */
  readonly perSource: number;
  /** Bytes one entry may hold. */
  readonly bytesPerEntry: number;
  /** Bytes all entries may hold together; past it the oldest are evicted. */
  readonly bytesTotal: number;
}

interface Entry<T> {
  readonly value: T;
  readonly source: string;
  bytes: number;
}

export class PendingTable<T> {
  // Insertion order is age order: the first entry is the oldest.
  private readonly entries = new Map<string, Entry<T>>();
  private readonly sources: SourceCounts;
  private held = 0;

  constructor(readonly limits: PendingLimits) {
    this.sources = new SourceCounts(limits.perSource);
  }

  get size(): number {
    return this.entries.size;
  }

  /** Bytes held by every entry. */
  get bytes(): number {
    return this.held;
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }

  /**
   * Add an entry: the entries evicted to make room (oldest first, already
   * removed), or null when its source already holds `perSource` entries (or the key is in the table).
   */
  add(key: string, source: string, value: T): T[] | null {
    if (this.entries.has(key) || !this.sources.take(source)) return null;
    const evicted: T[] = [];
    while (this.entries.size >= this.limits.entries) evicted.push(this.removeOldest());
    this.entries.set(key, { value, source, bytes: 0 });
    return evicted;
  }

  /**
   * Count `n` more bytes held by the entry `key`: the other entries evicted
   * to keep the total in bounds (oldest first, already removed), or
   * "too_large" when the entry itself would pass `bytesPerEntry` (nothing
   * is counted then).
   */
  hold(key: string, n: number): T[] | "too_large" {
    const e = this.entries.get(key);
    if (e === undefined) return [];
    if (e.bytes + n > this.limits.bytesPerEntry) return "too_large";
    e.bytes += n;
    this.held += n;
    const evicted: T[] = [];
    while (this.held > this.limits.bytesTotal) {
      // The oldest other entry (bytesPerEntry ≤ bytesTotal: this one fits once the others are gone).
      let victim = "";
      for (const k of this.entries.keys()) {
        if (k === key) continue;
        victim = k;
        break;
      }
      evicted.push(this.remove(victim)!);
    }
    return evicted;
  }

  /** Forget the entry (its hello is read, or it was dropped); its value, or undefined. */
  remove(key: string): T | undefined {
    const e = this.entries.get(key);
    if (e === undefined) return undefined;
    this.entries.delete(key);
    this.held -= e.bytes;
    this.sources.give(e.source);
    return e.value;
  }

  private removeOldest(): T {
    return this.remove(this.entries.keys().next().value!)!;
  }
}
