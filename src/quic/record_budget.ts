// How many access records a QUIC listener writes for refusals after the
// hello (no_route, route_denied, blocked_ja4, …): a token bucket. A UDP
// source needs no handshake, so one socket sending a fresh Destination
// Connection ID per datagram gets past the refusal memory
// (refusal_memory.ts) and, unbounded, wrote ~7,100 records/s (2.9 MB/s).
// Past the bucket a refusal is still counted in the listener's outcomes;
// what was not logged is summed by outcome for one summary line at a time
// (docs/HTTP3.md "Refusals"). TCP refusals are not bounded here: each needs
// a handshake and passes the shared rate limit. Pure: the caller's clock.

/** Records a second, sustained. */
export const REFUSAL_RECORDS_PER_SEC = 100;
/** Records at once, after a quiet spell: about a full pending table (1,024 flows) refused at once. */
export const REFUSAL_RECORDS_BURST = 1000;

export class RecordBudget<O extends string> {
  private tokens: number;
  private at: number;
  private readonly unlogged = new Map<O, number>();

  constructor(
    readonly perSec = REFUSAL_RECORDS_PER_SEC,
    readonly burst = REFUSAL_RECORDS_BURST,
    now = 0,
  ) {
    this.tokens = burst;
    this.at = now;
  }

  /** Whether a refusal with this outcome gets its record now; if not, it is counted for the summary. */
  take(outcome: O, now: number): boolean {
    if (now > this.at) {
      this.tokens = Math.min(this.burst, this.tokens + ((now - this.at) * this.perSec) / 1000);
      this.at = now;
    }
    if (this.tokens >= 1) {
      this.tokens--;
      return true;
    }
    this.unlogged.set(outcome, (this.unlogged.get(outcome) ?? 0) + 1);
    return false;
  }

  /** The refusals not logged since the last call, by outcome; null when none. */
  drain(): Record<string, number> | null {
    if (this.unlogged.size === 0) return null;
    const out: Record<string, number> = {};
    for (const [o, n] of this.unlogged) out[o] = n;
    this.unlogged.clear();
    return out;
  }
}
