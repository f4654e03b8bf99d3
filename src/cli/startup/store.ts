// Start-up's store phase: where routes, rules and limits come from. SQLite
// is the store itself (seeded from the TOML when new), or with etcd the
// fleet's last-known-good copy (docs/FLEET.md). Listener addresses always
// come from the TOML; everything else the store holds once seeded.

import { routeOwners } from "../../config/listeners";
import type { Logger } from "../../log/logger";
import type { RoutedConfig } from "../../routing/route_config";
import type { RuntimeChanges } from "../../server/runtime_views";
import { ruleList, ruleSet } from "../../firewall/rule_set";
import type { ConfigStore, StoreState } from "../../store/config_store";
import { EtcdConfigStore, type SeedInput } from "../../store/etcd_store";
import { fileState } from "../../store/file_applied";
import { APPLIED_KEY, SqliteConfigStore } from "../../store/sqlite_config_store";
import { routeName } from "../../routing/route";
import type { FileInput } from "./apply_file";
import { SqliteDatabase } from "../../store/sqlite_database";

export interface OpenedStore {
  db: SqliteDatabase;
  /** The config with routes, firewall rules and connection limits as the store holds them. */
  config: RoutedConfig;
  /** What the config file applies (apply_file.ts, after the handover). */
  file: FileInput;
  /** Serving: the store applies its changes to `plane` from now on (made once the plane exists). */
  attach(plane: RuntimeChanges): ConfigStore;
  close(): void;
}

/** Open the database (and etcd), seed what is new, and read the state the plane starts with. */
export async function openStore(cfg: RoutedConfig, logger: Logger): Promise<OpenedStore> {
  const seed: SeedInput = {
    // The listeners with routes of their own, by name (a QUIC listener may use a TCP listener's).
    listeners: routeOwners(cfg).map((l) => ({ name: l.name, maxConnections: l.maxConnections, routes: l.routes })),
    rules: ruleList(cfg.firewall),
  };
  const file: FileInput = {
    state: fileState(seed.listeners, seed.rules),
    routes: new Map(seed.listeners.map((l) => [l.name, new Map(l.routes.map((r) => [routeName(r), r]))])),
  };
  const db = SqliteDatabase.open(cfg.databasePath);
  // Serving: from here a write never waits inside SQLite for another process's lock.
  const serving = (plane: RuntimeChanges, open: (plane: RuntimeChanges) => ConfigStore) => {
    db.serving();
    return open(plane);
  };
  try {
    if (cfg.store === "etcd") {
      const fleetSeed = seedForFleet(db, seed, logger);
      const etcd = await EtcdConfigStore.open(cfg.etcd!, db, fleetSeed, logger);
      db.setRole("etcd-cache");
      logger.info("store ready", { store: etcd.describe(), cache: db.path });
      return {
        db,
        file,
        config: effectiveConfig(cfg, etcd.current()),
        attach: (plane) =>
          serving(plane, (p) => {
            etcd.attach(p);
            return etcd;
          }),
        close: () => {
          etcd.close();
          db.close();
        },
      };
    }
    if (db.role() !== "sqlite") {
      // A new file, or etcd's copy becoming the store: nothing was applied to it as a SQLite store.
      db.deleteMeta(APPLIED_KEY);
      db.setRole("sqlite");
    }
    const seeded = db.seed(
      seed.listeners.map((l) => ({ addr: l.name, maxConnections: l.maxConnections, routes: l.routes })),
      seed.rules,
    );
    logger.info("database ready", { path: db.path, created: seeded.created, seeded_listeners: seeded.seededListeners });
    return {
      db,
      file,
      config: effectiveConfig(cfg, db.state()),
      attach: (plane) => serving(plane, (p) => new SqliteConfigStore(db, p)),
      close: () => db.close(),
    };
  } catch (e) {
    db.close();
    throw e;
  }
}

/**
 * Switching [store] backend from sqlite to etcd: the file at [database] path
 * holds what the admin API made, and from now on it becomes the fleet's
 * last-known-good copy, which etcd's state overwrites. Nothing is lost: the
 * file is first copied beside itself (PATH.sqlite-<time>), and its routes,
 * rules and limits — not the TOML's — seed a fleet that has not been seeded
 * yet, exactly as that SQLite store would have served them. A file already
 * used as an etcd cache (or new) seeds from the TOML, as before.
 */
function seedForFleet(db: SqliteDatabase, toml: SeedInput, logger: Logger): SeedInput {
  const role = db.role();
  if (db.created || role === "etcd-cache" || !db.holdsState) return toml;
  const copy = `${db.path}.sqlite-${new Date().toISOString().replace(/[:.]/g, "-")}`;
  db.snapshot(copy);
  const state = db.state();
  logger.warn(
    "etcd: the database was a SQLite store; it becomes the fleet's last-known-good copy. A copy is kept, and its state seeds the fleet if the fleet is new",
    {
      database: db.path,
      copy,
      role: role ?? "unknown (schema 3 or older)",
      routes: [...state.listeners.values()].reduce((n, l) => n + l.routes.length, 0),
      rules: state.rules.length,
    },
  );
  // The listeners this config serves, each as the database holds it (a listener new to the TOML from the TOML).
  const listeners = toml.listeners.map((l) => {
    const stored = state.listeners.get(l.name);
    return stored === undefined ? l : { name: l.name, maxConnections: stored.maxConnections, routes: stored.routes };
  });
  return { listeners, rules: state.rules };
}

/** The config with routes, firewall rules and connection limits as the store holds them (listeners by name). */
function effectiveConfig(cfg: RoutedConfig, state: StoreState): RoutedConfig {
  const rules = ruleSet(state.rules);
  return {
    ...cfg,
    listeners: cfg.listeners.map((l) => {
      const stored = state.listeners.get(l.name);
      return stored === undefined ? l : { ...l, maxConnections: stored.maxConnections, routes: stored.routes };
    }),
    quicListeners: cfg.quicListeners.map((q) => {
      const stored = q.routesFrom === null ? state.listeners.get(q.name) : undefined;
      return stored === undefined ? q : { ...q, maxConnections: stored.maxConnections, routes: stored.routes };
    }),
    firewall: { ...cfg.firewall, ...rules },
  };
}
