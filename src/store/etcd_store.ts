// Fleet mode: routes, firewall rules and listener limits in etcd,
// shared by every instance that uses the same prefix. Not a replication of
// our own: etcd is the replicated store; each instance
//
//   - at start: seeds what the fleet does not have yet (the seed marker is
//     claimed in a transaction, so two instances starting together seed once),
//     reads everything in one consistent range, and watches from the next
//     revision;
//   - applies each watch batch to the data plane at once (a connection sees
//     the old tables or the new ones), its own writes included: one code path;
//   - re-reads everything when the watch reports compaction or cannot resume;
//   - keeps the last state it saw in the SQLite file (last-known-good): an
//     instance that starts while etcd is unreachable serves it, says so
//     ("stale since …"), and catches up when etcd returns.
//
// Writes go through etcd transactions (etcd_writes.ts) and return once
// committed and applied here; while etcd cannot be reached they fail
// UNAVAILABLE within dial_timeout and change nothing, and routing goes on
// from memory.

import type { Etcd3, IKeyValue, Watcher } from "etcd3";
import type { EtcdConfig } from "../config/config";
import type { Logger } from "../log/logger";
import type { BackendState } from "../routing/backend_table";
import type { Route } from "../routing/route";
import type { RuntimeChanges } from "../server/runtime_views";
import { type ConfigStore, type RouteKey, StoreError, type StoreState, type StoredRule } from "./config_store";
import { bounded, etcdClient, fatal } from "./etcd_client";
import { FleetState } from "./fleet_state";
import { type SeedInput, seedFleet } from "./etcd_seed";
import { keys } from "./etcd_layout";
import { FleetWrites } from "./etcd_writes";
import type { SqliteDatabase } from "./sqlite_database";

/** How long a write waits to see itself come back through this instance's watch. */
const APPLY_WAIT_MS = 1000;
const RETRY_MS = 1000;

export type { SeedInput } from "./etcd_seed";

export class EtcdConfigStore implements ConfigStore {
  /** The fleet's state as this instance holds it, and how it reaches the data plane. */
  private readonly fleet: FleetState;
  /** The transactions; each write here waits for its revision to come back through the watch. */
  private readonly writes: FleetWrites;
  private revision = 0;
  private watcher: Watcher | null = null;
  private staleSince: Date | null = null;
  private staleReason = "";
  private closed = false;
  private resyncing = false;
  private readonly waiters: { revision: number; resolve: () => void }[] = [];
  private cacheTimer: ReturnType<typeof setTimeout> | null = null;
  /** Values refused since start (the metric mc_proxy_store_invalid_values_total). */
  get invalidValues(): number {
    return this.fleet.invalidValues;
  }

  private constructor(
    private readonly client: Etcd3,
    private readonly cfg: EtcdConfig,
    private readonly cache: SqliteDatabase,
    served: ReadonlySet<string>,
    private readonly seed: SeedInput,
    private readonly logger: Logger,
  ) {
    this.fleet = new FleetState(cfg.prefix, served, logger, cache.state());
    this.writes = new FleetWrites(client, cfg);
  }

  get stale(): boolean {
    return this.staleSince !== null;
  }

  /**
   * Connect, seed what the fleet lacks, and read the fleet's state; or, when
   * etcd cannot be reached, take the last-known-good copy and say so. Throws
   * only for what a retry cannot fix (TLS, authentication, a newer schema).
   */
  static async open(cfg: EtcdConfig, cache: SqliteDatabase, seed: SeedInput, logger: Logger): Promise<EtcdConfigStore> {
    const s = new EtcdConfigStore(
      etcdClient(cfg),
      cfg,
      cache,
      new Set(seed.listeners.map((l) => l.name)),
      seed,
      logger,
    );
    try {
      await s.seedAndRead();
      logger.info("etcd: fleet state read", {
        endpoints: cfg.endpoints.join(","),
        prefix: cfg.prefix,
        revision: s.revision,
        routes: [...s.fleet.state.listeners.values()].reduce((n, l) => n + l.routes.length, 0),
        rules: s.fleet.state.rules.length,
      });
    } catch (e) {
      const why = fatal((e as StoreError).cause ?? e);
      if (why !== null || (e instanceof StoreError && !e.unavailable)) {
        s.client.close();
        throw new StoreError(why ?? (e as Error).message);
      }
      s.markStale((e as Error).message);
      if (s.fleet.state.listeners.size === 0 && s.fleet.state.rules.length === 0) {
        // Never synced: serve the TOML, as a first start would; etcd's state replaces it on reconnect.
        s.fleet.state = {
          listeners: new Map(
            seed.listeners.map((l) => [l.name, { maxConnections: l.maxConnections, routes: l.routes }]),
          ),
          rules: seed.rules,
        };
      }
    }
    return s;
  }

  /** The state to start serving from. */
  current(): StoreState {
    return this.fleet.state;
  }

  private markStale(reason: string): void {
    if (this.staleSince === null) {
      this.staleSince = new Date();
      this.logger.warn("etcd unreachable: serving the last-known-good state", {
        since: this.staleSince.toISOString(),
        reason,
      });
    }
    this.staleReason = reason;
  }

  private markFresh(): void {
    if (this.staleSince !== null)
      this.logger.info("etcd reachable again: in sync", {
        revision: this.revision,
        stale_since: this.staleSince.toISOString(),
      });
    this.staleSince = null;
    this.staleReason = "";
  }

  /** Seed what the fleet lacks (etcd_seed.ts), then one consistent read. */
  private async seedAndRead(): Promise<void> {
    await seedFleet(this.client, this.cfg, this.seed, this.logger);
    await this.readAll();
  }

  /** One consistent read of the whole prefix; the state and revision replaced, the cache rewritten. */
  private async readAll(): Promise<void> {
    const r = await bounded(this.cfg.dialTimeoutMs, "read", () => this.client.getAll().prefix(this.cfg.prefix).exec());
    this.fleet.replace(r.kvs.map((kv: IKeyValue) => ({ key: kv.key.toString(), value: kv.value.toString() })));
    this.revision = Number(r.header.revision);
    this.saveCache();
  }

  private saveCache(): void {
    try {
      this.cache.replaceState(this.fleet.state);
    } catch (e) {
      this.logger.error("etcd: cannot write the last-known-good copy", { error: (e as Error).message });
    }
  }

  /** Start applying the fleet's changes to the data plane (built from current()). */
  attach(plane: RuntimeChanges): void {
    this.fleet.plane = plane;
    if (this.stale) void this.reconnect();
    else this.watch();
  }

  private watch(): void {
    if (this.closed) return;
    void this.client
      .watch()
      .prefix(this.cfg.prefix)
      .startRevision(String(this.revision + 1))
      .create()
      .then((w) => {
        if (this.closed) return void w.cancel();
        this.watcher = w;
        w.on("data", (res) => void this.applyBatch(res.events, Number(res.header.revision)));
        w.on("disconnected", (e: Error) => this.markStale(`watch disconnected: ${e?.message ?? "?"}`));
        w.on("connected", () => this.markFresh());
        // Canceled (compacted past our revision) or ended: read everything again.
        w.on("error", (e: Error) => void this.resync(`watch: ${e.message}`));
        w.on("end", () => void this.resync("watch ended"));
      })
      .catch((e: Error) => {
        this.markStale(e.message);
        void this.reconnect();
      });
  }

  /** Re-read everything at a new revision, swap it in, watch from there. */
  private async resync(reason: string): Promise<void> {
    if (this.closed || this.resyncing) return;
    this.resyncing = true;
    this.logger.warn("etcd: re-reading the whole state", { reason, revision: this.revision });
    const w = this.watcher;
    this.watcher = null;
    w?.removeAllListeners();
    void w?.cancel().catch(() => {});
    try {
      await this.reconnect();
    } finally {
      this.resyncing = false;
    }
  }

  /** Until etcd answers: read everything, apply it, watch. */
  private async reconnect(): Promise<void> {
    while (!this.closed) {
      const before = this.fleet.state;
      try {
        await this.readAll();
      } catch (e) {
        this.markStale((e as Error).message);
        await Bun.sleep(RETRY_MS);
        continue;
      }
      try {
        await this.fleet.applyState(before);
      } catch (e) {
        // Not etcd's fault: say so, and keep watching (never a retry loop on a healthy etcd).
        this.logger.error("etcd: applying the fleet's state failed", {
          error: (e as Error).message,
          stack: (e as Error).stack,
        });
      }
      this.markFresh();
      this.wake();
      this.watch();
      return;
    }
  }

  /** One watch response: every event in it applied together. An unexpected error is logged, never thrown. */
  private async applyBatch(events: { type: string; kv: IKeyValue }[], revision: number): Promise<void> {
    try {
      await this.fleet.applyEvents(events);
      this.revision = Math.max(this.revision, revision);
      this.markFresh();
      this.wake();
      this.saveCacheSoon();
    } catch (e) {
      this.logger.error("etcd: applying a change failed", {
        revision,
        error: (e as Error).message,
        stack: (e as Error).stack,
      });
      this.revision = Math.max(this.revision, revision);
      this.wake();
    }
  }

  /** The last-known-good copy, written at most once a second. */
  private saveCacheSoon(): void {
    if (this.cacheTimer !== null) return;
    this.cacheTimer = setTimeout(() => {
      this.cacheTimer = null;
      this.saveCache();
    }, 1000);
  }

  private wake(): void {
    for (let i = this.waiters.length - 1; i >= 0; i--) {
      if (this.waiters[i]!.revision <= this.revision) {
        this.waiters[i]!.resolve();
        this.waiters.splice(i, 1);
      }
    }
  }

  /**
   * After a committed write at `revision`: wait until this instance's watch
   * has applied it. Not applied in time is an error (the change is in etcd
   * and will apply when the watch catches up), never a silent success.
   */
  private async applied(revision: number): Promise<void> {
    if (this.revision >= revision) return;
    const wait = Math.max(APPLY_WAIT_MS, this.cfg.dialTimeoutMs);
    let timer: ReturnType<typeof setTimeout> | null = null;
    const ok = await Promise.race([
      new Promise<boolean>((resolve) => this.waiters.push({ revision, resolve: () => resolve(true) })),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), wait))),
    ]);
    if (timer !== null) clearTimeout(timer);
    if (!ok)
      throw new StoreError(
        `committed to etcd at revision ${revision}, but not applied on this instance within ${wait} ms (its watch is behind: ${this.describe()}); it applies when the watch catches up`,
        { notApplied: true },
      );
  }

  async upsertRoute(listener: string, route: Route): Promise<{ replaced: boolean }> {
    const r = await this.writes.upsertRoute(listener, route);
    await this.applied(r.revision);
    return { replaced: r.replaced };
  }

  async removeRoute(listener: string, route: RouteKey): Promise<boolean> {
    return this.committed(await this.writes.removeRoute(listener, route));
  }

  async addRule(rule: StoredRule, keepEstablished = false): Promise<boolean> {
    return this.committed(await this.writes.addRule(rule, keepEstablished));
  }

  async removeRule(rule: StoredRule): Promise<boolean> {
    return this.committed(await this.writes.removeRule(rule));
  }

  async setMaxConnections(listener: string, n: number): Promise<void> {
    await this.applied(await this.writes.setMaxConnections(listener, n));
  }

  async setBackendState(listener: string, rk: RouteKey, addr: string, state: BackendState): Promise<boolean> {
    return this.committed(await this.writes.setBackendState(listener, rk, addr, state));
  }

  /** A conditional write's outcome: false when its condition failed, else true once applied here. */
  private async committed(revision: number | null): Promise<boolean> {
    if (revision === null) return false;
    await this.applied(revision);
    return true;
  }

  state(): StoreState {
    return this.fleet.state;
  }

  async readApplied(): Promise<{ text: string | null; token: string | null }> {
    const key = keys.applied(this.cfg.prefix);
    const r = await bounded(this.cfg.dialTimeoutMs, "read applied", () => this.client.get(key).exec());
    const kv = r.kvs[0];
    return kv === undefined
      ? { text: null, token: null }
      : { text: kv.value.toString(), token: String(kv.mod_revision) };
  }

  async swapApplied(token: string | null, text: string): Promise<string | null> {
    const key = keys.applied(this.cfg.prefix);
    const r = await bounded(this.cfg.dialTimeoutMs, "write applied", () =>
      (token === null ? this.client.if(key, "Create", "==", 0) : this.client.if(key, "Mod", "==", Number(token)))
        .then(this.client.put(key).value(text))
        .commit(),
    );
    return r.succeeded ? String(r.header.revision) : null;
  }

  rules(): StoredRule[] {
    return this.fleet.state.rules;
  }

  describe(): string {
    if (this.staleSince !== null) return `etcd: stale since ${this.staleSince.toISOString()} (${this.staleReason})`;
    return `etcd: synced at revision ${this.revision}`;
  }

  close(): void {
    this.closed = true;
    if (this.cacheTimer !== null) {
      clearTimeout(this.cacheTimer);
      this.cacheTimer = null;
      this.saveCache();
    }
    void this.watcher?.cancel().catch(() => {});
    this.client.close();
  }
}
