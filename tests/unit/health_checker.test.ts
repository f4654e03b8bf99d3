// Active health checks against real loopback peers: a TCP listener, a
// refused port, a real TLS server, one that answers garbage and one that
// never answers; and the checker bringing a backend down after `fall`
// failures and up after `rise` successes.
import { describe, expect, test } from "bun:test";
import { POOL_DEFAULTS } from "../../src/config/config";
import { Logger } from "../../src/log/logger";
import { BackendTable } from "../../src/routing/backend_table";
import { HealthChecker, checkOnce } from "../../src/routing/health_checker";
import { bindRoutes, RoutePool } from "../../src/routing/pool";
import { PLAIN } from "../../src/routing/route";
import { testCert } from "../helpers/certs";
import { freePort, waitFor } from "../helpers/net";
import { tlsBackend } from "../helpers/tls";

const quiet = new Logger("error", "text", { write() {}, flush() {} });

function listener(onData?: (s: import("bun").Socket<undefined>) => void) {
  return Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data: (s) => onData?.(s) } });
}

describe("checkOnce", () => {
  test("tcp: a listening port is up, a refused one down", async () => {
    const l = listener();
    try {
      expect(await checkOnce(`127.0.0.1:${l.port}`, "tcp", null, 1000)).toBe(true);
      expect(await checkOnce(`127.0.0.1:${freePort()}`, "tcp", null, 1000)).toBe(false);
    } finally {
      l.stop(true);
    }
  });

  test("tls: a real TLS server's ServerHello is up; garbage or silence within the timeout is down", async () => {
    const tls = tlsBackend("ok", testCert());
    const garbage = listener((s) => void s.write("HTTP/1.1 400 Bad Request\r\n\r\n"));
    const silent = listener();
    try {
      expect(await checkOnce(`127.0.0.1:${tls.port}`, "tls", "app.example.com", 2000)).toBe(true);
      expect(await checkOnce(`127.0.0.1:${garbage.port}`, "tls", "app.example.com", 2000)).toBe(false);
      const t0 = performance.now();
      expect(await checkOnce(`127.0.0.1:${silent.port}`, "tls", "app.example.com", 300)).toBe(false);
      expect(performance.now() - t0).toBeGreaterThanOrEqual(250);
    } finally {
      tls.stop();
      garbage.stop(true);
      silent.stop(true);
    }
  });
});

test("the checker takes a backend down after `fall` failed checks and brings it back after `rise` good ones", async () => {
  const port = freePort();
  const table = new BackendTable(16);
  const route = {
    hostname: "a.example.com",
    ...PLAIN,
    backends: [{ addr: `127.0.0.1:${port}`, weight: 1, backup: false }],
    balance: "round_robin" as const,
    healthCheck: "tcp" as const,
    check: { intervalMs: 50, timeoutMs: 200, rise: 2, fall: 2 },
    retries: null,
    connectTimeoutMs: null,
    sendProxyProtocol: "off" as const,
  };
  const bound = bindRoutes(table, 0, [route], null);
  const pool = new RoutePool(bound.routes[0]!, POOL_DEFAULTS, table);
  const checker = new HealthChecker(table, POOL_DEFAULTS, quiet);
  try {
    checker.sync("l", [pool]);
    // Nothing listens: down after two failures.
    await waitFor(() => !table.health(pool.ref(0)).up, 3000, "down");
    expect(table.health(pool.ref(0)).lastCheck).toBe("failed");
    const l = Bun.listen({ hostname: "127.0.0.1", port, socket: { data() {} } });
    try {
      await waitFor(() => table.health(pool.ref(0)).up, 3000, "up again");
      expect(table.health(pool.ref(0)).lastCheck).toBe("ok");
    } finally {
      l.stop(true);
    }
    // No longer checked once the route is gone.
    checker.sync("l", []);
  } finally {
    checker.stop();
  }
});
