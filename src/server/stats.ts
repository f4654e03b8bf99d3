// Connection counters by outcome (for status and, later, metrics).
import type { Outcome } from "./connection";

export class Stats {
  readonly startedAt = Date.now();
  total = 0;
  readonly byOutcome = new Map<Outcome, number>();

  record(outcome: Outcome): void {
    this.total++;
    this.byOutcome.set(outcome, (this.byOutcome.get(outcome) ?? 0) + 1);
  }
}
