import { describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { statSync } from "node:fs";
import { join } from "node:path";
import { MIGRATIONS } from "../../src/store/migrations";
import { StoreError } from "../../src/store/config_store";
import { type SeedListener, SqliteDatabase } from "../../src/store/sqlite_database";
import { tempDir } from "../helpers/proxy";
import { storedRoute } from "../helpers/routes";

const seedListeners: SeedListener[] = [
  { addr: ":443", maxConnections: 10, routes: [storedRoute("a.example.com", "127.0.0.1:1")] },
  { addr: ":8443", maxConnections: 0, routes: [] },
];

describe("Store", () => {
  test("first open creates a 0600 WAL database, migrates and seeds", () => {
    const path = join(tempDir(), "sub", "p.db");
    const s = SqliteDatabase.open(path);
    expect(s.created).toBe(true);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const r = s.seed(seedListeners, [{ type: "ip", value: "192.0.2.1" }]);
    expect(r.seededListeners).toEqual([":443", ":8443"]);
    expect(s.listener(":443")).toEqual({ maxConnections: 10, routes: [storedRoute("a.example.com", "127.0.0.1:1")] });
    expect(s.rules()).toEqual([{ type: "ip", value: "192.0.2.1" }]);
    s.close();
    const raw = new Database(path);
    expect((raw.query("PRAGMA journal_mode").get() as { journal_mode: string }).journal_mode).toBe("wal");
    expect((raw.query("PRAGMA user_version").get() as { user_version: number }).user_version).toBe(
      MIGRATIONS[MIGRATIONS.length - 1]!.version,
    );
    raw.close();
  });

  test("later opens seed only new listeners, never rules, and keep changes", () => {
    const path = join(tempDir(), "p.db");
    const s1 = SqliteDatabase.open(path);
    s1.seed(seedListeners, [{ type: "ip", value: "192.0.2.1" }]);
    s1.removeRoute(":443", { hostname: "a.example.com", alpn: [] });
    s1.removeRule({ type: "ip", value: "192.0.2.1" });
    s1.close();
    const s2 = SqliteDatabase.open(path);
    expect(s2.created).toBe(false);
    const r = s2.seed(
      [...seedListeners, { addr: ":9443", maxConnections: 1, routes: [storedRoute("n.example", "h:2")] }],
      [{ type: "ip", value: "192.0.2.1" }],
    );
    expect(r.seededListeners).toEqual([":9443"]);
    expect(s2.listener(":443")!.routes).toEqual([]);
    expect(s2.rules()).toEqual([]);
    expect(s2.listener(":9443")!.routes.length).toBe(1);
    s2.close();
  });

  test("upsert, remove, rules, max connections", () => {
    const s = SqliteDatabase.open(join(tempDir(), "p.db"));
    s.seed(seedListeners, []);
    expect(s.upsertRoute(":443", storedRoute("b.example.com", "x:1")).changed).toBe(false);
    const replaced = s.upsertRoute(":443", storedRoute("b.example.com", "x:2"));
    expect(replaced.changed).toBe(true);
    // The result carries the listener's routes as committed.
    expect(replaced.routes).toEqual(s.listener(":443")!.routes);
    expect(s.listener(":443")!.routes.find((r) => r.hostname === "b.example.com")!.backends[0]!.addr).toBe("x:2");
    expect(s.removeRoute(":443", { hostname: "b.example.com", alpn: [] })).toEqual({
      changed: true,
      routes: [storedRoute("a.example.com", "127.0.0.1:1")],
    });
    expect(s.removeRoute(":443", { hostname: "b.example.com", alpn: [] }).changed).toBe(false);
    expect(s.addRule({ type: "cidr", value: "10.0.0.0/8" })).toEqual({
      changed: true,
      rules: [{ type: "cidr", value: "10.0.0.0/8" }],
    });
    expect(s.addRule({ type: "cidr", value: "10.0.0.0/8" }).changed).toBe(false);
    s.setMaxConnections(":8443", 5);
    expect(s.listener(":8443")!.maxConnections).toBe(5);
    expect(() => s.setMaxConnections(":1", 5)).toThrow(StoreError);
    expect(() => s.upsertRoute(":1", storedRoute("a", "b:1"))).toThrow(StoreError);
  });

  test("snapshot writes a consistent copy", () => {
    const dir = tempDir();
    const s = SqliteDatabase.open(join(dir, "p.db"));
    s.seed(seedListeners, [{ type: "country", value: "KP" }]);
    s.snapshot(join(dir, "backups", "snap.db"));
    const copy = SqliteDatabase.open(join(dir, "backups", "snap.db"));
    expect(copy.listener(":443")).toEqual(s.listener(":443"));
    expect(copy.rules()).toEqual([{ type: "country", value: "KP" }]);
  });

  test("a database from a newer schema is refused", () => {
    const path = join(tempDir(), "p.db");
    const raw = new Database(path, { create: true });
    raw.run("PRAGMA user_version = 99");
    raw.close();
    expect(() => SqliteDatabase.open(path)).toThrow(/newer/);
  });
});

describe("migration 2", () => {
  test("older IPv6 spellings of firewall rules are rewritten in canonical form, duplicates merged", () => {
    const path = join(tempDir(), "m.db");
    const raw = new Database(path, { create: true });
    raw.run(MIGRATIONS[0]!.sql);
    raw.run("PRAGMA user_version = 1");
    for (const [t, v] of [
      ["ip", "2001:0DB8::1"],
      ["ip", "2001:db8::1"],
      ["cidr", "2001:DB8:0::/48"],
      ["ip", "192.0.2.1"],
      ["country", "KP"],
    ]) {
      raw.query("INSERT INTO firewall_rules (type, value) VALUES (?, ?)").run(t!, v!);
    }
    raw.close();
    const s = SqliteDatabase.open(path);
    expect(s.rules()).toEqual([
      { type: "cidr", value: "2001:db8::/48" },
      { type: "country", value: "KP" },
      { type: "ip", value: "192.0.2.1" },
      { type: "ip", value: "2001:db8::1" },
    ]);
    s.close();
  });
});
