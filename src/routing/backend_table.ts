// The state of every backend of every route, in shared memory so
// that all event loops see one truth: the operator's state (enabled, drain,
// disabled), health (up or down, from active checks run in one place and
// from connect failures seen anywhere), and the connections each backend
// holds (for least_connections and for a drain's progress).
//
// A (listener, route, backend address) gets a slot when its route is built
// and keeps it while the route keeps that backend; a removed backend's slot
// is reused later under a new generation, and a connection only gives back
// what it took from the generation it took it from.

export type BackendState = "enabled" | "drain" | "disabled";
export const STATES: readonly BackendState[] = ["enabled", "drain", "disabled"];

/** Int32 fields of a slot. */
const F = {
  gen: 0,
  state: 1,
  /** 1 up, 0 down. */
  up: 2,
  /** Consecutive failures (checks or connects) since the last success. */
  fails: 3,
  /** Consecutive successful checks since the last failure (for rise). */
  oks: 4,
  active: 5,
  /** Last check: 0 none yet, 1 ok, 2 failed. */
  lastResult: 6,
  /** Last check time, seconds since the epoch. */
  lastCheckAt: 7,
  /** Down because of connect failures with checks off: may be tried again from this time (seconds). */
  retryAt: 8,
  /** 1: a route's own slot (its connection count), not a backend. */
  route: 9,
  /** When it left `enabled` (drain or disabled), seconds since the epoch and the milliseconds; 0: enabled. */
  drainSec: 10,
  drainMs: 11,
  size: 12,
} as const;

export const DEFAULT_BACKEND_SLOTS = 1 << 16;

export interface SlotRef {
  readonly slot: number;
  readonly gen: number;
}

export interface BackendHealth {
  state: BackendState;
  up: boolean;
  consecutiveFailures: number;
  active: number;
  lastCheck: "none" | "ok" | "failed";
  lastCheckAt: number;
}

export class BackendTable {
  readonly buffer: SharedArrayBuffer;
  private readonly a: Int32Array;
  /**
   * Connections per (worker, slot), after the slots: what each event loop
   * took, so that a worker's death gives back exactly its connections.
   */
  private readonly perWorker: Int32Array;
  /** Owner side (the thread that builds route tables): allocation by key. */
  private readonly byKey = new Map<string, SlotRef>();
  private readonly free: number[] = [];
  private next = 0;

  constructor(
    readonly slots: number = DEFAULT_BACKEND_SLOTS,
    readonly workers: number = 1,
    buffer?: SharedArrayBuffer,
  ) {
    this.buffer = buffer ?? new SharedArrayBuffer(slots * (F.size + workers) * 4);
    this.a = new Int32Array(this.buffer, 0, slots * F.size);
    this.perWorker = new Int32Array(this.buffer, slots * F.size * 4, slots * workers);
  }

  /**
   * The slot of `key` (listener, hostname, address): the same one while the
   * key stays in use; a new one (up, with `state`) otherwise.
   */
  acquire(key: string, state: BackendState, route = false): SlotRef {
    const had = this.byKey.get(key);
    if (had !== undefined) return had;
    if (this.free.length === 0 && this.next >= this.slots) throw new Error(`more than ${this.slots} route backends`);
    const slot = this.free.pop() ?? this.next++;
    const o = slot * F.size;
    const gen = Atomics.add(this.a, o + F.gen, 1) + 1;
    Atomics.store(this.a, o + F.state, STATES.indexOf(state));
    Atomics.store(this.a, o + F.up, 1);
    Atomics.store(this.a, o + F.fails, 0);
    Atomics.store(this.a, o + F.oks, 0);
    Atomics.store(this.a, o + F.active, 0);
    Atomics.store(this.a, o + F.lastResult, 0);
    Atomics.store(this.a, o + F.lastCheckAt, 0);
    Atomics.store(this.a, o + F.retryAt, 0);
    Atomics.store(this.a, o + F.route, route ? 1 : 0);
    Atomics.store(this.a, o + F.drainSec, 0);
    this.markDrain(o, state, Date.now());
    for (let w = 0; w < this.workers; w++) Atomics.store(this.perWorker, w * this.slots + slot, 0);
    const ref = { slot, gen };
    this.byKey.set(key, ref);
    return ref;
  }

  /**
   * Whether the keys in use under `prefix` can become exactly `keys`: the new
   * ones fit in the free slots plus those the dropped keys give back.
   */
  fits(prefix: string, keys: ReadonlySet<string>): boolean {
    let needed = 0;
    for (const k of keys) if (!this.byKey.has(k)) needed++;
    let freed = 0;
    for (const k of this.byKey.keys()) if (k.startsWith(prefix) && !keys.has(k)) freed++;
    return needed <= this.slots - this.next + this.free.length + freed;
  }

  /** Give back the slots of keys no longer in use (`keep`: the keys still in use under `prefix`). */
  releaseExcept(prefix: string, keep: ReadonlySet<string>): void {
    for (const [key, ref] of this.byKey) {
      if (!key.startsWith(prefix) || keep.has(key)) continue;
      this.byKey.delete(key);
      // A new generation: connections of the old one no longer count here.
      Atomics.add(this.a, ref.slot * F.size + F.gen, 1);
      this.free.push(ref.slot);
    }
  }

  private at(r: SlotRef, f: number): number {
    return r.slot * F.size + f;
  }

  private current(r: SlotRef): boolean {
    return Atomics.load(this.a, this.at(r, F.gen)) === r.gen;
  }

  state(r: SlotRef): BackendState {
    return STATES[Atomics.load(this.a, this.at(r, F.state))]!;
  }

  /** The operator's state; leaving `enabled` starts the drain's clock (docs/POOLS.md "Drains end"), kept through drain → disabled. */
  setState(r: SlotRef, s: BackendState, nowMs = Date.now()): void {
    Atomics.store(this.a, this.at(r, F.state), STATES.indexOf(s));
    this.markDrain(r.slot * F.size, s, nowMs);
  }

  private markDrain(o: number, s: BackendState, nowMs: number): void {
    if (s === "enabled") {
      Atomics.store(this.a, o + F.drainSec, 0);
      Atomics.store(this.a, o + F.drainMs, 0);
    } else if (Atomics.load(this.a, o + F.drainSec) === 0) {
      Atomics.store(this.a, o + F.drainMs, nowMs % 1000);
      Atomics.store(this.a, o + F.drainSec, Math.floor(nowMs / 1000));
    }
  }

  /** When the backend left `enabled` (ms since the epoch); 0 while enabled, or when the slot is no longer this generation's. */
  drainedAt(r: SlotRef): number {
    if (!this.current(r)) return 0;
    const sec = Atomics.load(this.a, this.at(r, F.drainSec));
    return sec === 0 ? 0 : sec * 1000 + Atomics.load(this.a, this.at(r, F.drainMs));
  }

  /** Whether the slot is still this generation's: false once its backend left its route (bindRoutes). */
  isCurrent(r: SlotRef): boolean {
    return this.current(r);
  }

  /** May take new connections now: enabled, and up (or down from connect failures alone, past its retry time). */
  eligible(r: SlotRef, nowSec: number): boolean {
    if (Atomics.load(this.a, this.at(r, F.state)) !== 0) return false;
    if (Atomics.load(this.a, this.at(r, F.up)) === 1) return true;
    const retryAt = Atomics.load(this.a, this.at(r, F.retryAt));
    return retryAt > 0 && nowSec >= retryAt;
  }

  active(r: SlotRef): number {
    return Atomics.load(this.a, this.at(r, F.active));
  }

  /** A connection of worker `w` chose this backend. */
  take(r: SlotRef, w: number): void {
    Atomics.add(this.a, this.at(r, F.active), 1);
    Atomics.add(this.perWorker, w * this.slots + r.slot, 1);
  }

  /**
   * Take a place for worker `w` unless `max` (> 0) are already taken:
   * increment first, then check, and give it back when over, so two loops
   * racing for the last place cannot both win (as SharedCounters does).
   */
  tryTake(r: SlotRef, w: number, max: number): boolean {
    const n = Atomics.add(this.a, this.at(r, F.active), 1) + 1;
    if (max > 0 && n > max) {
      Atomics.sub(this.a, this.at(r, F.active), 1);
      return false;
    }
    Atomics.add(this.perWorker, w * this.slots + r.slot, 1);
    return true;
  }

  /** That connection ended (or moved on after a failed connect); ignored when the slot was reused since. */
  give(r: SlotRef, w: number): void {
    if (!this.current(r)) return;
    Atomics.sub(this.a, this.at(r, F.active), 1);
    Atomics.sub(this.perWorker, w * this.slots + r.slot, 1);
  }

  /** Worker `w` died with its sockets: take its connections out of every backend's and route's count. Returns how many backend connections. */
  forgetWorker(w: number): number {
    let n = 0;
    const base = w * this.slots;
    const end = Math.min(this.next, this.slots);
    for (let slot = 0; slot < end; slot++) {
      const held = Atomics.exchange(this.perWorker, base + slot, 0);
      if (held !== 0) {
        Atomics.sub(this.a, slot * F.size + F.active, held);
        if (Atomics.load(this.a, slot * F.size + F.route) === 0) n += held;
      }
    }
    return n;
  }

  /**
   * A connect succeeded or failed (passive health). `fall` consecutive
   * failures mark the backend down; with checks off it may be tried again
   * after `holdSec`, since no check will bring it back.
   */
  connectResult(
    r: SlotRef,
    ok: boolean,
    fall: number,
    checksOn: boolean,
    holdSec: number,
    nowSec: number,
  ): "down" | null {
    if (!this.current(r)) return null;
    if (ok) {
      Atomics.store(this.a, this.at(r, F.fails), 0);
      if (!checksOn && Atomics.load(this.a, this.at(r, F.up)) === 0) {
        Atomics.store(this.a, this.at(r, F.up), 1);
        Atomics.store(this.a, this.at(r, F.retryAt), 0);
      }
      return null;
    }
    const fails = Atomics.add(this.a, this.at(r, F.fails), 1) + 1;
    Atomics.store(this.a, this.at(r, F.oks), 0);
    if (fails >= fall && Atomics.exchange(this.a, this.at(r, F.up), 0) === 1) {
      if (!checksOn) Atomics.store(this.a, this.at(r, F.retryAt), nowSec + holdSec);
      return "down";
    }
    if (!checksOn && fails >= fall) Atomics.store(this.a, this.at(r, F.retryAt), nowSec + holdSec);
    return null;
  }

  /** An active check's result: `rise` consecutive successes bring a backend up, `fall` failures take it down. */
  checkResult(r: SlotRef, ok: boolean, rise: number, fall: number, nowSec: number): "up" | "down" | null {
    if (!this.current(r)) return null;
    Atomics.store(this.a, this.at(r, F.lastResult), ok ? 1 : 2);
    Atomics.store(this.a, this.at(r, F.lastCheckAt), nowSec);
    if (ok) {
      Atomics.store(this.a, this.at(r, F.fails), 0);
      const oks = Atomics.add(this.a, this.at(r, F.oks), 1) + 1;
      if (oks >= rise && Atomics.exchange(this.a, this.at(r, F.up), 1) === 0) return "up";
      return null;
    }
    Atomics.store(this.a, this.at(r, F.oks), 0);
    const fails = Atomics.add(this.a, this.at(r, F.fails), 1) + 1;
    if (fails >= fall && Atomics.exchange(this.a, this.at(r, F.up), 0) === 1) return "down";
    return null;
  }

  health(r: SlotRef): BackendHealth {
    const g = (f: number) => Atomics.load(this.a, this.at(r, f));
    return {
      state: STATES[g(F.state)]!,
      up: g(F.up) === 1,
      consecutiveFailures: g(F.fails),
      active: g(F.active),
      lastCheck: (["none", "ok", "failed"] as const)[g(F.lastResult)]!,
      lastCheckAt: g(F.lastCheckAt),
    };
  }
}
