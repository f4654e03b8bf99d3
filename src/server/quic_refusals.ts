// A QUIC listener's refusals (docs/HTTP3.md): the memory of recent ones
// (quic/refusal_memory.ts: a copy of a refused Initial, by address and
// Destination Connection ID, is counted under the same outcome, not
// decrypted or logged again) and the record budget (quic/record_budget.ts:
// past it, refusals are summed in one line a second), with the lines they log;
// their turn once a second is an entry of the loop's deadline wheel.

import type { Logger } from "../log/logger";
import { RecordBudget } from "../quic/record_budget";
import { type Refusal, RefusalMemory } from "../quic/refusal_memory";
import type { DeadlineWheel } from "../relay/deadline_wheel";
import { type Expiring, REFUSALS_REMEMBERED, REFUSAL_MEMORY_MS } from "./quic_flow";
import type { Outcome } from "./stats";

/** How often the refusal memory forgets and the refusals past the record budget are summed in one line. */
const HOUSEKEEPING_MS = 1000;

export class QuicRefusals {
  private readonly memory = new RefusalMemory<Outcome>(REFUSALS_REMEMBERED, REFUSAL_MEMORY_MS);
  private readonly records = new RecordBudget<Outcome>();
  private readonly turn: Expiring;
  private stopped = false;

  constructor(
    private readonly logger: Logger,
    /** The listener's label, in the summary line. */
    private readonly label: string,
    private readonly wheel: Pick<DeadlineWheel<Expiring>, "after" | "schedule" | "cancel">,
  ) {
    this.turn = { deadline: wheel.after(HOUSEKEEPING_MS), wheelSlot: null, expire: () => this.houseKeep() };
    wheel.schedule(this.turn);
  }

  /** The listener closed: no more turns. */
  stop(): void {
    this.stopped = true;
    this.wheel.cancel(this.turn);
  }

  /** The outcome of a refusal of `key` ("ip|dcid") remembered now, or null. */
  repeat(key: string, now: number): Outcome | null {
    return this.memory.repeat(key, now);
  }

  /** Remember a refusal of `key`; the refusal it pushed out, if repeated, is logged. */
  remember(key: string, outcome: Outcome, now: number): void {
    const pushed = this.memory.remember(key, outcome, now);
    if (pushed !== null) this.logRepeats(pushed);
  }

  /** Whether a refused flow's access record is within the budget now (else it is summed by houseKeep). */
  record(outcome: Outcome, now: number): boolean {
    return this.records.take(outcome, now);
  }

  /** Once a second: the refusals older than REFUSAL_MEMORY_MS forgotten, those past the budget summed in one line. */
  private houseKeep(): void {
    if (this.stopped) return;
    for (const r of this.memory.expire(Date.now())) this.logRepeats(r);
    const unlogged = this.records.drain();
    if (unlogged !== null) this.logger.info("quic refusals not logged", { listener: this.label, ...unlogged });
    this.turn.deadline = this.wheel.after(HOUSEKEEPING_MS);
    this.wheel.schedule(this.turn);
  }

  private logRepeats(r: Refusal<Outcome>): void {
    if (r.repeats === 0) return;
    const bar = r.key.lastIndexOf("|");
    this.logger.info("quic refusal repeated", {
      client: r.key.slice(0, bar),
      dcid: r.key.slice(bar + 1),
      outcome: r.outcome,
      repeats: r.repeats,
    });
  }
}
