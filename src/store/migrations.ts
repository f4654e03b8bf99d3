// Forward-only, numbered schema migrations. The database's PRAGMA
// user_version is the number of the last one applied. Never edit a released
// migration: add the next number.

export interface Migration {
  version: number;
  description: string;
  sql: string;
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
];
