// The proxy's own addresses for the destination guard (src/server/backend_dial.ts ownAddresses,
// docs/SECURITY.md "Destination guard"): every TCP and QUIC listener, the admin API, the metrics
// endpoint and the dashboard on host:port; a unix: socket is no address; ":port" and a host name
// stand for every local address; allow_destinations does not lift them.
import { describe, expect, test } from "bun:test";
import { DestinationGuard } from "../../src/dns/destination_guard";
import { type ServedConfig, ownAddresses } from "../../src/server/backend_dial";

function served(over: Partial<Record<keyof ServedConfig, unknown>>): ServedConfig {
  return { listeners: [], quicListeners: [], grpc: null, metrics: null, dashboard: null, ...over } as ServedConfig;
}
const bound = (host: string, port: number) => ({ bind: { host, port } });

describe("ownAddresses", () => {
  test("listeners of both kinds, the admin API, metrics and dashboard", () => {
    const own = ownAddresses(
      served({
        listeners: [bound("127.0.0.1", 8443), bound("", 443)],
        quicListeners: [bound("10.0.0.1", 443)],
        grpc: { addr: "127.0.0.1:9090" },
        metrics: { addr: "[::1]:9100" },
        dashboard: { addr: "localhost:8080" },
      }),
    );
    expect(own).toEqual([
      { ip: "127.0.0.1", port: 8443 },
      { ip: "::", port: 443 },
      { ip: "10.0.0.1", port: 443 },
      { ip: "127.0.0.1", port: 9090 },
      { ip: "::1", port: 9100 },
      { ip: "::", port: 8080 },
    ]);
  });

  test("a unix: socket is no address", () => {
    const own = ownAddresses(
      served({ grpc: { addr: "unix:/run/a.sock" }, metrics: { addr: "unix:/run/m.sock" }, dashboard: null }),
    );
    expect(own).toEqual([]);
  });

  test("the guard refuses them, allow_destinations notwithstanding; other ports pass", () => {
    const own = ownAddresses(
      served({ listeners: [bound("127.0.0.1", 8443)], metrics: { addr: ":9100" }, grpc: { addr: "127.0.0.1:9090" } }),
    );
    const g = new DestinationGuard({
      allow: ["127.0.0.0/8", "10.0.0.0/8"],
      deny: [],
      defaults: true,
      own,
      localIps: ["127.0.0.1", "10.1.2.3", "::1"],
    });
    for (const [ip, port] of [
      ["127.0.0.1", 8443],
      ["127.0.0.1", 9090],
      ["127.0.0.1", 9100],
      ["10.1.2.3", 9100],
      ["::ffff:10.1.2.3", 9100],
    ] as const)
      expect({ ip, port, ok: g.permits(ip, port) }).toEqual({ ip, port, ok: false });
    for (const [ip, port] of [
      ["127.0.0.1", 8444],
      ["127.0.0.2", 9090],
      ["10.1.2.3", 9090],
    ] as const)
      expect({ ip, port, ok: g.permits(ip, port) }).toEqual({ ip, port, ok: true });
  });
});
