// The admin API's audit line, end to end against the compiled binary: it is
// written at any log level and names every backend and the identity that
// granted the call.
import { expect, test } from "bun:test";
import { AdminClient } from "../../src/cli/admin_client";
import { adminToml, grpcConfig } from "../helpers/admin";
import { adminPki } from "../helpers/certs";
import { freePort, waitFor } from "../helpers/net";
import { startProxy } from "../helpers/proxy";

test('audit at [log] level = "warn": a pool AddRoute writes one line naming all its backends and the identity that matched admin_clients (a DNS SAN)', async () => {
  const pki = adminPki();
  const grpcPort = freePort();
  const port = freePort();
  const proxy = await startProxy(
    "binary",
    adminToml(pki, grpcPort, port, {}, `admin_clients = ["deployer"]\n\n[log]\nlevel = "warn"\nformat = "json"\n`),
    { readyPort: grpcPort },
  );
  // CN "ci-runner", DNS SAN "deployer": the SAN is what admin_clients lists.
  const deployer = new AdminClient({
    ...grpcConfig(pki, grpcPort),
    clientCert: pki.deployerCert,
    clientKey: pki.deployerKey,
  });
  try {
    const backends = ["127.0.0.1:9001", "127.0.0.1:9002", "[::1]:9003"];
    await deployer.call("AddRoute", {
      listener: `127.0.0.1:${port}`,
      route: { hostname: "pool.example.com", backends: backends.map((addr, i) => ({ addr, weight: i + 1 })) },
    });
    await waitFor(() => proxy.records().some((r) => r.msg === "admin"), 3000, "the audit line");
    const lines = proxy.records().filter((r) => r.msg === "admin");
    expect(lines.length).toBe(1);
    expect(lines[0]).toMatchObject({
      method: "AddRoute",
      code: "OK",
      identity: "deployer",
      "route.hostname": "pool.example.com",
    });
    for (const [i, addr] of backends.entries()) expect(lines[0]![`route.backends[${i}].addr`]).toBe(addr);
    expect(lines[0]!["route.backends[2].weight"]).toBe(3);
    // level = "warn" still holds for everything else.
    expect(proxy.records().some((r) => r.level === "info" && r.msg !== "admin")).toBe(false);
  } finally {
    deployer.close();
    await proxy.stop();
  }
}, 30_000);
