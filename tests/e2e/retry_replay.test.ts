// What a retry may replay, end to end against the compiled binary (two
// workers): the ClientHello alone goes to the next backend after an empty
// failure; client data never reaches a second backend (docs/ARCHITECTURE.md
// "The life of one connection", step 6).
import { describe, expect, test } from "bun:test";
import { createConnection } from "node:net";
import { concat, helloFor } from "../helpers/hello_builder";
import { freePort, rawExchange, sleep, waitFor } from "../helpers/net";
import { startProxy } from "../helpers/proxy";
import { closer } from "../helpers/backends";
import { poolToml } from "../helpers/toml";

const hello = helloFor("app.example.com");

/** Send the hello, then `later` after `ms`; how the connection ended. */
function helloThenLater(port: number, later: Uint8Array, ms: number): Promise<{ end: string }> {
  return new Promise((resolve) => {
    const s = createConnection({ host: "127.0.0.1", port });
    const t = setTimeout(() => done("timeout"), 3000);
    const done = (end: string) => {
      clearTimeout(t);
      s.destroy();
      resolve({ end });
    };
    s.on("connect", () => {
      s.write(hello);
      setTimeout(() => s.writable && s.write(later), ms);
    });
    s.on("error", (e: NodeJS.ErrnoException) => done(e.code === "ECONNRESET" ? "reset" : "eof"));
    s.on("close", () => setTimeout(() => done("eof"), 50));
  });
}

/** The shared pool config: `ports` as the pool's backends, checks off, two workers. */
function poolConfig(port: number, ports: number[], extra = ""): string {
  return `${poolToml(port, `  backends = [${ports.map((p) => `"127.0.0.1:${p}"`).join(", ")}]\n  health_check = "off"\n${extra}`)}\n[proxy]\nworkers = 2\n`;
}

describe("retries (binary, two workers)", () => {
  test("a retry never hands client data to a second backend: hello + data → one backend, client reset (backend_closed); hello alone is still retried", async () => {
    const backends = [closer(), closer(), closer()];
    const port = freePort();
    const proxy = await startProxy(
      "binary",
      poolConfig(
        port,
        backends.map((b) => b.port),
      ),
    );
    try {
      const secret = Buffer.from("GET /pay?amount=100 HTTP/1.1\r\n\r\n");
      // In the same write as the hello (as TLS 1.3 early data travels), and 30 ms later (during the connect or the relay).
      const r1 = await rawExchange(port, concat(hello, secret), { timeoutMs: 2000 });
      const r2 = await helloThenLater(port, secret, 30);
      await sleep(300);
      const holders = backends.filter((b) => b.received().includes(secret));
      const copies = backends.reduce(
        (n, b) => n + b.received().toString("latin1").split(secret.toString("latin1")).length - 1,
        0,
      );
      expect(r1.end).toBe("reset");
      // Each request reached exactly one backend: 2 sends, 2 copies in all (never 3 or 6).
      expect(copies).toBeLessThanOrEqual(2);
      expect(holders.length).toBeGreaterThanOrEqual(1);
      await waitFor(() => proxy.access().length >= 2, 3000, "two access records");
      const first = proxy.access()[0]!;
      expect(first).toMatchObject({ outcome: "backend_closed", tries: 1 });
      expect(r2.end === "reset" || r2.end === "eof").toBe(true);

      // Hello only: every backend gets a try.
      const before = backends.map((b) => b.received().length);
      await rawExchange(port, hello, { timeoutMs: 2000 });
      await waitFor(() => proxy.access().length >= 3, 3000, "third access record");
      expect(proxy.access()[2]!.tries).toBe(3);
      expect(backends.filter((b, i) => b.received().length > before[i]!).length).toBe(3);
    } finally {
      await proxy.stop();
      for (const b of backends) b.stop();
    }
  }, 30_000);
});
