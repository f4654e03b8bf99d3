// End to end (compiled binary): the egress recipe of docs/EGRESS.md, its
// configuration block taken from the page itself. Debian's dnsmasq on a
// loopback port answers the listed names with loopback addresses of TLS
// backends; the test lets loopback through at the listener
// (allow_destinations, which production does not need) and swaps the
// addresses and ports for free ones. Listed names reach their own backend
// through `{sni}`; unlisted names are reset (no_route); a listed name that
// answers the metadata address or a private one is reset
// (destination_denied) and nothing is connected; the access records carry
// sni, ja4 and the resolved address.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { testCert } from "../helpers/certs";
import { Dnsmasq, haveDnsmasq } from "../helpers/dnsmasq";
import { freePort, waitFor } from "../helpers/net";
import { ROOT, type RunningProxy, startProxy } from "../helpers/proxy";
import { bodyOf, tlsGet, tlsBackend } from "../helpers/tls";

/** The page's configuration block: the first TOML fence under "## The configuration". */
function recipeToml(): string {
  const page = readFileSync(join(ROOT, "docs/EGRESS.md"), "utf8");
  const from = page.indexOf("## The configuration");
  const m = /```toml\n([\s\S]*?)```/.exec(page.slice(from));
  if (from < 0 || m === null) throw new Error("docs/EGRESS.md: no configuration block");
  return m[1]!;
}

const LISTED = { "github.com": "127.0.0.21", "api.github.com": "127.0.0.22", "registry.npmjs.org": "127.0.0.23" };
const DENIED = { "meta.github.com": "169.254.169.254", "internal.github.com": "10.1.2.3" };

const ok = haveDnsmasq();

describe.skipIf(!ok)("the egress recipe of docs/EGRESS.md (binary, dnsmasq)", () => {
  const cert = testCert();
  const backendPort = freePort();
  const backends = Object.entries(LISTED).map(([n, ip]) => tlsBackend(n, cert, { hostname: ip, port: backendPort }));
  const dns = new Dnsmasq(60, {
    ...Object.fromEntries(Object.entries({ ...LISTED, ...DENIED }).map(([n, ip]) => [n, [ip]])),
  });
  let proxy: RunningProxy;
  let port = 0;

  beforeAll(async () => {
    await dns.start();
    port = freePort();
    const toml = recipeToml();
    // The page's servers, address and port, swapped for the test's; loopback let through at the listener.
    const swapped = toml
      .replace(/^servers = .*$/m, `servers = ["${dns.server}"]`)
      .replace(/^addr = ":443"$/m, `addr = "127.0.0.1:${port}"\nallow_destinations = ["127.0.0.0/8"]`)
      .replaceAll('backend  = "{sni}:443"', `backend  = "{sni}:${backendPort}"`);
    expect(swapped).not.toBe(toml);
    expect([...swapped.matchAll(/\{sni\}:\d+/g)].map((m) => m[0])).toEqual(Array(3).fill(`{sni}:${backendPort}`));
    proxy = await startProxy("binary", `[log]\nformat = "json"\n${swapped}`);
  });

  afterAll(async () => {
    await proxy?.stop();
    await dns.stop();
    for (const b of backends) b.stop();
  });

  test("each listed name reaches the backend its own name resolves to, through {sni}", async () => {
    for (const name of Object.keys(LISTED)) {
      const r = await tlsGet(port, name, cert, { timeoutMs: 10_000 });
      expect(bodyOf(r)).toBe(`hello from ${name}\n`);
    }
    const rec = await proxy.waitAccess((r) => r.sni === "api.github.com" && r.outcome === "ok", 10_000);
    expect(rec.backend).toBe(`api.github.com:${backendPort}`);
    expect(rec.resolved).toBe("127.0.0.22");
    expect(String(rec.ja4)).toMatch(/^t1[23]d/);
  });

  test("a name on no route is reset (no_route) and reaches nothing", async () => {
    const before = backends.reduce((n, b) => n + b.connections, 0);
    for (const name of ["evil.example", "github.com.evil.example", "githubXcom"]) {
      const r = await tlsGet(port, name, cert);
      expect(bodyOf(r)).toBeNull();
      await proxy.waitAccess((x) => x.sni === name.toLowerCase() && x.outcome === "no_route", 10_000);
    }
    expect(backends.reduce((n, b) => n + b.connections, 0)).toBe(before);
  });

  test("a listed name answering the metadata address or a private one is refused (destination_denied)", async () => {
    for (const [name, ip] of Object.entries(DENIED)) {
      const r = await tlsGet(port, name, cert);
      expect(bodyOf(r)).toBeNull();
      const rec = await proxy.waitAccess((x) => x.sni === name && x.outcome === "destination_denied", 10_000);
      expect(rec.resolved).toBe(ip);
    }
    await waitFor(
      () => proxy.records().filter((r) => r.outcome === "destination_denied").length >= 2,
      5000,
      "two destination_denied records",
    );
  });
});
