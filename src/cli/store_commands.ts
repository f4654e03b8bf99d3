// The store's offline work, without a running server: `snapshot` (a
// consistent SQLite copy of the database, or of the etcd fleet's state at one
// revision) and `store import` (a snapshot into an empty etcd prefix).
import { existsSync, mkdirSync, readdirSync, unlinkSync } from "node:fs";
import { dirname, join } from "node:path";
import { loadRoutedConfig } from "../routing/route_config";
import { importFleet, readFleet } from "../store/etcd_client";
import { SqliteDatabase } from "../store/sqlite_database";
import { UsageError, help, parseArgs } from "./args";

export const SNAPSHOT_USAGE = `Usage: mc-proxy snapshot -c FILE [-o PATH] [--keep N]

Writes a consistent copy of the database (SQLite VACUUM INTO) to PATH, by
default backups/mc-proxy-<UTC timestamp>.db beside the database. Safe while
the server runs. --keep N then deletes all but the newest N snapshots named
mc-proxy-<UTC timestamp>.db in the folder the copy was written to (other
files are never touched). Restore: stop the server, replace the database
file with the copy (and delete any -wal / -shm files beside it), start the
server.`;

/** Names `snapshot` gives (and `--keep` prunes): mc-proxy-20261126T221503.123Z.db; they sort by time. */
const SNAPSHOT_NAME = /^mc-proxy-\d{8}T\d{6}(\.\d{3})?Z\.db$/;

export async function snapshot(args: string[]): Promise<number> {
  const a = parseArgs(args, SNAPSHOT_USAGE, { values: ["-o", "--output", "--keep"] });
  if (a.help) return help(SNAPSHOT_USAGE);
  if (a.config === null) throw new UsageError("-c FILE is required", SNAPSHOT_USAGE);
  if (a.rest.length > 0) throw new UsageError(`unexpected argument ${a.rest[0]}`, SNAPSHOT_USAGE);
  const keepText = a.flags.get("--keep");
  if (keepText !== undefined && !/^[1-9]\d{0,5}$/.test(keepText))
    throw new UsageError(`--keep ${keepText}: expected a whole number of snapshots, at least 1`, SNAPSHOT_USAGE);
  const cfg = loadRoutedConfig(a.config);
  const stamp = new Date().toISOString().replace(/[-:]/g, "");
  const dest =
    a.flags.get("-o") ?? a.flags.get("--output") ?? join(dirname(cfg.databasePath), "backups", `mc-proxy-${stamp}.db`);
  if (existsSync(dest)) throw new Error(`${dest} already exists; choose another -o PATH`);
  if (cfg.store === "etcd") {
    // The fleet's state at one revision, as a SQLite file: backups look the same in both modes.
    const { state, revision } = await readFleet(cfg.etcd!);
    mkdirSync(dirname(dest), { recursive: true });
    const out = SqliteDatabase.open(dest);
    try {
      out.replaceState(state);
    } finally {
      out.close();
    }
    console.log(`snapshot written: ${dest} (etcd ${cfg.etcd!.prefix} at revision ${revision})`);
  } else {
    if (!existsSync(cfg.databasePath))
      throw new Error(`database ${cfg.databasePath} does not exist (it is created when the server first runs)`);
    const store = SqliteDatabase.open(cfg.databasePath);
    try {
      store.snapshot(dest);
    } finally {
      store.close();
    }
    console.log(`snapshot written: ${dest}`);
  }
  if (keepText !== undefined) {
    const dir = dirname(dest);
    const old = readdirSync(dir)
      .filter((n) => SNAPSHOT_NAME.test(n))
      .sort()
      .slice(0, -Number(keepText));
    for (const n of old) unlinkSync(join(dir, n));
    if (old.length > 0)
      console.log(`removed ${old.length} older snapshot(s), kept the newest ${keepText}: ${old.join(", ")}`);
  }
  return 0;
}

export const STORE_USAGE = `Usage: mc-proxy store import -c FILE SNAPSHOT.db

Loads a snapshot (a SQLite file written by "mc-proxy snapshot", in either
mode) into the etcd prefix the config names ([store] backend = "etcd"). The
prefix must be empty: this is how a fleet is started from an existing
instance's state, or restored.`;

export async function storeCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === "--help" || sub === "-h") return help(STORE_USAGE);
  if (sub !== "import")
    throw new UsageError(sub === undefined ? "store needs import" : `unknown store command "${sub}"`, STORE_USAGE);
  const a = parseArgs(rest, STORE_USAGE);
  if (a.help) return help(STORE_USAGE);
  if (a.config === null) throw new UsageError("-c FILE is required", STORE_USAGE);
  if (a.rest.length !== 1) throw new UsageError("store import needs SNAPSHOT.db", STORE_USAGE);
  const cfg = loadRoutedConfig(a.config);
  if (cfg.store !== "etcd")
    throw new Error(`${cfg.file}: store.backend is not "etcd"; there is nothing to import into`);
  if (!existsSync(a.rest[0]!)) throw new Error(`${a.rest[0]}: no such file`);
  const snap = SqliteDatabase.open(a.rest[0]!);
  let state: ReturnType<SqliteDatabase["state"]>;
  try {
    state = snap.state();
  } finally {
    snap.close();
  }
  const n = await importFleet(cfg.etcd!, state);
  console.log(
    `imported ${n} key(s) into etcd ${cfg.etcd!.prefix}: ${state.listeners.size} listener(s), ${[...state.listeners.values()].reduce((x, l) => x + l.routes.length, 0)} route(s), ${state.rules.length} rule(s)`,
  );
  return 0;
}
