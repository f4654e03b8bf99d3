// One timer for every connection's deadline (hello, connect, idle): a hashed
// timing wheel swept by a single interval. Its cost per tick is the number of
// entries due in that slot, not the number of connections.
//
// Deadlines are lazy: a connection that sees traffic only moves its
// `deadline` field forward (a store, no wheel operation). When its slot comes
// round the wheel finds the deadline in the future and re-files it once.
// Bun's socket.timeout() cannot do this job: 4-second granularity and not
// reset by traffic (docs/BUN-NOTES.md).

export interface Timed {
  /** Absolute time (ms, wheel clock) at which onExpire fires. */
  deadline: number;
  /** The slot set this entry is filed in, or null. Owned by the wheel. */
  wheelSlot: Set<Timed> | null;
}

const SLOTS = 512;

export class DeadlineWheel<T extends Timed> {
  private readonly slots: Set<Timed>[] = Array.from({ length: SLOTS }, () => new Set<Timed>());
  private spare = new Set<Timed>();
  private cursor: number;
  private timer: ReturnType<typeof setInterval> | null = null;
  /** Coarse clock, updated every tick; cheap to read on the hot path. */
  now: number;

  /** The coarse clock in whole seconds (backend retry times are kept in seconds). */
  get nowSec(): number {
    return Math.floor(this.now / 1000);
  }

  constructor(
    private readonly tickMs: number,
    private readonly onExpire: (item: T) => void,
    private readonly clock: () => number = Date.now,
  ) {
    this.now = clock();
    this.cursor = Math.floor(this.now / tickMs);
  }

  /**
   * The deadline for a timeout of `ms` starting now. `now` is up to one tick
   * old, so one tick is added: a timeout never fires early, and fires at most
   * two ticks late.
   */
  after(ms: number): number {
    return this.now + ms + this.tickMs;
  }

  start(): void {
    if (this.timer === null) this.timer = setInterval(() => this.advance(this.clock()), this.tickMs);
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** File `item` by its current deadline (moving it if already filed). */
  schedule(item: T): void {
    if (item.wheelSlot !== null) item.wheelSlot.delete(item);
    // Never file into the slot being processed or a past one: the earliest is the next tick.
    const tick = Math.max(this.cursor + 1, Math.ceil(item.deadline / this.tickMs));
    const slot = this.slots[tick & (SLOTS - 1)]!;
    slot.add(item);
    item.wheelSlot = slot;
  }

  cancel(item: T): void {
    if (item.wheelSlot !== null) {
      item.wheelSlot.delete(item);
      item.wheelSlot = null;
    }
  }

  /** Process every tick up to `nowMs`. Exposed for tests that drive a fake clock. */
  advance(nowMs: number): void {
    this.now = nowMs;
    const last = Math.floor(nowMs / this.tickMs);
    // After a long stall, one pass over the whole wheel is enough.
    if (last - this.cursor > SLOTS) this.cursor = last - SLOTS;
    while (this.cursor < last) {
      this.cursor++;
      const idx = this.cursor & (SLOTS - 1);
      const due = this.slots[idx]!;
      if (due.size === 0) continue;
      this.slots[idx] = this.spare;
      for (const item of due) {
        item.wheelSlot = null;
        if (item.deadline <= nowMs) this.onExpire(item as T);
        else if (item.wheelSlot === null) this.schedule(item as T);
      }
      due.clear();
      this.spare = due;
    }
  }
}
