// Recent refusals of QUIC hellos, by client address and the Initial's
// Destination Connection ID (in the clear in the long header: RFC 9000
// §17.2), so that a client's retransmissions of a refused Initial (RFC 9002
// §6.2) — or a flood of copies from spoofed ports — are counted, not
// decrypted and logged once each. Bounded in entries (the oldest goes) and
// in time. Pure: the caller's clock.

export interface Refusal<O extends string> {
  readonly key: string;
  readonly outcome: O;
  /** Copies seen after the first (not logged one by one). */
  repeats: number;
  readonly at: number;
}

export class RefusalMemory<O extends string> {
  // Insertion order is age order.
  private readonly entries = new Map<string, Refusal<O>>();

  constructor(
    readonly maxEntries: number,
    readonly ttlMs: number,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /** Remember a refusal; the entry it pushed out when full (for its count), or null. */
  remember(key: string, outcome: O, now: number): Refusal<O> | null {
    let pushed: Refusal<O> | null = null;
    if (!this.entries.delete(key) && this.entries.size >= this.maxEntries) {
      const oldest = this.entries.values().next().value!;
      this.entries.delete(oldest.key);
      pushed = oldest;
    }
    this.entries.set(key, { key, outcome, repeats: 0, at: now });
    return pushed;
  }

  /** A copy of a remembered refusal: its outcome, the copy counted; null when none is remembered (or it expired). */
  repeat(key: string, now: number): O | null {
    const e = this.entries.get(key);
    if (e === undefined || now - e.at >= this.ttlMs) return null;
    e.repeats++;
    return e.outcome;
  }

  /** Remove and return the refusals older than ttlMs, oldest first. */
  expire(now: number): Refusal<O>[] {
    const out: Refusal<O>[] = [];
    for (const e of this.entries.values()) {
      if (now - e.at < this.ttlMs) break;
      this.entries.delete(e.key);
      out.push(e);
    }
    return out;
  }
}
