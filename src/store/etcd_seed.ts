// Seeding a fleet: the first instance claims the seed marker in a
// transaction (create only if absent) and seeds the firewall rules with it;
// each listener, with its routes, is seeded when the fleet first sees its
// name. Two instances started at the same instant seed exactly once.
// Transactions are split at etcd's 128-operation limit.

import type { Etcd3 } from "etcd3";
import type { EtcdConfig } from "../config/config";
import type { Logger } from "../log/logger";
import type { Route } from "../routing/route";
import { MAX_TXN_OPS, bounded } from "./etcd_client";
import { RULE_VALUE, SCHEMA_VERSION, keys, listenerValue } from "./etcd_layout";
import { encodeRoute } from "./route_codec";
import { StoreError, type StoredRule } from "./config_store";

export interface SeedInput {
  listeners: { name: string; maxConnections: number; routes: Route[] }[];
  rules: StoredRule[];
}

/** Seed what the fleet lacks; refuses a prefix written by a newer schema. */
export async function seedFleet(client: Etcd3, cfg: EtcdConfig, seed: SeedInput, logger: Logger): Promise<void> {
  const p = cfg.prefix;
  const t = cfg.dialTimeoutMs;
  const schema = await bounded(t, "read schema", () => client.get(keys.schema(p)).string());
  if (schema !== null && Number(schema) > Number(SCHEMA_VERSION)) {
    throw new StoreError(
      `etcd prefix ${p}: schema version ${schema} is newer than this mc-proxy knows (${SCHEMA_VERSION}); use a newer mc-proxy`,
    );
  }
  // The fleet's first instance seeds the firewall rules, in the transaction that claims the marker.
  const [firstRules, moreRules] = [seed.rules.slice(0, MAX_TXN_OPS - 2), seed.rules.slice(MAX_TXN_OPS - 2)];
  const claim = await bounded(t, "seed", () =>
    client
      .if(keys.seeded(p), "Create", "==", 0)
      .then(
        client
          .put(keys.seeded(p))
          .value(JSON.stringify({ version: 1, at: new Date().toISOString(), pid: process.pid })),
        client.put(keys.schema(p)).value(SCHEMA_VERSION),
        ...firstRules.map((r) => client.put(keys.rule(p, r)).value(RULE_VALUE)),
      )
      .commit(),
  );
  if (claim.succeeded) {
    for (let i = 0; i < moreRules.length; i += MAX_TXN_OPS) {
      const chunk = moreRules.slice(i, i + MAX_TXN_OPS);
      await bounded(t, "seed rules", () =>
        client
          .if(keys.seeded(p), "Create", ">", 0)
          .then(...chunk.map((r) => client.put(keys.rule(p, r)).value(RULE_VALUE)))
          .commit(),
      );
    }
    logger.info("etcd: seeded the fleet from this config", { prefix: p, rules: seed.rules.length });
  }
  // Each listener (and its routes) is seeded when the fleet first sees its name.
  for (const l of seed.listeners) {
    const routes = l.routes.slice(0, MAX_TXN_OPS - 1);
    const got = await bounded(t, "seed listener", () =>
      client
        .if(keys.listener(p, l.name), "Create", "==", 0)
        .then(
          client.put(keys.listener(p, l.name)).value(listenerValue(l.maxConnections)),
          ...routes.map((r) => client.put(keys.route(p, l.name, r)).value(encodeRoute(r))),
        )
        .commit(),
    );
    if (!got.succeeded) continue;
    for (let i = MAX_TXN_OPS - 1; i < l.routes.length; i += MAX_TXN_OPS) {
      const chunk = l.routes.slice(i, i + MAX_TXN_OPS);
      await bounded(t, "seed routes", () =>
        client
          .if(keys.listener(p, l.name), "Create", ">", 0)
          .then(...chunk.map((r) => client.put(keys.route(p, l.name, r)).value(encodeRoute(r))))
          .commit(),
      );
    }
    logger.info("etcd: seeded a listener", { listener: l.name, routes: l.routes.length });
  }
}
