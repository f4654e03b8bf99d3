// End to end: templated routes (docs/ROUTING.md "Templated routes") in the
// compiled binary. A hostname_pattern route sends each app's name to the
// backend its template names, `{app}.svc.test:PORT`, resolved at connect
// time through Debian's dnsmasq on a loopback port ([dns] servers) to a
// loopback address of its own (127.0.0.11-13, allowed by the route's
// allow_destinations: the destination guard refuses loopback by default);
// exact and wildcard routes win over the pattern.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { testCert } from "../helpers/certs";
import { Dnsmasq, haveDnsmasq } from "../helpers/dnsmasq";
import { freePort, waitFor } from "../helpers/net";
import { type RunningProxy, startProxy } from "../helpers/proxy";
import { bodyOf, tlsBackend, tlsGet, type TlsBackend } from "../helpers/tls";

const hasDnsmasq = haveDnsmasq();

const APPS = ["one", "two", "three"] as const;

describe.skipIf(!hasDnsmasq)("templated routes (binary)", () => {
  const cert = testCert();
  let proxy: RunningProxy;
  const dns = new Dnsmasq(60, Object.fromEntries(APPS.map((a, i) => [`${a}.svc.test`, [`127.0.0.${11 + i}`]])));
  let exact: TlsBackend, wild: TlsBackend;
  const apps: { stop(): void }[] = [];
  let port = 0;

  beforeAll(async () => {
    const appPort = freePort();
    for (const [i, a] of APPS.entries())
      apps.push(tlsBackend(a, cert, { hostname: `127.0.0.${11 + i}`, port: appPort }));
    exact = tlsBackend("exact", cert);
    wild = tlsBackend("wild", cert);
    await dns.start();
    port = freePort();
    proxy = await startProxy(
      "binary",
      `
[dns]
servers = ["${dns.server}"]

[[listeners]]
addr = "127.0.0.1:${port}"
  [[listeners.routes]]
  hostname_pattern = '^(?<app>[a-z0-9-]{1,63})\\.apps\\.test$'
  backend = "{app}.svc.test:${appPort}"
  allow_destinations = ["127.0.0.0/8"]
  [[listeners.routes]]
  hostname = "exact.apps.test"
  backend = "127.0.0.1:${exact.port}"
  [[listeners.routes]]
  hostname = "*.wild.apps.test"
  backend = "127.0.0.1:${wild.port}"
`,
    );
  });

  afterAll(async () => {
    await proxy?.stop();
    await dns.stop();
    for (const a of apps) a.stop();
    exact?.stop();
    wild?.stop();
  });

  test("each app's name reaches its own backend through the template", async () => {
    for (const a of APPS) {
      const r = await tlsGet(port, `${a}.apps.test`, cert, { timeoutMs: 10_000 });
      expect(bodyOf(r)).toBe(`hello from ${a}\n`);
    }
  });

  test("exact and wildcard routes win over the pattern", async () => {
    expect(bodyOf(await tlsGet(port, "exact.apps.test", cert))).toBe("hello from exact\n");
    expect(bodyOf(await tlsGet(port, "x.wild.apps.test", cert))).toBe("hello from wild\n");
  });

  test("a name the pattern does not match is reset (no_route)", async () => {
    const r = await tlsGet(port, "a.b.apps.test", cert);
    expect(bodyOf(r)).toBeNull();
    await waitFor(() => proxy.records().some((x) => x.outcome === "no_route"), 10_000, "a no_route record");
  });
});
