// Start-up's apply phase (docs/CONFIGURATION.md "The file and the API"):
// after the handover, what the config file changed since it last applied is
// written through the store — the same calls the admin API makes, so SQLite
// and etcd, the data plane and every fleet member take it the same way. The
// last-applied document is claimed first (compare-and-swap), so of two
// members applying the same edit at once one does it; a step that fails
// gives the claim back, and the next start applies the edit again.

import type { Logger } from "../../log/logger";
import { canBind } from "../../routing/pool";
import { type Route, isRoute } from "../../routing/route";
import type { LiveTables } from "../../server/runtime_views";
import type { ConfigStore, StoreState } from "../../store/config_store";
import {
  type AppliedState,
  type Plan,
  type RouteStep,
  decodeApplied,
  differences,
  encodeApplied,
  isEmpty,
  listed,
  planApply,
  refusedSteps,
  stepName,
  storedState,
  summarize,
} from "../../store/file_applied";

/** What the file applies: its state, and its routes themselves by listener and route name. */
export interface FileInput {
  state: AppliedState;
  routes: ReadonlyMap<string, ReadonlyMap<string, Route>>;
}

/** Claims lost to other members before giving up (each loss means another member applied meanwhile). */
const CLAIM_TRIES = 3;

/** Apply the file's changes; the one-line summary (also logged). Never throws: a failure is in the summary. */
export async function applyFile(
  store: ConfigStore,
  plane: LiveTables,
  file: FileInput,
  logger: Logger,
): Promise<string> {
  try {
    for (let attempt = 0; attempt < CLAIM_TRIES; attempt++) {
      const done = await applyOnce(store, plane, file, logger);
      if (done !== null) return done;
    }
    return notApplied(logger, "other instances kept changing the last-applied state; the next start applies it");
  } catch (e) {
    return notApplied(logger, `${(e as Error).message}; the next start or reload applies it`);
  }
}

function notApplied(logger: Logger, why: string): string {
  const summary = `not applied: ${why}`;
  logger.error("config file not applied", { summary });
  return summary;
}

/** One attempt: null when another process changed the last-applied state first. */
async function applyOnce(
  store: ConfigStore,
  plane: LiveTables,
  file: FileInput,
  logger: Logger,
): Promise<string | null> {
  const { text, token } = await store.readApplied();
  let last: AppliedState | null = null;
  if (text !== null) {
    const d = decodeApplied(text);
    if (d.ok) last = d.value;
    else logger.warn("config file: the stored last-applied state is unreadable; taken as absent", { reason: d.error });
  }
  const state = store.state();
  const current = storedState(state);
  if (last === null) return adopt(store, token, file.state, current, logger);
  const plan = planApply(last, file.state, file.routes, current);
  const nextText = encodeApplied(plan.next);
  if (isEmpty(plan)) {
    // Nothing to apply; listeners new to the document are recorded.
    if (nextText !== text && (await store.swapApplied(token, nextText)) === null) return null;
    const summary = summarize(plan);
    logger.info("config file applied", { summary });
    return summary;
  }
  const claimed = await store.swapApplied(token, nextText);
  if (claimed === null) return null;
  const failures = await run(plan, store, plane, state, current);
  if (failures.length > 0) {
    // Given back: the next start plans from the old document again (each step is idempotent).
    const back = await store.swapApplied(claimed, encodeApplied(last)).catch(() => null);
    const summary = `${summarize(plan)}; failed: ${failures.join("; ")}${back === null ? " (and the last-applied state could not be restored: re-apply by hand over the API)" : "; the next start or reload applies the file again"}`;
    logger.error("config file applied", { summary });
    return summary;
  }
  const summary = summarize(plan);
  if (plan.conflicts.length > 0)
    logger.warn("config file applied over API changes", { conflicts: plan.conflicts.join("; ") });
  logger.info("config file applied", { summary });
  return summary;
}

/**
 * No last-applied state: a new store (seeded from this file just now) or one
 * written by an earlier release. The file as it is now is taken as
 * applied; where the store differs it is left as it is, and said.
 */
async function adopt(
  store: ConfigStore,
  token: string | null,
  file: AppliedState,
  current: AppliedState,
  logger: Logger,
): Promise<string | null> {
  if ((await store.swapApplied(token, encodeApplied(file))) === null) return null;
  const diff = differences(file, current);
  if (diff.length === 0) {
    const summary = "first apply: the store holds what the file sets; from now on edits to the file apply";
    logger.info("config file applied", { summary });
    return summary;
  }
  const summary = `first apply on a store without a last-applied state: the file is taken as applied; ${diff.length} difference(s) from the store left as the store has them (${listed(diff, "; ")}); from now on edits to the file apply`;
  logger.warn("config file applied", { summary });
  return summary;
}

/**
 * The plan's steps through the store (removals first); what failed. A step
 * the store already holds is skipped; one the admin API would refuse (two
 * routes for one hostname and protocol, a full backend table) is refused
 * the same way, before anything of it is written.
 */
async function run(
  plan: Plan,
  store: ConfigStore,
  plane: LiveTables,
  state: StoreState,
  current: AppliedState,
): Promise<string[]> {
  const failures: string[] = [];
  const refused = refusedSteps(plan, state);
  const step = async (what: string, fn: () => Promise<unknown>) => {
    try {
      await fn();
    } catch (e) {
      failures.push(`${what}: ${(e as Error).message}`);
    }
  };
  const have = (s: RouteStep) => current.listeners.get(s.listener)?.routes.get(s.name);
  for (const s of plan.routes)
    if (s.op === "remove" && have(s) !== undefined) await step(stepName(s), () => store.removeRoute(s.listener, s.key));
  for (const r of plan.rulesRemoved)
    if (current.rules.has(`${r.type} ${r.value}`)) await step(`remove ${r.type} ${r.value}`, () => store.removeRule(r));
  for (const r of plan.rulesAdded)
    if (!current.rules.has(`${r.type} ${r.value}`)) await step(`add ${r.type} ${r.value}`, () => store.addRule(r));
  for (const l of plan.limits)
    if (current.listeners.get(l.listener)?.maxConnections !== l.to)
      await step(`${l.listener} max_connections`, () => store.setMaxConnections(l.listener, l.to));
  for (const s of plan.routes) {
    if (s.op === "remove") continue;
    if (have(s) === plan.next.listeners.get(s.listener)?.routes.get(s.name)) continue;
    const why = refused.get(s);
    if (why !== undefined) {
      failures.push(`${stepName(s)}: ${why}`);
      continue;
    }
    const view = plane.listener(s.listener);
    if (view !== undefined) {
      const next = [...view.table.routes().filter((r) => !isRoute(r, s.route)), s.route];
      if (!canBind(plane.backends, view.index, next, view.table.defaultRoute?.route ?? null)) {
        failures.push(`${stepName(s)}: the backend table is full (${plane.backends.slots} route backends in all)`);
        continue;
      }
    }
    await step(stepName(s), () => store.upsertRoute(s.listener, s.route));
  }
  return failures;
}
