// The recent refusals of one event loop: the last REFUSALS_KEPT sessions
// whose outcome was not ok (the dashboard's "Refusals" view,
// docs/DASHBOARD.md), written where the access record is (session.ts) — one
// slot overwritten per refused session, nothing allocated once the ring is
// full — and read by the control plane's "refusals" query, the loops' rings
// merged newest first.

/** One refused session, as the dashboard shows it. */
export interface Refusal {
  /** Milliseconds since the epoch. */
  time: number;
  /** The listener's one name (listener_runtime.ts listenerLabel). */
  listener: string;
  /** The client's address (no port). */
  client: string;
  sni: string;
  /** "" when the hello was not read whole. */
  ja4: string;
  outcome: string;
}

/** Refusals kept per event loop, and in the merged list. */
export const REFUSALS_KEPT = 50;

export class RefusalRing {
  private readonly slots: Refusal[] = [];
  /** The slot the next refusal overwrites once the ring is full. */
  private next = 0;

  constructor(private readonly size = REFUSALS_KEPT) {}

  push(time: number, listener: string, client: string, sni: string, ja4: string, outcome: string): void {
    if (this.slots.length < this.size) {
      this.slots.push({ time, listener, client, sni, ja4, outcome });
      return;
    }
    const s = this.slots[this.next]!;
    s.time = time;
    s.listener = listener;
    s.client = client;
    s.sni = sni;
    s.ja4 = ja4;
    s.outcome = outcome;
    this.next = (this.next + 1) % this.size;
  }

  /** Copies, newest first. */
  list(): Refusal[] {
    const n = this.slots.length;
    const out: Refusal[] = [];
    // The newest is just before `next` (or the last pushed while filling).
    for (let k = 1; k <= n; k++) out.push({ ...this.slots[(this.next - k + n) % n]! });
    return out;
  }
}

/** The loops' lists as one: newest first, at most `limit`. */
export function mergeRefusals(lists: readonly (readonly Refusal[])[], limit = REFUSALS_KEPT): Refusal[] {
  return lists
    .flat()
    .sort((a, b) => b.time - a.time)
    .slice(0, limit);
}
