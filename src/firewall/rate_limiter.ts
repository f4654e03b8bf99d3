// Per-IP new-connection rate limit (SPEC §7 firewall.rate_limit / rate_window).
//
// Sliding-window counter: each IP keeps the count of the current fixed window
// and of the previous one; the estimate weights the previous count by how much
// of it still overlaps the sliding window. O(1) per accept, two numbers per IP.
// Memory is bounded: stale entries are dropped when the window rolls over, and
// a hard cap evicts the oldest entries first under a flood of distinct IPs.

interface Entry {
  /** Index of the fixed window `count` belongs to. */
  window: number;
  count: number;
  prevCount: number;
}

export const DEFAULT_MAX_TRACKED_IPS = 200_000;

export class RateLimiter {
  private readonly entries = new Map<string, Entry>();
  private sweptWindow = 0;

  constructor(
    readonly limit: number,
    readonly windowMs: number,
    private readonly maxTracked: number = DEFAULT_MAX_TRACKED_IPS,
  ) {}

  get tracked(): number {
    return this.entries.size;
  }

  /** Count one new connection from `ip`; false when it is over the limit (and is not counted). */
  allow(ip: string, nowMs: number): boolean {
    const window = Math.floor(nowMs / this.windowMs);
    if (window !== this.sweptWindow) this.sweep(window);
    let e = this.entries.get(ip);
    if (e === undefined) {
      if (this.entries.size >= this.maxTracked) this.evictOldest();
      e = { window, count: 0, prevCount: 0 };
      this.entries.set(ip, e);
    } else if (e.window !== window) {
      e.prevCount = e.window === window - 1 ? e.count : 0;
      e.count = 0;
      e.window = window;
    }
    const elapsed = (nowMs - window * this.windowMs) / this.windowMs;
    const estimate = e.prevCount * (1 - elapsed) + e.count;
    if (estimate + 1 > this.limit) return false;
    e.count++;
    return true;
  }

  /** Drop entries that can no longer affect any estimate (older than the previous window). */
  private sweep(window: number): void {
    this.sweptWindow = window;
    for (const [ip, e] of this.entries) {
      if (e.window < window - 1) this.entries.delete(ip);
    }
  }

  private evictOldest(): void {
    // Map iterates in insertion order: the first key is the longest-tracked IP.
    let n = Math.max(1, this.maxTracked >> 6);
    for (const ip of this.entries.keys()) {
      this.entries.delete(ip);
      if (--n === 0) break;
    }
  }
}
