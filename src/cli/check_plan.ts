// What `check -c FILE` says a start or reload of FILE would apply from the
// file (docs/CONFIGURATION.md "The file and the API"): the store the running
// instance uses, read without changing it — the SQLite file opened read-only,
// or one consistent read of the fleet's etcd prefix — and the plan
// apply_file.ts would carry out (store/file_applied.ts).

import { existsSync } from "node:fs";
import { routeOwners } from "../config/listeners";
import { ruleList } from "../firewall/rule_set";
import type { RoutedConfig } from "../routing/route_config";
import { routeName } from "../routing/route";
import type { StoreState } from "../store/config_store";
import { bounded, etcdClient } from "../store/etcd_client";
import { keys, stateFrom } from "../store/etcd_layout";
import {
  type AppliedState,
  decodeApplied,
  differences,
  fileState,
  planApply,
  refusedSteps,
  stepName,
  storedState,
  summarize,
} from "../store/file_applied";
import { APPLIED_KEY } from "../store/sqlite_config_store";
import { SqliteDatabase } from "../store/sqlite_database";

const NEW = "new" as const;

/** What a start or reload would apply, and what in the store would make it fail (each a problem for `check`). */
export interface PlanReport {
  line: string;
  problems: string[];
}

/** The store's state and last-applied document, or why they cannot be read (`fatal`: a start would fail too). */
async function readStore(
  cfg: RoutedConfig,
): Promise<{ state: StoreState; applied: string | null } | { error: string; fatal: boolean } | typeof NEW> {
  if (cfg.store === "etcd") {
    const e = cfg.etcd!;
    const client = etcdClient(e);
    try {
      const r = await bounded(e.dialTimeoutMs, "read", () => client.getAll().prefix(e.prefix).exec());
      const kvs = r.kvs.map((kv) => ({ key: kv.key.toString(), value: kv.value.toString() }));
      return {
        state: stateFrom(e.prefix, kvs),
        applied: kvs.find((kv) => kv.key === keys.applied(e.prefix))?.value ?? null,
      };
    } catch (err) {
      return { error: `etcd ${e.endpoints.join(",")}: ${(err as Error).message}`, fatal: false };
    } finally {
      client.close();
    }
  }
  if (!existsSync(cfg.databasePath)) return NEW;
  const db = SqliteDatabase.openReadOnly(cfg.databasePath);
  if (!(db instanceof SqliteDatabase)) return { error: `database ${cfg.databasePath}: ${db.error}`, fatal: db.newer };
  try {
    return { state: db.state(), applied: db.role() === "sqlite" ? db.meta(APPLIED_KEY) : null };
  } finally {
    db.close();
  }
}

/** What a start or reload of this config would apply to the store now. */
export async function planReport(cfg: RoutedConfig): Promise<PlanReport> {
  const owners = routeOwners(cfg);
  const file = fileState(owners, ruleList(cfg.firewall));
  const store = await readStore(cfg);
  if (store === NEW) return { line: "no store yet: a first start seeds it from this file", problems: [] };
  if ("error" in store)
    return store.fatal
      ? { line: "not compared with the store", problems: [store.error] }
      : { line: `not compared with the store (${store.error})`, problems: [] };
  const current = storedState(store.state);
  let last: AppliedState | null = null;
  if (store.applied !== null) {
    const d = decodeApplied(store.applied);
    if (d.ok) last = d.value;
  }
  if (last === null) {
    const n = differences(file, current).length;
    return {
      line: `the store has no last-applied state: a start takes the file as applied${n > 0 ? ` and leaves ${n} difference(s) from the store as the store has them` : ""}`,
      problems: [],
    };
  }
  const routes = new Map(owners.map((l) => [l.name, new Map(l.routes.map((r) => [routeName(r), r]))]));
  const plan = planApply(last, file, routes, current);
  const refused = [...refusedSteps(plan, store.state)].map(
    ([step, why]) => `a reload would fail to ${stepName(step)}: ${why}`,
  );
  return { line: `a start or reload applies: ${summarize(plan)}`, problems: refused };
}
