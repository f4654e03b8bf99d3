// The admin service in this process, over a real control plane (one loop)
// and a real SQLite store, set up and torn down around one describe block.
import { afterAll, beforeAll } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AdminService } from "../../src/admin/admin_service";
import { Logger } from "../../src/log/logger";
import { parseRoutedConfig } from "../../src/routing/route_config";
import { ControlPlane } from "../../src/server/control_plane";
import { SqliteConfigStore } from "../../src/store/sqlite_config_store";
import { SqliteDatabase } from "../../src/store/sqlite_database";
import { freePort } from "./net";

/** A logger that writes nothing. */
export const QUIET = new Logger("error", "text", { write() {}, flush() {} });

export interface InProcessAdmin {
  /** The one listener's address (127.0.0.1 and a free port). */
  readonly listener: string;
  plane: ControlPlane;
  db: SqliteDatabase;
  admin: AdminService;
}

/** Call inside a describe block: `toml` is the config for the listener's address; its routes seed the database. */
export function inProcessAdmin(toml: (listener: string) => string, prefix: string): InProcessAdmin {
  const f = { listener: `127.0.0.1:${freePort()}` } as InProcessAdmin;
  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), prefix));
    const cfg = parseRoutedConfig(toml(f.listener), join(dir, "t.toml"));
    f.plane = await ControlPlane.start(cfg, QUIET, { loops: 1, histograms: false, connectionCap: 0 });
    f.db = SqliteDatabase.open(join(dir, "db.sqlite"));
    f.db.seed([{ addr: f.listener, maxConnections: 0, routes: cfg.listeners[0]!.routes }], []);
    f.admin = new AdminService(f.plane, new SqliteConfigStore(f.db, f.plane), QUIET);
  });
  afterAll(async () => {
    f.plane.shutdown();
    await f.plane.done;
    f.db.close();
  });
  return f;
}
