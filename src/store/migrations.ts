// Forward-only, numbered schema migrations. The database's PRAGMA
// user_version is the number of the last one applied. Never edit a released
// migration: add the next number. Applied (and the file checked first) by
// migrate and quickCheck below.

import type { Database } from "bun:sqlite";
import { parseRule } from "../firewall/rule_set";
import { StoreError } from "./config_store";

/** Where an operator is sent when the database file itself is the problem. */
export const RESTORE_HINT = `If the file is damaged, stop mc-proxy and restore the newest snapshot (docs/ADMIN_API.md: "Backups and restore")`;

export interface Migration {
  version: number;
  description: string;
  sql: string;
  /** A data step after the SQL, in the same transaction. */
  run?: (db: Database) => void;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: "listeners, routes, firewall rules",
    sql: `
      CREATE TABLE listeners (
        id              INTEGER PRIMARY KEY,
        addr            TEXT NOT NULL UNIQUE,
        max_connections INTEGER NOT NULL DEFAULT 0 CHECK (max_connections >= 0),
        created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
      ) STRICT;
      CREATE TABLE routes (
        listener_id INTEGER NOT NULL REFERENCES listeners(id) ON DELETE CASCADE,
        hostname    TEXT NOT NULL,
        backend     TEXT NOT NULL,
        updated_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        PRIMARY KEY (listener_id, hostname)
      ) STRICT;
      CREATE TABLE firewall_rules (
        type       TEXT NOT NULL CHECK (type IN ('ip', 'cidr', 'country')),
        value      TEXT NOT NULL,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        PRIMARY KEY (type, value)
      ) STRICT;
    `,
  },
  {
    version: 2,
    description: "routes send a PROXY protocol header (off, v1, v2); firewall rule addresses in canonical form",
    sql: `
      ALTER TABLE routes ADD COLUMN send_proxy_protocol TEXT NOT NULL DEFAULT 'off'
        CHECK (send_proxy_protocol IN ('off', 'v1', 'v2'));
    `,
    // Addresses are compared as text: from this version on they are stored as
    // ipaddr.js writes them (RFC 5952 for IPv6), so rewrite older spellings
    // ("2001:0DB8::1") once, dropping any that become duplicates.
    run: (db) => {
      const rows = db.query("SELECT type, value FROM firewall_rules WHERE type IN ('ip', 'cidr')").all() as {
        type: string;
        value: string;
      }[];
      for (const r of rows) {
        const parsed = parseRule(r.type as "ip" | "cidr", r.value);
        const canonical = parsed.ok ? parsed.value : null;
        if (canonical === null || canonical === r.value) continue;
        db.query("DELETE FROM firewall_rules WHERE type = ? AND value = ?").run(r.type, r.value);
        db.query("INSERT INTO firewall_rules (type, value) VALUES (?, ?) ON CONFLICT DO NOTHING").run(
          r.type,
          canonical,
        );
      }
    },
  },
  {
    version: 3,
    description: "routes balance over pools of backends (weights, backups, operator state), with health-check settings",
    sql: `
      CREATE TABLE route_backends (
        listener_id INTEGER NOT NULL,
        hostname    TEXT NOT NULL,
        position    INTEGER NOT NULL,
        addr        TEXT NOT NULL,
        weight      INTEGER NOT NULL DEFAULT 1 CHECK (weight BETWEEN 1 AND 256),
        backup      INTEGER NOT NULL DEFAULT 0 CHECK (backup IN (0, 1)),
        state       TEXT NOT NULL DEFAULT 'enabled' CHECK (state IN ('enabled', 'drain', 'disabled')),
        PRIMARY KEY (listener_id, hostname, addr),
        FOREIGN KEY (listener_id, hostname) REFERENCES routes (listener_id, hostname) ON DELETE CASCADE
      ) STRICT;
      INSERT INTO route_backends (listener_id, hostname, position, addr) SELECT listener_id, hostname, 0, backend FROM routes;
      ALTER TABLE routes ADD COLUMN balance TEXT NOT NULL DEFAULT 'round_robin'
        CHECK (balance IN ('round_robin', 'least_connections', 'source_hash'));
      ALTER TABLE routes ADD COLUMN health_check TEXT CHECK (health_check IS NULL OR health_check IN ('off', 'tcp', 'tls'));
      -- Per-route overrides of [proxy] (health_check_interval_ms, _timeout_ms, _rise, _fall, retries) as JSON.
      ALTER TABLE routes ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
    `,
  },
  {
    version: 4,
    description: "what the file is: the SQLite store itself, or etcd's last-known-good copy (meta.role)",
    sql: `
      CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
      ) STRICT;
    `,
  },
  {
    version: 5,
    description:
      "a hostname may have routes per ALPN protocol list (routes.alpn in the key); per-route allow, deny and max_connections in settings",
    // SQLite cannot change a primary key in place: build the new tables,
    // copy, drop the old (children first) and rename; a rename rewrites the
    // foreign key that names the renamed table.
    sql: `
      CREATE TABLE routes_v5 (
        listener_id         INTEGER NOT NULL REFERENCES listeners(id) ON DELETE CASCADE,
        hostname            TEXT NOT NULL,
        alpn                TEXT NOT NULL DEFAULT '',
        backend             TEXT NOT NULL,
        updated_at          TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        send_proxy_protocol TEXT NOT NULL DEFAULT 'off' CHECK (send_proxy_protocol IN ('off', 'v1', 'v2')),
        balance             TEXT NOT NULL DEFAULT 'round_robin' CHECK (balance IN ('round_robin', 'least_connections', 'source_hash')),
        health_check        TEXT CHECK (health_check IS NULL OR health_check IN ('off', 'tcp', 'tls')),
        settings            TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY (listener_id, hostname, alpn)
      ) STRICT;
      INSERT INTO routes_v5 (listener_id, hostname, alpn, backend, updated_at, send_proxy_protocol, balance, health_check, settings)
        SELECT listener_id, hostname, '', backend, updated_at, send_proxy_protocol, balance, health_check, settings FROM routes;
      CREATE TABLE route_backends_v5 (
        listener_id INTEGER NOT NULL,
        hostname    TEXT NOT NULL,
        alpn        TEXT NOT NULL DEFAULT '',
        position    INTEGER NOT NULL,
        addr        TEXT NOT NULL,
        weight      INTEGER NOT NULL DEFAULT 1 CHECK (weight BETWEEN 1 AND 256),
        backup      INTEGER NOT NULL DEFAULT 0 CHECK (backup IN (0, 1)),
        state       TEXT NOT NULL DEFAULT 'enabled' CHECK (state IN ('enabled', 'drain', 'disabled')),
        PRIMARY KEY (listener_id, hostname, alpn, addr),
        FOREIGN KEY (listener_id, hostname, alpn) REFERENCES routes_v5 (listener_id, hostname, alpn) ON DELETE CASCADE
      ) STRICT;
      INSERT INTO route_backends_v5 (listener_id, hostname, alpn, position, addr, weight, backup, state)
        SELECT listener_id, hostname, '', position, addr, weight, backup, state FROM route_backends;
      DROP TABLE route_backends;
      DROP TABLE routes;
      ALTER TABLE routes_v5 RENAME TO routes;
      ALTER TABLE route_backends_v5 RENAME TO route_backends;
    `,
  },
  {
    version: 6,
    description: "firewall rules on the JA4 fingerprint (type ja4)",
    sql: `
      CREATE TABLE firewall_rules_v6 (
        type       TEXT NOT NULL CHECK (type IN ('ip', 'cidr', 'country', 'ja4')),
        value      TEXT NOT NULL,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        PRIMARY KEY (type, value)
      ) STRICT;
      INSERT INTO firewall_rules_v6 (type, value, created_at) SELECT type, value, created_at FROM firewall_rules;
      DROP TABLE firewall_rules;
      ALTER TABLE firewall_rules_v6 RENAME TO firewall_rules;
    `,
  },
  {
    version: 7,
    description:
      "a route is one JSON value (routes.value), the shape etcd keeps: its pool with each backend's state, and its options",
    sql: `
      CREATE TABLE routes_v7 (
        listener_id INTEGER NOT NULL REFERENCES listeners(id) ON DELETE CASCADE,
        hostname    TEXT NOT NULL,
        alpn        TEXT NOT NULL DEFAULT '',
        value       TEXT NOT NULL CHECK (json_valid(value)),
        updated_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        PRIMARY KEY (listener_id, hostname, alpn)
      ) STRICT;
    `,
    // Each route's columns, settings and backends as one value of version 1
    // (2 with allow, deny or max_connections), written out here so this
    // step never changes with the codec (store/route_codec.ts reads it).
    run: (db) => {
      const rows = db
        .query(
          "SELECT listener_id, hostname, alpn, updated_at, send_proxy_protocol, balance, health_check, settings FROM routes",
        )
        .all() as Record<string, string | number | null>[];
      const pools = db
        .query("SELECT listener_id, hostname, alpn, addr, weight, backup, state FROM route_backends ORDER BY position")
        .all() as Record<string, string | number>[];
      const put = db.query(
        "INSERT INTO routes_v7 (listener_id, hostname, alpn, value, updated_at) VALUES (?, ?, ?, ?, ?)",
      );
      for (const r of rows) {
        const s = JSON.parse(r.settings as string) as Record<string, unknown>;
        const check: Record<string, unknown> = {};
        for (const [k, from] of [
          ["intervalMs", "health_check_interval_ms"],
          ["timeoutMs", "health_check_timeout_ms"],
          ["rise", "health_check_rise"],
          ["fall", "health_check_fall"],
        ] as const)
          if (s[from] !== undefined) check[k] = s[from];
        const policy = s.allow !== undefined || s.deny !== undefined || s.max_connections !== undefined;
        const backends = pools
          .filter((b) => b.listener_id === r.listener_id && b.hostname === r.hostname && b.alpn === r.alpn)
          .map((b) => ({ addr: b.addr, weight: b.weight, backup: b.backup === 1, state: b.state }));
        const value = {
          version: policy ? 2 : 1,
          allow: s.allow,
          deny: s.deny,
          max_connections: s.max_connections,
          balance: r.balance,
          health_check: r.health_check,
          check,
          retries: s.retries ?? null,
          connect_timeout_ms: s.connect_timeout_ms ?? null,
          send_proxy_protocol: r.send_proxy_protocol,
          backends,
        };
        put.run(
          r.listener_id as number,
          r.hostname as string,
          r.alpn as string,
          JSON.stringify(value),
          r.updated_at as string,
        );
      }
      db.run("DROP TABLE route_backends");
      db.run("DROP TABLE routes");
      db.run("ALTER TABLE routes_v7 RENAME TO routes");
    },
  },
];

/**
 * `PRAGMA quick_check`: every page and index entry is read once, without
 * the cross-checks of integrity_check (measured on a 10,000-route database:
 * see docs/ADMIN_API.md "Persistence").
 */
export function quickCheck(db: Database, path: string): void {
  let rows: { quick_check: string }[];
  try {
    rows = db.query("PRAGMA quick_check").all() as { quick_check: string }[];
  } catch (e) {
    throw new StoreError(`database ${path}: failed its integrity check (${(e as Error).message}). ${RESTORE_HINT}`, {
      cause: e,
    });
  }
  if (rows.length === 1 && rows[0]!.quick_check === "ok") return;
  const found = rows
    .slice(0, 3)
    .map((r) => r.quick_check)
    .join("; ");
  throw new StoreError(`database ${path}: failed its integrity check (${found}). ${RESTORE_HINT}`);
}

export function migrate(db: Database, path: string): void {
  const current = (db.query("PRAGMA user_version").get() as { user_version: number }).user_version;
  const latest = MIGRATIONS[MIGRATIONS.length - 1]!.version;
  if (current > latest) {
    throw new StoreError(
      `database ${path}: schema version ${current} is newer than this mc-proxy knows (${latest}); use a newer mc-proxy, or restore a snapshot taken by this version (docs/ADMIN_API.md: "Backups and restore")`,
    );
  }
  for (const m of MIGRATIONS) {
    if (m.version <= current) continue;
    db.transaction(() => {
      db.run(m.sql);
      m.run?.(db);
      db.run(`PRAGMA user_version = ${m.version}`);
    }).immediate();
  }
}
