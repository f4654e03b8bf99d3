// The SQLite store (bun:sqlite): the source of truth for routes, firewall
// rules and listener connection limits once seeded from the TOML on first
// run. WAL journal, foreign keys on, file mode 0600. Every mutation is one
// transaction; a failure throws StoreError and leaves the database unchanged.

import { Database } from "bun:sqlite";
import { chmodSync, closeSync, existsSync, mkdirSync, openSync } from "node:fs";
import { dirname } from "node:path";
import { MIGRATIONS } from "./migrations";

export type RuleType = "ip" | "cidr" | "country";

export interface StoredRoute {
  hostname: string;
  backend: string;
}

export interface StoredRule {
  type: RuleType;
  value: string;
}

export interface SeedListener {
  addr: string;
  maxConnections: number;
  routes: readonly StoredRoute[];
}

export interface SeedResult {
  /** True when the database was created by this open. */
  created: boolean;
  /** Listeners inserted now (all of them on the first run; new TOML listeners later). */
  seededListeners: string[];
}

export class StoreError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "StoreError";
  }
}

export class Store {
  private constructor(
    private readonly db: Database,
    readonly path: string,
    readonly created: boolean,
  ) {}

  /** Open (creating with mode 0600 if needed) and migrate. */
  static open(path: string): Store {
    const created = !existsSync(path);
    try {
      mkdirSync(dirname(path), { recursive: true });
      if (created) closeSync(openSync(path, "a", 0o600));
      // Also narrow a file that someone else created wider.
      chmodSync(path, 0o600);
      const db = new Database(path, { create: true, strict: true });
      db.run("PRAGMA journal_mode = WAL");
      db.run("PRAGMA foreign_keys = ON");
      db.run("PRAGMA busy_timeout = 5000");
      db.run("PRAGMA synchronous = NORMAL");
      migrate(db);
      return new Store(db, path, created);
    } catch (e) {
      if (e instanceof StoreError) throw e;
      throw new StoreError(`cannot open database ${path}: ${(e as Error).message}`, { cause: e });
    }
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
      const insertListener = this.db.query("INSERT INTO listeners (addr, max_connections) VALUES (?, ?) ON CONFLICT (addr) DO NOTHING RETURNING id");
      const insertRoute = this.db.query("INSERT INTO routes (listener_id, hostname, backend) VALUES (?, ?, ?)");
      for (const l of listeners) {
        const row = insertListener.get(l.addr, l.maxConnections) as { id: number } | null;
        if (row === null) continue;
        seeded.push(l.addr);
        for (const r of l.routes) insertRoute.run(row.id, r.hostname, r.backend);
      }
      if (this.created) {
        const insertRule = this.db.query("INSERT INTO firewall_rules (type, value) VALUES (?, ?) ON CONFLICT DO NOTHING");
        for (const r of rules) insertRule.run(r.type, r.value);
      }
    });
    return { created: this.created, seededListeners: seeded };
  }

  listener(addr: string): { maxConnections: number; routes: StoredRoute[] } | null {
    const l = this.db.query("SELECT id, max_connections FROM listeners WHERE addr = ?").get(addr) as { id: number; max_connections: number } | null;
    if (l === null) return null;
    const routes = this.db.query("SELECT hostname, backend FROM routes WHERE listener_id = ? ORDER BY hostname").all(l.id) as StoredRoute[];
    return { maxConnections: l.max_connections, routes };
  }

  rules(): StoredRule[] {
    return this.db.query("SELECT type, value FROM firewall_rules ORDER BY type, value").all() as StoredRule[];
  }

  /** Insert or replace a route; true when it replaced one. */
  upsertRoute(addr: string, route: StoredRoute): boolean {
    return this.write("add route", () => {
      const id = this.listenerId(addr);
      const existed = this.db.query("SELECT 1 FROM routes WHERE listener_id = ? AND hostname = ?").get(id, route.hostname) !== null;
      this.db
        .query(
          `INSERT INTO routes (listener_id, hostname, backend) VALUES (?, ?, ?)
           ON CONFLICT (listener_id, hostname) DO UPDATE SET backend = excluded.backend,
             updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')`,
        )
        .run(id, route.hostname, route.backend);
      return existed;
    });
  }

  /** Delete a route; false when there was none. */
  removeRoute(addr: string, hostname: string): boolean {
    return this.write("remove route", () => {
      const id = this.listenerId(addr);
      return this.db.query("DELETE FROM routes WHERE listener_id = ? AND hostname = ?").run(id, hostname).changes > 0;
    });
  }

  /** Add a rule; false when it was already there. */
  addRule(rule: StoredRule): boolean {
    return this.write("add firewall rule", () => this.db.query("INSERT INTO firewall_rules (type, value) VALUES (?, ?) ON CONFLICT DO NOTHING").run(rule.type, rule.value).changes > 0);
  }

  /** Delete a rule; false when there was none. */
  removeRule(rule: StoredRule): boolean {
    return this.write("remove firewall rule", () => this.db.query("DELETE FROM firewall_rules WHERE type = ? AND value = ?").run(rule.type, rule.value).changes > 0);
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

  /** Run `fn` in an IMMEDIATE transaction; any failure rolls back and becomes a StoreError. */
  private write<T>(what: string, fn: () => T): T {
    try {
      return this.db.transaction(fn).immediate();
    } catch (e) {
      if (e instanceof StoreError) throw e;
      throw new StoreError(`${what}: database write failed: ${(e as Error).message}`, { cause: e });
    }
  }
}

function migrate(db: Database): void {
  const current = (db.query("PRAGMA user_version").get() as { user_version: number }).user_version;
  const latest = MIGRATIONS[MIGRATIONS.length - 1]!.version;
  if (current > latest) {
    throw new StoreError(`database schema version ${current} is newer than this mc-proxy knows (${latest}); use a newer mc-proxy`);
  }
  for (const m of MIGRATIONS) {
    if (m.version <= current) continue;
    db.transaction(() => {
      db.run(m.sql);
      db.run(`PRAGMA user_version = ${m.version}`);
    }).immediate();
  }
}
