// The backend table's size is checked before anything is written: an
// AddRoute past it changes neither the database nor the tables.
import { describe, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AdminError } from "../../src/admin/admin_error";
import { AdminService } from "../../src/admin/admin_service";
import { parseRoutedConfig } from "../../src/routing/route_config";
import { Logger } from "../../src/log/logger";
import { ControlPlane } from "../../src/server/control_plane";
import { SqliteConfigStore } from "../../src/store/sqlite_config_store";
import { SqliteDatabase } from "../../src/store/sqlite_database";

describe("the backend-slot limit is checked before anything is written", () => {
  test("AddRoute past the table's size: RESOURCE_EXHAUSTED, the database and the tables unchanged", async () => {
    const dir = mkdtempSync(join(tmpdir(), "mcproxy-slots-"));
    const port = 20000 + Math.floor(Math.random() * 5000);
    const cfg = parseRoutedConfig(`[[listeners]]\naddr = "127.0.0.1:${port}"\n`, join(dir, "t.toml"));
    const quiet = new Logger("error", "text", { write() {}, flush() {} });
    const srv = await ControlPlane.start(cfg, quiet, {
      loops: 1,
      histograms: false,
      connectionCap: 0,
      backendSlots: 10,
    });
    const db = SqliteDatabase.open(join(dir, "db.sqlite"));
    db.seed([{ addr: cfg.listeners[0]!.name, maxConnections: 0, routes: [] }], []);
    const admin = new AdminService(srv, new SqliteConfigStore(db, srv), quiet);
    const pool = (n: number, base: number) => ({
      backends: Array.from({ length: n }, (_, i) => ({ addr: `127.0.0.1:${base + i}`, weight: 1 })),
    });
    try {
      await admin.addRoute({
        listener: `127.0.0.1:${port}`,
        route: { hostname: "a.example.com", backend: "", ...pool(3, 1000) },
      });
      await admin.addRoute({
        listener: `127.0.0.1:${port}`,
        route: { hostname: "b.example.com", backend: "", ...pool(3, 2000) },
      });
      const before = JSON.stringify([...db.state().listeners]);
      const e = await admin
        .addRoute({
          listener: `127.0.0.1:${port}`,
          route: { hostname: "c.example.com", backend: "", ...pool(3, 3000) },
        })
        .catch((x) => x);
      expect(e).toBeInstanceOf(AdminError);
      expect((e as AdminError).code).toBe(8); // RESOURCE_EXHAUSTED
      expect((e as AdminError).message).toContain("backend table is full");
      expect(JSON.stringify([...db.state().listeners])).toBe(before);
      expect(
        srv
          .listener(`127.0.0.1:${port}`)!
          .table.routes()
          .map((r) => r.hostname),
      ).toEqual(["a.example.com", "b.example.com"]);
      // Replacing a route's pool frees its old slots first: this fits.
      await admin.addRoute({
        listener: `127.0.0.1:${port}`,
        route: { hostname: "b.example.com", backend: "", ...pool(5, 4000) },
      });
      expect(
        db
          .state()
          .listeners.get(`127.0.0.1:${port}`)!
          .routes.find((r) => r.hostname === "b.example.com")!.backends.length,
      ).toBe(5);
    } finally {
      srv.shutdown();
      await srv.done;
      db.close();
    }
  });
});
