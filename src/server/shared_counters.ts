// Connection counts shared by every event loop of the process:
// an Int32Array over a SharedArrayBuffer, changed only with Atomics, so that
// limits are exact across workers — never limit/N per worker, never one over.
//
// Layout (int32 slots):
//   [0]                                   connections open in the whole process (the fd cap)
//   [1 + l]                               listener l: open now
//   [1 + L + l]                           listener l: max_connections (0 = unlimited)
//   [1 + 2L + w * (L + 1) + l]            worker w, listener l: open now (l = L: whole worker)
// The per-worker slots let the supervisor take a dead worker's connections
// back out of the totals (its sockets die with it).

export class SharedCounters {
  readonly buffer: SharedArrayBuffer;
  private readonly a: Int32Array;

  constructor(
    readonly listeners: number,
    readonly workers: number,
    buffer?: SharedArrayBuffer,
  ) {
    const slots = 1 + 2 * listeners + workers * (listeners + 1);
    this.buffer = buffer ?? new SharedArrayBuffer(slots * 4);
    this.a = new Int32Array(this.buffer);
  }

  private workerSlot(w: number, l: number): number {
    return 1 + 2 * this.listeners + w * (this.listeners + 1) + l;
  }

  /**
   * Take a place for a new connection on listener `l`, for worker `w`: false
   * (and nothing taken) when the listener is at max_connections or the
   * process at `cap` (0 = no cap). Increment first, then check, and give it
   * back when over: two workers racing for the last place cannot both win.
   */
  tryAcquire(l: number, w: number, cap: number): boolean {
    const a = this.a;
    const max = Atomics.load(a, 1 + this.listeners + l);
    const n = Atomics.add(a, 1 + l, 1) + 1;
    if (max > 0 && n > max) {
      Atomics.sub(a, 1 + l, 1);
      return false;
    }
    const total = Atomics.add(a, 0, 1) + 1;
    if (cap > 0 && total > cap) {
      Atomics.sub(a, 0, 1);
      Atomics.sub(a, 1 + l, 1);
      return false;
    }
    Atomics.add(a, this.workerSlot(w, l), 1);
    Atomics.add(a, this.workerSlot(w, this.listeners), 1);
    return true;
  }

  release(l: number, w: number): void {
    const a = this.a;
    Atomics.sub(a, 0, 1);
    Atomics.sub(a, 1 + l, 1);
    Atomics.sub(a, this.workerSlot(w, l), 1);
    Atomics.sub(a, this.workerSlot(w, this.listeners), 1);
  }

  /** A worker died: its connections are gone; take them out of the totals. Returns how many it held. */
  forgetWorker(w: number): number {
    const a = this.a;
    for (let l = 0; l < this.listeners; l++) {
      const n = Atomics.exchange(a, this.workerSlot(w, l), 0);
      Atomics.sub(a, 1 + l, n);
    }
    const all = Atomics.exchange(a, this.workerSlot(w, this.listeners), 0);
    Atomics.sub(a, 0, all);
    return all;
  }

  total(): number {
    return Atomics.load(this.a, 0);
  }

  active(l: number): number {
    return Atomics.load(this.a, 1 + l);
  }

  workerActive(w: number): number {
    return Atomics.load(this.a, this.workerSlot(w, this.listeners));
  }

  max(l: number): number {
    return Atomics.load(this.a, 1 + this.listeners + l);
  }

  setMax(l: number, n: number): void {
    Atomics.store(this.a, 1 + this.listeners + l, n);
  }
}
