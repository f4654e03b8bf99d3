// A `protocol = "quic"` listener with routes of its own and no TCP listener
// (docs/HTTP3.md "Routes"): `check` passes, flows route by its own table,
// its routes are stored by its name, listed and changed over the admin API
// (`mc-proxy routes list/add`) like a TCP listener's, and its flows are
// counted under its name, as everything else knows it (a QUIC listener's
// label adds "/quic" only when it shares a TCP listener's name).
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { alpnExtension, clientHelloBody, handshake, sniExtension } from "../helpers/hello_builder";
import { freePort, waitFor } from "../helpers/net";
import { runCli, startProxy } from "../helpers/proxy";
import { cryptoFrame, padDatagram, sealInitial } from "../helpers/quic";

/** A UDP backend that echoes every datagram. */
async function udpEcho(): Promise<{ port: number; got: number; close(): void }> {
  const b = { port: 0, got: 0, close: () => {} };
  const s = await Bun.udpSocket({
    hostname: "127.0.0.1",
    binaryType: "uint8array",
    socket: {
      data(sock, d, port, addr) {
        b.got++;
        sock.send(d, port, addr);
      },
    },
  });
  b.port = s.port;
  b.close = () => s.close();
  return b;
}

/** One Initial datagram carrying a whole ClientHello for `host`. */
function initialFor(host: string, i: number): Uint8Array {
  const dcid = Uint8Array.from([7, 7, 7, 7, 7, 7, 7, i]);
  const hello = handshake(clientHelloBody([sniExtension(host), alpnExtension("h3")]));
  return padDatagram(sealInitial({ dcid, pn: 0, frames: cryptoFrame(0, hello) }), 1250);
}

describe("a QUIC listener with routes of its own, and no TCP listener (binary)", () => {
  test("passes check, routes by its own table, and its routes are listed and changed by its name over the admin API", async () => {
    const a = await udpEcho();
    const b = await udpEcho();
    const port = freePort();
    const toml = `[[listeners]]\naddr = "127.0.0.1:${port}"\nname = "h3"\nprotocol = "quic"\n  [[listeners.routes]]\n  hostname = "a.example.com"\n  backend = "127.0.0.1:${a.port}"\n[grpc]\naddr = "unix:admin.sock"\n`;
    const proxy = await startProxy("binary", toml);
    const cwd = join(proxy.configFile, "..");
    const client = await Bun.udpSocket({ hostname: "127.0.0.1", binaryType: "uint8array" });
    try {
      const checked = runCli(["check", "-c", proxy.configFile], { cwd });
      expect(checked.code).toBe(0);
      expect(checked.out).toContain("1 listener(s), 1 route(s)");
      // Routed by its own table.
      client.send(initialFor("a.example.com", 1), port, "127.0.0.1");
      await waitFor(() => a.got === 1, 5000, "the flow at its route's backend");
      // Listed by its name; a route added by its name routes the next flow (the only listener: no --listener needed).
      const listed = runCli(["routes", "list", "-c", proxy.configFile, "--json"], { cwd });
      expect(listed.code).toBe(0);
      expect(JSON.parse(listed.out).listeners).toEqual([expect.objectContaining({ listener: "h3" })]);
      const added = runCli(["routes", "add", "-c", proxy.configFile, "b.example.com", `127.0.0.1:${b.port}`], { cwd });
      expect(added.err).toBe("");
      expect(added.code).toBe(0);
      const again = runCli(["routes", "list", "-c", proxy.configFile, "--listener", "h3"], { cwd });
      expect(again.out).toContain("b.example.com");
      const second = await Bun.udpSocket({ hostname: "127.0.0.1", binaryType: "uint8array" });
      second.send(initialFor("b.example.com", 2), port, "127.0.0.1");
      await waitFor(() => b.got === 1, 5000, "the flow at the added route's backend");
      second.close();
      proxy.signal("SIGTERM");
      expect(await proxy.exited).toBe(0);
      const records = proxy.access();
      expect(records.map((r) => [r.listener, r.sni]).sort()).toEqual([
        ["h3", "a.example.com"],
        ["h3", "b.example.com"],
      ]);
    } finally {
      client.close();
      await proxy.stop();
      a.close();
      b.close();
    }
  }, 30_000);
});
