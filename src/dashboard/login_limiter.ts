// Failed dashboard logins per source address (docs/DASHBOARD.md "Security
// model"): after MAX_FAILURES within WINDOW_MS from one source, its further
// attempts are refused (429) until the oldest of those failures is a window
// old. Bounded: at most MAX_SOURCES sources, the least recently failed
// forgotten first.

export const MAX_FAILURES = 5;
export const WINDOW_MS = 60_000;
export const MAX_SOURCES = 10_000;

export class LoginLimiter {
  /** Source → its recent failures' times, oldest first; in order of the last failure. */
  private readonly failures = new Map<string, number[]>();

  constructor(
    private readonly maxFailures = MAX_FAILURES,
    private readonly windowMs = WINDOW_MS,
    private readonly maxSources = MAX_SOURCES,
  ) {}

  /** Milliseconds until this source may try again; 0: it may now. */
  retryAfter(source: string, now: number): number {
    const times = this.recent(source, now);
    return times.length < this.maxFailures ? 0 : times[0]! + this.windowMs - now;
  }

  /** A failed login from this source. */
  fail(source: string, now: number): void {
    const times = this.recent(source, now);
    times.push(now);
    if (times.length > this.maxFailures) times.shift();
    this.failures.delete(source);
    this.failures.set(source, times);
    while (this.failures.size > this.maxSources) this.failures.delete(this.failures.keys().next().value!);
  }

  /** A successful login: its source's failures forgotten. */
  succeed(source: string): void {
    this.failures.delete(source);
  }

  get sources(): number {
    return this.failures.size;
  }

  /** This source's failures within the window (older ones dropped). */
  private recent(source: string, now: number): number[] {
    const times = this.failures.get(source) ?? [];
    while (times.length > 0 && times[0]! + this.windowMs <= now) times.shift();
    return times;
  }
}
