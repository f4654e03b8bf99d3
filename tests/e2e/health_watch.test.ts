// The gRPC health service's Watch, end to end against the compiled binary:
// an open stream hears NOT_SERVING when the server stops, then ends.
import { expect, test } from "bun:test";
import { join } from "node:path";
import { freePort, waitFor } from "../helpers/net";
import { startProxy, tempDir } from "../helpers/proxy";
import { named } from "../helpers/backends";
import { poolToml } from "../helpers/toml";

/** The shared pool config: `ports` as the pool's backends, checks off, two workers. */
function poolConfig(port: number, ports: number[], extra = ""): string {
  return `${poolToml(port, `  backends = [${ports.map((p) => `"127.0.0.1:${p}"`).join(", ")}]\n  health_check = "off"\n${extra}`)}\n[proxy]\nworkers = 2\n`;
}

test("Health.Watch: an open stream hears NOT_SERVING and is ended when the server stops", async () => {
  const grpc = await import("@grpc/grpc-js");
  const { healthDefinition } = await import("../../src/admin/protos");
  const backend = named("ok");
  const dir = tempDir();
  const port = freePort();
  const proxy = await startProxy("binary", poolConfig(port, [backend.port]), { dir });
  const Health = grpc.makeClientConstructor(healthDefinition()["grpc.health.v1.Health"] as never, "Health");
  const client = new Health(`unix:${join(dir, "admin.sock")}`, grpc.credentials.createInsecure()) as unknown as {
    Watch(req: object): import("node:stream").Readable;
    close(): void;
  };
  try {
    const statuses: string[] = [];
    let ended = false;
    const stream = client.Watch({ service: "" });
    stream.on("data", (m: { status: string }) => statuses.push(m.status));
    stream.on("end", () => void (ended = true));
    stream.on("error", () => void (ended = true));
    await waitFor(() => statuses.length === 1, 3000, "the first status");
    expect(statuses).toEqual(["SERVING"]);
    proxy.signal("SIGTERM");
    await waitFor(() => ended, 3000, "the stream to end");
    expect(statuses).toEqual(["SERVING", "NOT_SERVING"]);
    expect(await proxy.exited).toBe(0);
  } finally {
    client.close();
    await proxy.stop();
    backend.stop();
  }
}, 30_000);
