// The SQLite database (bun:sqlite): the source of truth for routes, firewall
// rules and listener connection limits once seeded from the TOML on first
// run. WAL journal, foreign keys on, file mode 0600. Every mutation is one
// transaction; a failure throws StoreError and leaves the database unchanged.

import { Database, constants } from "bun:sqlite";
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, statSync } from "node:fs";
import { dirname } from "node:path";
import type { BackendState } from "../routing/backend_table";
import { alpnKey, routeName } from "../routing/route";
import {
  type ListenerState,
  type RouteKey,
  StoreError,
  type StoreState,
  type StoredRoute,
  type StoredRule,
} from "./config_store";
import { MIGRATIONS, RESTORE_HINT, migrate, quickCheck } from "./migrations";
import { decodeRoute, encodeRoute, keepStates } from "./route_codec";

/** A route mutation's result, with the listener's routes as committed (read in the same transaction). */
export interface RoutesAfter {
  changed: boolean;
  routes: StoredRoute[];
}

/** A rule mutation's result, with every rule as committed. */
export interface RulesAfter {
  changed: boolean;
  rules: StoredRule[];
}

export interface SeedResult {
  /** True when the database was created by this open. */
  created: boolean;
  /** Listeners inserted now (all of them on the first run; new TOML listeners later). */
  seededListeners: string[];
}

/** How long a write at start waits for another process's lock. */
const START_BUSY_TIMEOUT_MS = 5000;

export type StoreRole = "sqlite" | "etcd-cache";

export interface SeedListener {
  addr: string;
  maxConnections: number;
  routes: readonly StoredRoute[];
}

export class SqliteDatabase {
  private constructor(
    private readonly db: Database,
    readonly path: string,
    readonly created: boolean,
  ) {}

  /**
   * Open (creating with mode 0600 if needed), check and migrate. An existing
   * file is not touched (not even its mode) until SQLite has opened it and
   * `PRAGMA quick_check` has passed. Every error names the file and says
   * what to do about it.
   */
  static open(path: string): SqliteDatabase {
    const created = !existsSync(path);
    let db: Database | null = null;
    try {
      mkdirSync(dirname(path), { recursive: true });
      if (created) closeSync(openSync(path, "a", 0o600));
      db = new Database(path, { create: true, strict: true });
      // At start nothing is served yet: wait for another process's lock (an
      // operator's sqlite3 shell) rather than fail. serving() lowers it.
      db.run(`PRAGMA busy_timeout = ${START_BUSY_TIMEOUT_MS}`);
      if (!created) quickCheck(db, path);
      db.run("PRAGMA journal_mode = WAL");
      db.run("PRAGMA foreign_keys = ON");
      db.run("PRAGMA synchronous = NORMAL");
      migrate(db, path);
      // Validated: now narrow a file someone else created wider.
      chmodSync(path, 0o600);
      return new SqliteDatabase(db, path, created);
    } catch (e) {
      db?.close();
      if (e instanceof StoreError) throw e;
      throw new StoreError(`database ${path}: cannot open: ${(e as Error).message}. ${RESTORE_HINT}`, { cause: e });
    }
  }

  /**
   * Open an existing file to read only (no migration, no mode change, no
   * file created): the database, or why it cannot be read as this release's
   * schema (`newer`: written by a newer release, which a start refuses too).
   * With no write-ahead log beside it (no process has it open) it is opened
   * immutable, so not even the -wal and -shm files appear.
   */
  static openReadOnly(path: string): SqliteDatabase | { error: string; newer: boolean } {
    let db: Database | null = null;
    try {
      if (!statSync(path).isFile()) return { error: "not a regular file", newer: false };
      const quiet = !existsSync(`${path}-wal`);
      db = quiet
        ? new Database(
            `file:${path.split("/").map(encodeURIComponent).join("/")}?immutable=1`,
            constants.SQLITE_OPEN_READONLY | constants.SQLITE_OPEN_URI,
          )
        : new Database(path, { readonly: true, strict: true });
      const version = (db.query("PRAGMA user_version").get() as { user_version: number }).user_version;
      const latest = MIGRATIONS[MIGRATIONS.length - 1]!.version;
      if (version !== latest) {
        db.close();
        return version > latest
          ? {
              error: `schema version ${version} is newer than this mc-proxy knows (${latest}); use a newer mc-proxy`,
              newer: true,
            }
          : {
              error: `schema ${version}, not this release's ${latest} (the first start of this release migrates it)`,
              newer: false,
            };
      }
      return new SqliteDatabase(db, path, false);
    } catch (e) {
      db?.close();
      return { error: `cannot read it: ${(e as Error).message}`, newer: false };
    }
  }

  /**
   * From now on a write never waits for another process's lock: it fails at
   * once with a busy StoreError, and the admin plane retries it off the event
   * loop (a 5 s busy_timeout inside the loop froze every connection).
   */
  serving(): void {
    this.db.run("PRAGMA busy_timeout = 0");
  }

  close(): void {
    this.db.close();
  }

  /**
   * Seed what the database does not have yet: every listener on first run;
   * afterwards only listeners new to the TOML (with their routes). Firewall
   * rules are seeded only when the database is created.
   */
  seed(listeners: readonly SeedListener[], rules: readonly StoredRule[]): SeedResult {
    const seeded: string[] = [];
    this.write("seed", () => {
      const insertListener = this.db.query(
        "INSERT INTO listeners (addr, max_connections) VALUES (?, ?) ON CONFLICT (addr) DO NOTHING RETURNING id",
      );

      for (const l of listeners) {
        const row = insertListener.get(l.addr, l.maxConnections) as { id: number } | null;
        if (row === null) continue;
        seeded.push(l.addr);
        for (const r of l.routes) this.putRoute(row.id, r);
      }
      if (this.created) {
        const insertRule = this.db.query(
          "INSERT INTO firewall_rules (type, value) VALUES (?, ?) ON CONFLICT DO NOTHING",
        );
        for (const r of rules) insertRule.run(r.type, r.value);
      }
    });
    return { created: this.created, seededListeners: seeded };
  }

  listener(addr: string): { maxConnections: number; routes: StoredRoute[] } | null {
    const l = this.db.query("SELECT id, max_connections FROM listeners WHERE addr = ?").get(addr) as {
      id: number;
      max_connections: number;
    } | null;
    if (l === null) return null;
    return { maxConnections: l.max_connections, routes: this.routesOf(l.id) };
  }

  /** A listener's routes, each decoded from its value (route_codec.ts); a value that breaks the rules is a damaged file. */
  private routesOf(listenerId: number): StoredRoute[] {
    const rows = this.db
      .query("SELECT hostname, alpn, value FROM routes WHERE listener_id = ? ORDER BY hostname, alpn")
      .all(listenerId) as { hostname: string; alpn: string; value: string }[];
    return rows.map((r) => {
      const key = { hostname: r.hostname, alpn: r.alpn === "" ? [] : r.alpn.split(",") };
      const route = decodeRoute(key, r.value);
      if (!route.ok)
        throw new StoreError(
          `database ${this.path}: route ${JSON.stringify(routeName(key))}: ${route.error}. ${RESTORE_HINT}`,
        );
      return route.value;
    });
  }

  /** One route as stored, or undefined. */
  private routeOf(listenerId: number, key: RouteKey): StoredRoute | undefined {
    const alpn = alpnKey(key.alpn);
    const row = this.db
      .query("SELECT value FROM routes WHERE listener_id = ? AND hostname = ? AND alpn = ?")
      .get(listenerId, key.hostname, alpn) as { value: string } | null;
    if (row === null) return undefined;
    const route = decodeRoute(key, row.value);
    if (!route.ok)
      throw new StoreError(
        `database ${this.path}: route ${JSON.stringify(routeName(key))}: ${route.error}. ${RESTORE_HINT}`,
      );
    return route.value;
  }

  /** Insert or replace a route's value. A backend that stays in the pool keeps its operator state; a new one takes its own (enabled when absent). */
  private putRoute(listenerId: number, r: StoredRoute): void {
    const value = encodeRoute(keepStates(r, this.routeOf(listenerId, r)));
    this.db
      .query(
        `INSERT INTO routes (listener_id, hostname, alpn, value) VALUES (?, ?, ?, ?)
         ON CONFLICT (listener_id, hostname, alpn) DO UPDATE SET value = excluded.value, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')`,
      )
      .run(listenerId, r.hostname, alpnKey(r.alpn), value);
  }

  /** Set one backend's operator state; `changed` is false when the route has no such backend. */
  setBackendState(addr: string, route: RouteKey, backend: string, state: BackendState): RoutesAfter {
    return this.write("set backend state", () => {
      const id = this.listenerId(addr);
      const r = this.routeOf(id, route);
      const changed = r?.backends.some((b) => b.addr === backend) === true;
      if (r !== undefined && changed) {
        const next = { ...r, backends: r.backends.map((b) => (b.addr === backend ? { ...b, state } : b)) };
        this.db
          .query("UPDATE routes SET value = ? WHERE listener_id = ? AND hostname = ? AND alpn = ?")
          .run(encodeRoute(next), id, r.hostname, alpnKey(r.alpn));
      }
      return { changed, routes: this.routesOf(id) };
    });
  }

  /** Everything the store holds: every listener (by name) with its routes, and the rules. */
  state(): StoreState {
    const rows = this.db.query("SELECT id, addr, max_connections FROM listeners ORDER BY addr").all() as {
      id: number;
      addr: string;
      max_connections: number;
    }[];
    const listeners = new Map<string, ListenerState>();
    for (const r of rows) listeners.set(r.addr, { maxConnections: r.max_connections, routes: this.routesOf(r.id) });
    return { listeners, rules: this.rules() };
  }

  /** Make the store hold exactly `state` (one transaction): etcd's last-known-good copy, or a snapshot of a fleet. */
  replaceState(state: StoreState): void {
    this.write("replace state", () => {
      this.db.run("DELETE FROM listeners");
      this.db.run("DELETE FROM firewall_rules");
      const insertListener = this.db.query("INSERT INTO listeners (addr, max_connections) VALUES (?, ?) RETURNING id");
      for (const [name, l] of state.listeners) {
        const row = insertListener.get(name, l.maxConnections) as { id: number };
        for (const r of l.routes) this.putRoute(row.id, r);
      }
      const insertRule = this.db.query("INSERT INTO firewall_rules (type, value) VALUES (?, ?) ON CONFLICT DO NOTHING");
      for (const r of state.rules) insertRule.run(r.type, r.value);
    });
  }

  rules(): StoredRule[] {
    return this.db.query("SELECT type, value FROM firewall_rules ORDER BY type, value").all() as StoredRule[];
  }

  /**
   * What this file is: "sqlite" (the store itself) or "etcd-cache" (a
   * fleet's last-known-good copy); null for a file written before the role
   * was kept (schema 3 and older).
   */
  role(): StoreRole | null {
    const r = this.db.query("SELECT value FROM meta WHERE key = 'role'").get() as { value: string } | null;
    return r === null ? null : (r.value as StoreRole);
  }

  setRole(role: StoreRole): void {
    this.write("set role", () =>
      this.db
        .query(
          "INSERT INTO meta (key, value) VALUES ('role', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .run(role),
    );
  }

  /** A meta value (null when unset). */
  meta(key: string): string | null {
    const r = this.db.query("SELECT value FROM meta WHERE key = ?").get(key) as { value: string } | null;
    return r === null ? null : r.value;
  }

  /** Set a meta value if it still is `expected` (null: unset); false when it is not (one transaction). */
  swapMeta(key: string, expected: string | null, value: string): boolean {
    return this.write(`set ${key}`, () => {
      if (this.meta(key) !== expected) return false;
      this.db
        .query("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
        .run(key, value);
      return true;
    });
  }

  deleteMeta(key: string): void {
    this.write(`clear ${key}`, () => this.db.query("DELETE FROM meta WHERE key = ?").run(key));
  }

  /** True when it holds any listener, route or rule. */
  get holdsState(): boolean {
    return this.db.query("SELECT 1 FROM listeners UNION ALL SELECT 1 FROM firewall_rules LIMIT 1").get() !== null;
  }

  /** Insert or replace a route; `changed` is true when it replaced one. */
  upsertRoute(addr: string, route: StoredRoute): RoutesAfter {
    return this.write("add route", () => {
      const id = this.listenerId(addr);
      const existed =
        this.db
          .query("SELECT 1 FROM routes WHERE listener_id = ? AND hostname = ? AND alpn = ?")
          .get(id, route.hostname, alpnKey(route.alpn)) !== null;
      this.putRoute(id, route);
      return { changed: existed, routes: this.routesOf(id) };
    });
  }

  /** Delete a route; `changed` is false when there was none. */
  removeRoute(addr: string, route: RouteKey): RoutesAfter {
    return this.write("remove route", () => {
      const id = this.listenerId(addr);
      const changed =
        this.db
          .query("DELETE FROM routes WHERE listener_id = ? AND hostname = ? AND alpn = ?")
          .run(id, route.hostname, alpnKey(route.alpn)).changes > 0;
      return { changed, routes: this.routesOf(id) };
    });
  }

  /** Add a rule; `changed` is false when it was already there. */
  addRule(rule: StoredRule): RulesAfter {
    return this.write("add firewall rule", () => {
      const changed =
        this.db
          .query("INSERT INTO firewall_rules (type, value) VALUES (?, ?) ON CONFLICT DO NOTHING")
          .run(rule.type, rule.value).changes > 0;
      return { changed, rules: this.rules() };
    });
  }

  /** Delete a rule; `changed` is false when there was none. */
  removeRule(rule: StoredRule): RulesAfter {
    return this.write("remove firewall rule", () => {
      const changed =
        this.db.query("DELETE FROM firewall_rules WHERE type = ? AND value = ?").run(rule.type, rule.value).changes > 0;
      return { changed, rules: this.rules() };
    });
  }

  setMaxConnections(addr: string, max: number): void {
    this.write("set max_connections", () => {
      this.listenerId(addr);
      this.db.query("UPDATE listeners SET max_connections = ? WHERE addr = ?").run(max, addr);
    });
  }

  /** A consistent copy of the database in a new file (SQLite VACUUM INTO). */
  snapshot(dest: string): void {
    try {
      mkdirSync(dirname(dest), { recursive: true });
      this.db.query("VACUUM INTO ?").run(dest);
      chmodSync(dest, 0o600);
    } catch (e) {
      throw new StoreError(`snapshot to ${dest} failed: ${(e as Error).message}`, { cause: e });
    }
  }

  private listenerId(addr: string): number {
    const row = this.db.query("SELECT id FROM listeners WHERE addr = ?").get(addr) as { id: number } | null;
    if (row === null) throw new StoreError(`listener ${addr} is not in the database`);
    return row.id;
  }

  /** Run `fn` in an IMMEDIATE transaction; any failure rolls back and becomes a StoreError naming the file. */
  private write<T>(what: string, fn: () => T): T {
    try {
      return this.db.transaction(fn).immediate();
    } catch (e) {
      if (e instanceof StoreError) throw e;
      const code = (e as { code?: string }).code;
      const busy = code === "SQLITE_BUSY" || code === "SQLITE_LOCKED";
      const hint = busy
        ? "another process holds a write lock on it; retry"
        : `nothing was changed. ${RESTORE_HINT} if this repeats`;
      throw new StoreError(`${what}: database ${this.path}: write failed: ${(e as Error).message} (${hint})`, {
        cause: e,
        busy,
      });
    }
  }
}
