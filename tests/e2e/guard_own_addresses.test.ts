// End to end (compiled binary, Debian's dnsmasq as the resolver): the destination guard's
// built-in refusal of the proxy's own addresses (docs/SECURITY.md "Destination guard") covers
// every address the process serves on — its TCP and QUIC listeners, the admin API, the metrics
// endpoint and the dashboard — and allow_destinations does not lift it: a templated route
// allowed all of loopback still cannot reach the proxy's own ports (destination_denied, RST),
// while another loopback backend through the same kind of route is reached.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { adminPki } from "../helpers/certs";
import { Dnsmasq, haveDnsmasq } from "../helpers/dnsmasq";
import { helloFor } from "../helpers/hello_builder";
import { firstReply, freePort, rawExchange, waitFor } from "../helpers/net";
import { type RunningProxy, startProxy } from "../helpers/proxy";

/** The proxy's own services, each reached (or not) through a route `x.<service>.example` → `{n}.svc.test:<its port>`. */
const OWN = ["listener", "quic", "admin", "metrics", "dashboard"] as const;

describe.skipIf(!haveDnsmasq())("the proxy's own addresses are never a templated backend (binary)", () => {
  const dns = new Dnsmasq(60, { "lo.svc.test": ["127.0.0.1"] });
  const ports: Record<(typeof OWN)[number] | "control", number> = {
    listener: freePort(),
    quic: freePort(),
    admin: freePort(),
    metrics: freePort(),
    dashboard: freePort(),
    control: freePort(),
  };
  let proxy: RunningProxy;
  let backendConns = 0;
  const control = Bun.listen({
    hostname: "127.0.0.1",
    port: ports.control,
    socket: {
      open: () => void backendConns++,
      data: (s) => void s.write("CONTROL"),
    },
  });

  const route = (service: string, port: number) => `
  [[listeners.routes]]
  hostname_pattern = '^(?<n>[a-z]{1,20})\\.${service}\\.example$'
  backend = "{n}.svc.test:${port}"
  allow_destinations = ["127.0.0.0/8"]
  connect_timeout = "1s"`;

  beforeAll(async () => {
    await dns.start();
    const pki = adminPki();
    const hash = await Bun.password.hash("correct horse battery staple", "argon2id");
    proxy = await startProxy(
      "binary",
      `
[proxy]
workers = 2

[dns]
servers = ["${dns.server}"]

[[listeners]]
addr = "127.0.0.1:${ports.listener}"
${[...OWN, "control" as const].map((s) => route(s, ports[s])).join("\n")}

[[listeners]]
addr = "127.0.0.1:${ports.quic}"
protocol = "quic"
  [[listeners.routes]]
  hostname = "h3.example"
  backend = "127.0.0.1:9"

[grpc]
addr = "127.0.0.1:${ports.admin}"
tls_cert = "${pki.serverCert}"
tls_key = "${pki.serverKey}"
client_ca = "${pki.ca}"

[metrics]
addr = "127.0.0.1:${ports.metrics}"

[dashboard]
addr = "127.0.0.1:${ports.dashboard}"
  [[dashboard.users]]
  name = "alice"
  role = "reader"
  password_hash = "${hash}"
`,
    );
  }, 30_000);

  afterAll(async () => {
    await proxy?.stop();
    await dns.stop();
    control.stop(true);
  });

  const recordsFor = (sni: string) => proxy.access().filter((r) => r.sni === sni);

  test("a loopback backend that is not the proxy's is reached through the same kind of route", async () => {
    expect(await firstReply(ports.listener, helloFor("lo.control.example"))).toBe("CONTROL");
    expect(backendConns).toBe(1);
  }, 30_000);

  for (const service of OWN)
    test(`the ${service} address: RST, destination_denied, though allow_destinations lists loopback`, async () => {
      const sni = `lo.${service}.example`;
      const r = await rawExchange(ports.listener, helloFor(sni), { timeoutMs: 5000 });
      expect({ service, end: r.end, bytes: r.received.length }).toEqual({ service, end: "reset", bytes: 0 });
      await waitFor(() => recordsFor(sni).length >= 1, 5000, `the record of ${sni}`);
      expect(recordsFor(sni)[0]).toMatchObject({ outcome: "destination_denied", resolved: "127.0.0.1" });
    }, 30_000);
});
