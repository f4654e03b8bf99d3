// The accounting of one session — a TCP connection (connection.ts) or a QUIC
// flow (quic_listener.ts) — in its listener's counters (stats.ts): its route's
// label, its outcome and bytes at its end, its duration, its access record
// (access_record.ts); and what is refused before a session exists, counted
// and not logged. The same for every transport.

import type { Logger } from "../log/logger";
import type { RoutePool } from "../routing/pool";
import { type AccessFacts, writeAccessRecord } from "./access_record";
import type { RefusalRing } from "./refusal_ring";
import { type ListenerStats, OUTCOME_INDEX, type Outcome, type RouteStats } from "./stats";

/** What the accounting reads of an event loop's context (loop_context.ts). */
export interface SessionContext {
  readonly logger: Logger;
  readonly histograms: boolean;
  readonly workerId: number;
  readonly generation: number;
  /** The loop's recent refusals (refusal_ring.ts): the dashboard's. */
  readonly refusals: RefusalRing;
}

/** A routed session's route counters: a configured route's, or the listener's default route's (`_default`). */
export function routeStatsOf(stats: ListenerStats, route: RoutePool): RouteStats {
  return stats.route(route.name);
}

/** Refused before a session exists (a datagram dropped, a path refused): counted in its listener's outcomes only. */
export function countOutcome(stats: ListenerStats, outcome: Outcome): void {
  stats.closed[OUTCOME_INDEX[outcome]]!++;
}

/**
 * A session's end: its outcome counted, its bytes added to its route's
 * counters (`rs`, null when it matched none), its duration observed, its
 * access record written (at info) and a refusal put in the loop's ring
 * unless `record` is false (a QUIC refusal past its listener's record
 * budget, quic/record_budget.ts).
 */
export function endSession(
  ctx: SessionContext,
  stats: ListenerStats,
  rs: RouteStats | null,
  s: AccessFacts,
  outcome: Outcome,
  record = true,
): void {
  const i = OUTCOME_INDEX[outcome];
  stats.closed[i]!++;
  const r = rs ?? stats.none;
  r.bytesFromClient += s.bytesFromClient;
  r.bytesToClient += s.bytesFromBackend;
  if (ctx.histograms) stats.duration[i]!.observe((performance.now() - s.acceptedAt) / 1000);
  if (!record) return;
  if (outcome !== "ok") ctx.refusals.push(Date.now(), s.listener.label, s.clientIp, s.sni ?? "", s.ja4, outcome);
  if (ctx.logger.enabled("info")) writeAccessRecord(ctx.logger, ctx.workerId, ctx.generation, s, outcome);
}
