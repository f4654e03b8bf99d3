// least_connections (routing/pool.ts): ties broken by round robin, weights
// respected, counts shared by every loop.
import { describe, expect, test } from "bun:test";
import { POOL_DEFAULTS } from "../../src/config/config";
import { BackendTable } from "../../src/routing/backend_table";
import { RoutePool, bindRoutes } from "../../src/routing/pool";
import { PLAIN } from "../../src/routing/route";

describe("least_connections", () => {
  test("sequential connections (every load 0) go round robin, weights respected", () => {
    const table = new BackendTable(16);
    const spec = {
      hostname: "a",
      ...PLAIN,
      backends: [
        { addr: "h:1", weight: 1, backup: false },
        { addr: "h:2", weight: 1, backup: false },
        { addr: "h:3", weight: 2, backup: false },
      ],
      balance: "least_connections" as const,
      healthCheck: "off" as const,
      check: {},
      retries: null,
      connectTimeoutMs: null,
      sendProxyProtocol: "off" as const,
    };
    const b = bindRoutes(table, 0, [spec], null);
    const p = new RoutePool(b.routes[0]!, POOL_DEFAULTS, table);
    const got = [0, 0, 0];
    for (let i = 0; i < 400; i++) got[p.pick("1.2.3.4", 0, 0)]!++;
    expect(got).toEqual([100, 100, 200]);
    // A loaded backend is still avoided.
    table.take(p.ref(2), 0);
    table.take(p.ref(2), 0);
    table.take(p.ref(2), 0);
    expect(p.pick("1.2.3.4", 0, 0)).not.toBe(2);
  });
});
