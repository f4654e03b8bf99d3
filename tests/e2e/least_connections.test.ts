// least_connections end to end against the compiled binary (two workers):
// sequential connections (every load 0) share the backends by round robin.
import { describe, expect, test } from "bun:test";
import { helloFor } from "../helpers/hello_builder";
import { firstReply, freePort } from "../helpers/net";
import { startProxy } from "../helpers/proxy";
import { named } from "../helpers/backends";
import { poolToml } from "../helpers/toml";

const hello = helloFor("app.example.com");

/** Connect, send the hello, return the backend that answered ("" when none did). */
const who = (port: number) => firstReply(port, hello);

/** The shared pool config: `ports` as the pool's backends, checks off, two workers. */
function poolConfig(port: number, ports: number[], extra = ""): string {
  return `${poolToml(port, `  backends = [${ports.map((p) => `"127.0.0.1:${p}"`).join(", ")}]\n  health_check = "off"\n${extra}`)}\n[proxy]\nworkers = 2\n`;
}

describe("least_connections (binary, two workers)", () => {
  test("least_connections: 150 sequential connections over 3 equal backends → each gets 30-40 %", async () => {
    const bs = [named("a"), named("b"), named("c")];
    const port = freePort();
    const proxy = await startProxy(
      "binary",
      poolConfig(
        port,
        bs.map((b) => b.port),
        `  balance = "least_connections"\n`,
      ),
    );
    try {
      const got: string[] = [];
      for (let i = 0; i < 150; i++) got.push(await who(port));
      for (const name of ["a", "b", "c"]) {
        const share = got.filter((g) => g === name).length / 150;
        expect(share).toBeGreaterThanOrEqual(0.3);
        expect(share).toBeLessThanOrEqual(0.4);
      }
    } finally {
      await proxy.stop();
      for (const b of bs) b.stop();
    }
  }, 30_000);
});
