// A database written by the previous release opens and migrates forward,
// keeping every row (migrations are forward-only; see tests/fixtures/README.md).
import { expect, test } from "bun:test";
import { copyFileSync } from "node:fs";
import { join } from "node:path";
import { MIGRATIONS } from "../../src/store/migrations";
import { SqliteDatabase } from "../../src/store/sqlite_database";
import { tempDir } from "../helpers/proxy";
import { storedRoute } from "../helpers/routes";

test("a database from release 0.1.0 opens, migrates and keeps its listeners, routes and rules", () => {
  const path = join(tempDir(), "old.db");
  copyFileSync(join(import.meta.dir, "../fixtures/release-0.1.0.db"), path);
  const s = SqliteDatabase.open(path);
  try {
    expect(s.created).toBe(false);
    expect(s.listener("127.0.0.1:25443")).toEqual({
      maxConnections: 7,
      routes: [storedRoute("*.wild.example.com", "127.0.0.1:25445"), storedRoute("alpha.example.com", "127.0.0.1:25444")],
    });
    expect(s.listener("127.0.0.1:25446")).toEqual({ maxConnections: 0, routes: [] });
    // Migrated to the current schema: routes from 0.1.0 send no PROXY header.
    const v = (s as unknown as { db: import("bun:sqlite").Database }).db.query("PRAGMA user_version").get() as { user_version: number };
    expect(v.user_version).toBe(MIGRATIONS[MIGRATIONS.length - 1]!.version);
    expect(s.rules()).toEqual([
      { type: "cidr", value: "198.51.100.0/24" },
      { type: "cidr", value: "2001:db8::/32" },
      { type: "ip", value: "192.0.2.1" },
    ]);
  } finally {
    s.close();
  }
});
