// A database written by the previous release opens and migrates forward,
// keeping every row (migrations are forward-only; see tests/fixtures/README.md).
import { expect, test } from "bun:test";
import { copyFileSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { loadRoutedConfig } from "../../src/routing/route_config";
import { MIGRATIONS } from "../../src/store/migrations";
import { stateFrom } from "../../src/store/etcd_layout";
import { decodeRoute, encodeRoute } from "../../src/store/route_codec";
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
      routes: [
        storedRoute("*.wild.example.com", "127.0.0.1:25445"),
        storedRoute("alpha.example.com", "127.0.0.1:25444"),
      ],
    });
    expect(s.listener("127.0.0.1:25446")).toEqual({ maxConnections: 0, routes: [] });
    // Migrated to the current schema: routes from 0.1.0 send no PROXY header.
    const v = (s as unknown as { db: import("bun:sqlite").Database }).db.query("PRAGMA user_version").get() as {
      user_version: number;
    };
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

test("a database from release 0.2.0 (pools, settings, a drained backend) opens, migrates and keeps every field", () => {
  const path = join(tempDir(), "old.db");
  copyFileSync(join(import.meta.dir, "../fixtures/release-0.2.0.db"), path);
  const s = SqliteDatabase.open(path);
  try {
    const l = s.listener("127.0.0.1:25443")!;
    expect(l.maxConnections).toBe(7);
    expect(l.routes.map((r) => r.hostname)).toEqual(["*.wild.example.com", "alpha.example.com", "pool.example.com"]);
    expect(l.routes[1]).toEqual(storedRoute("alpha.example.com", "127.0.0.1:25444", "v2"));
    expect(l.routes[2]).toEqual({
      hostname: "pool.example.com",
      alpn: [],
      allow: [],
      deny: [],
      maxConnections: 0,
      backends: [
        { addr: "127.0.0.1:25447", weight: 1, backup: false, state: "enabled" },
        { addr: "127.0.0.1:25448", weight: 3, backup: false, state: "drain" },
        { addr: "127.0.0.1:25449", weight: 1, backup: true, state: "enabled" },
      ],
      balance: "least_connections",
      healthCheck: "tls",
      check: { intervalMs: 3000, timeoutMs: undefined, rise: 3, fall: undefined },
      retries: 1,
      connectTimeoutMs: 2000,
      sendProxyProtocol: "off",
    });
    expect(s.role()).toBe("sqlite");
    // The new key: an ALPN route beside the plain one, and removing one leaves the other.
    const acme = {
      ...storedRoute("pool.example.com", "127.0.0.1:9"),
      alpn: ["acme-tls/1"],
      allow: ["10.0.0.0/8"],
      maxConnections: 3,
    };
    expect(s.upsertRoute("127.0.0.1:25443", acme).changed).toBe(false);
    expect(
      s
        .listener("127.0.0.1:25443")!
        .routes.filter((r) => r.hostname === "pool.example.com")
        .map((r) => r.alpn),
    ).toEqual([[], ["acme-tls/1"]]);
    expect(s.listener("127.0.0.1:25443")!.routes.find((r) => r.alpn.length > 0)).toEqual(acme);
    expect(s.removeRoute("127.0.0.1:25443", { hostname: "pool.example.com", alpn: [] }).changed).toBe(true);
    expect(s.listener("127.0.0.1:25443")!.routes.filter((r) => r.hostname === "pool.example.com")).toEqual([acme]);
    // The rebuilt tables keep their foreign keys: the removed route's backends (in its value) went with it.
    const db = (s as unknown as { db: import("bun:sqlite").Database }).db;
    expect(db.query("PRAGMA foreign_key_check").all()).toEqual([]);
    expect(db.query("SELECT count(*) AS n FROM routes WHERE hostname = 'pool.example.com'").get()).toEqual({ n: 1 });
    expect(db.query("SELECT count(*) AS n FROM routes WHERE value LIKE '%127.0.0.1:25447%'").get()).toEqual({ n: 0 });
  } finally {
    s.close();
  }
});

test("the config files of releases 0.1.0 and 0.2.0 still load, their routes plain (no ALPN, no policy)", () => {
  for (const name of ["release-0.1.0.toml", "release-0.2.0.toml"]) {
    const cfg = loadRoutedConfig(join(import.meta.dir, "../fixtures", name), {});
    expect(cfg.listeners.length).toBe(2);
    for (const r of cfg.listeners[0]!.routes)
      expect({ name, alpn: r.alpn, allow: r.allow, deny: r.deny, max: r.maxConnections }).toEqual({
        name,
        alpn: [],
        allow: [],
        deny: [],
        max: 0,
      });
  }
});

/** The routes commit 3be55fa (the last before routes were one stored value) wrote, in SQLite and in etcd. */
const WRITTEN_BY_3BE55FA = [
  { ...storedRoute("alpha.example.com", "127.0.0.1:25444") },
  { ...storedRoute("alpha.example.com", "127.0.0.1:25450"), alpn: ["acme-tls/1"] },
  {
    ...storedRoute("policy.example.com", "127.0.0.1:25451", "v1"),
    alpn: ["h2", "http/1.1"],
    allow: ["10.0.0.0/8", "2001:db8::/32"],
    deny: ["10.1.0.0/16"],
    maxConnections: 5,
  },
  {
    ...storedRoute("pool.example.com", "127.0.0.1:25447", "v2"),
    backends: [
      { addr: "127.0.0.1:25447", weight: 1, backup: false, state: "enabled" },
      { addr: "127.0.0.1:25448", weight: 3, backup: false, state: "drain" },
      { addr: "127.0.0.1:25449", weight: 1, backup: true, state: "enabled" },
    ],
    balance: "least_connections",
    healthCheck: "tls",
    check: { intervalMs: 3000, rise: 3 },
    retries: 1,
    connectTimeoutMs: 2000,
  },
];

test("a schema 6 database (commit 3be55fa: ALPN routes, policy, per-route settings) migrates to one value per route, every field kept", () => {
  const path = join(tempDir(), "old.db");
  copyFileSync(join(import.meta.dir, "../fixtures/schema-6-3be55fa.db"), path);
  const s = SqliteDatabase.open(path);
  try {
    const l = s.listener("127.0.0.1:25443")!;
    expect(l.maxConnections).toBe(7);
    expect(l.routes).toEqual(WRITTEN_BY_3BE55FA as never);
    expect(s.listener("public")).toEqual({ maxConnections: 0, routes: [] });
    expect(s.rules().map((r) => r.type)).toEqual(["cidr", "country", "ip", "ja4"]);
    // Stored as etcd stores it: the same value, readable by the one codec.
    const db = (s as unknown as { db: import("bun:sqlite").Database }).db;
    const policy = db.query("SELECT value FROM routes WHERE hostname = 'policy.example.com'").get() as {
      value: string;
    };
    expect(JSON.parse(policy.value)).toMatchObject({
      version: 2,
      allow: ["10.0.0.0/8", "2001:db8::/32"],
      max_connections: 5,
    });
    expect(decodeRoute({ hostname: "policy.example.com", alpn: ["h2", "http/1.1"] }, policy.value)).toEqual({
      ok: true,
      value: WRITTEN_BY_3BE55FA[2] as never,
    });
    // A drained backend stays drained across an upsert of its route; a new backend is enabled.
    const pool = l.routes[3]!;
    s.upsertRoute("127.0.0.1:25443", {
      ...pool,
      backends: [
        ...pool.backends.map(({ state: _, ...b }) => b),
        { addr: "127.0.0.1:25452", weight: 1, backup: false },
      ],
    });
    expect(s.listener("127.0.0.1:25443")!.routes[3]!.backends.map((b) => b.state)).toEqual([
      "enabled",
      "drain",
      "enabled",
      "enabled",
    ]);
  } finally {
    s.close();
  }
});

test("the etcd values commit 3be55fa wrote (versions 1 and 2) are read as the same routes", () => {
  const written = JSON.parse(readFileSync(join(import.meta.dir, "../fixtures/etcd-values-3be55fa.json"), "utf8")) as {
    key: string;
    value: string;
  }[];
  const state = stateFrom("/mc/", written, (key, why) => {
    throw new Error(`${key}: ${why}`);
  });
  expect(state.listeners.get("127.0.0.1:25443")!.routes).toEqual(WRITTEN_BY_3BE55FA as never);
  // What this release writes reads back the same, at the same versions.
  for (const [i, r] of WRITTEN_BY_3BE55FA.entries()) {
    expect(JSON.parse(encodeRoute(r as never)).version).toBe(JSON.parse(written[i]!.value).version);
    expect(decodeRoute(r, encodeRoute(r as never))).toEqual({ ok: true, value: r as never });
  }
});
