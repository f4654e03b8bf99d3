// Per-client new-connection rate limit (docs/SPEC.md §7 firewall.rate_limit /
// rate_window), exact across every event loop of the process.
//
// Sliding-window counter: each client keeps the count of the current fixed
// window and of the previous one; the estimate weights the previous count by
// how much of it still overlaps the sliding window. A client is an IPv4
// address, or an IPv6 network (firewall.ts passes the /prefix key).
//
// The table lives in a SharedArrayBuffer of fixed size, so memory is bounded
// whatever the number of clients: a 4-way set-associative cache of 2^18
// entries (5.25 MiB). Each set has a lock (Atomics), so a client's count is
// exact however the kernel spreads its connections over workers. A lock
// holds its owner's token (worker id + 1): a lock is only ever released by
// its owner, and the supervisor frees the locks of a worker that died inside
// allow(). A new client in a full set takes the place of the entry whose
// window is oldest and, among those of one window, the one with the fewest
// connections: a flood of new sources evicts its own kind, not a client
// that is being limited.

const WAYS = 4;
/** Int32 slots per entry: key (2), window index, count, previous count. */
const ENTRY = 5;
export const DEFAULT_ENTRIES = 1 << 18;

export class RateLimiter {
  readonly buffer: SharedArrayBuffer;
  private readonly locks: Int32Array;
  private readonly table: Int32Array;
  private readonly sets: number;

  /** This loop's lock token: never 0 (unlocked). */
  private readonly token: number;

  constructor(
    readonly limit: number,
    readonly windowMs: number,
    entries: number = DEFAULT_ENTRIES,
    buffer?: SharedArrayBuffer,
    workerId = 0,
  ) {
    this.token = workerId + 1;
    this.sets = entries / WAYS;
    this.buffer = buffer ?? new SharedArrayBuffer(this.sets * 4 + entries * ENTRY * 4);
    this.locks = new Int32Array(this.buffer, 0, this.sets);
    this.table = new Int32Array(this.buffer, this.sets * 4, entries * ENTRY);
  }

  /** Bytes of shared memory the table takes (the bound on its size). */
  get bytes(): number {
    return this.buffer.byteLength;
  }

  /** Clients counted in the current or the previous window (a scan: for metrics, not the hot path). */
  tracked(nowMs: number): number {
    const window = Math.floor(nowMs / this.windowMs) + 1;
    let n = 0;
    for (let i = 2; i < this.table.length; i += ENTRY) if (this.table[i]! >= window - 1 && this.table[i]! !== 0) n++;
    return n;
  }

  /**
   * Count one new connection from the client keyed (k0, k1); false when it
   * is over the limit (and is not counted).
   */
  allow(k0: number, k1: number, nowMs: number): boolean {
    // Window indexes start at 1: 0 marks an empty entry.
    const window = Math.floor(nowMs / this.windowMs) + 1;
    let h = Math.imul(k0 ^ Math.imul(k1, 0x9e3779b1), 0x85ebca6b);
    h ^= h >>> 16;
    const set = h & (this.sets - 1);
    const locks = this.locks;
    let spins = 0;
    // A set is locked for a few instructions; the bound only matters if a
    // worker died inside this function and the supervisor has not freed its
    // locks yet: then count without the lock (and release nothing).
    let held = true;
    while (Atomics.compareExchange(locks, set, 0, this.token) !== 0) {
      if (++spins > 1_000_000) {
        held = false;
        break;
      }
    }
    try {
      const t = this.table;
      const base = set * WAYS * ENTRY;
      let at = -1;
      let oldest = base;
      for (let w = 0; w < WAYS; w++) {
        const e = base + w * ENTRY;
        if (t[e + 2] !== 0 && t[e] === k0 && t[e + 1] === k1) {
          at = e;
          break;
        }
        // The oldest window first; within one window, the fewest connections.
        if (
          t[e + 2]! < t[oldest + 2]! ||
          (t[e + 2] === t[oldest + 2] && t[e + 3]! + t[e + 4]! < t[oldest + 3]! + t[oldest + 4]!)
        )
          oldest = e;
      }
      if (at < 0) {
        at = oldest;
        t[at] = k0;
        t[at + 1] = k1;
        t[at + 2] = window;
        t[at + 3] = 0;
        t[at + 4] = 0;
      } else if (t[at + 2] !== window) {
        t[at + 4] = t[at + 2] === window - 1 ? t[at + 3]! : 0;
        t[at + 3] = 0;
        t[at + 2] = window;
      }
      const elapsed = (nowMs - (window - 1) * this.windowMs) / this.windowMs;
      const estimate = t[at + 4]! * (1 - elapsed) + t[at + 3]!;
      if (estimate + 1 > this.limit) return false;
      t[at + 3]!++;
      return true;
    } finally {
      if (held) Atomics.compareExchange(locks, set, this.token, 0);
    }
  }

  /** A worker died: free the locks it held (its token), so no other loop waits on them. Returns how many. */
  releaseLocksOf(workerId: number): number {
    const token = workerId + 1;
    let n = 0;
    for (let i = 0; i < this.locks.length; i++) if (Atomics.compareExchange(this.locks, i, token, 0) === token) n++;
    return n;
  }
}

/** An IPv4 client's key: its address, and a tag no IPv6 key has. */
export const IPV4_TAG = 0x40000000;

/** An IPv6 network key (a hex string) hashed to two 32-bit words (FNV-1a, two seeds); never IPV4_TAG. */
export function networkKey(key: string): [number, number] {
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ key.length;
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
  }
  return [a | 0, (b | 0) === IPV4_TAG ? b + 1 : b | 0];
}
