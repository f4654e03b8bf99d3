// A real ACME issuance through mc-proxy (docs/SPEC.md "Routing on ALPN";
// RFC 8737 TLS-ALPN-01): Debian's pebble validates app.example.com by
// connecting to mc-proxy's listener with ALPN acme-tls/1; an
// `alpn = ["acme-tls/1"]` route sends that to `lego --tls`, while the same
// name's ordinary HTTPS — 100 curl requests during the issuance — keeps
// reaching the application backend. pebble-challtestsrv answers pebble's DNS
// queries with 127.0.0.1.
import { expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { selfSignedArgs } from "../../scripts/self_signed";
import { testCert } from "../helpers/certs";
import { freePort, rawExchange, sleep } from "../helpers/net";
import { ensureCommands } from "../helpers/packages";
import { startProxy, tempDir } from "../helpers/proxy";
import { tlsBackend } from "../helpers/tls";

const NAME = "app.example.com";

async function listening(port: number, what: string): Promise<void> {
  for (let i = 0; (await rawExchange(port, null, { timeoutMs: 200 })).end === "refused"; i++) {
    if (i > 200) throw new Error(`${what} did not listen on ${port}`);
    await sleep(50);
  }
}

test("lego obtains a certificate from pebble through mc-proxy's acme-tls/1 route while 100 HTTPS requests for the name all reach the app", async () => {
  const missing = ensureCommands(
    ["pebble", "pebble-challtestsrv", "lego", "curl", "openssl"],
    ["pebble", "lego", "curl", "openssl"],
  );
  if (missing !== null) {
    console.warn(`SKIP the ACME issuance test: ${missing}`);
    return;
  }
  const dir = tempDir("mcproxy-acme-");
  // pebble's own HTTPS endpoint: a certificate for localhost that lego is told to trust.
  const cert = join(dir, "pebble.pem");
  const key = join(dir, "pebble.key");
  expect(Bun.spawnSync(selfSignedArgs(key, cert, { cn: "localhost", sans: ["localhost"], days: 2 })).exitCode).toBe(0);
  const [acmePort, mgmtPort, httpPort, dnsPort, ctsMgmt, proxyPort, legoPort] = Array.from({ length: 7 }, () =>
    freePort(),
  );
  await Bun.write(
    join(dir, "pebble.json"),
    JSON.stringify({
      pebble: {
        listenAddress: `127.0.0.1:${acmePort}`,
        managementListenAddress: `127.0.0.1:${mgmtPort}`,
        certificate: cert,
        privateKey: key,
        httpPort,
        // Where pebble's validation connects for TLS-ALPN-01: mc-proxy's listener.
        tlsPort: proxyPort,
        ocspResponderURL: "",
        externalAccountBindingRequired: false,
      },
    }),
  );
  const app = tlsBackend("app", testCert());
  const procs: ReturnType<typeof Bun.spawn>[] = [];
  const proxy = await startProxy(
    "binary",
    `[[listeners]]
addr = "127.0.0.1:${proxyPort}"
  [[listeners.routes]]
  hostname = "${NAME}"
  backend = "127.0.0.1:${app.port}"
  [[listeners.routes]]
  hostname = "${NAME}"
  alpn = ["acme-tls/1"]
  backend = "127.0.0.1:${legoPort}"
[proxy]
workers = 2
`,
    { dir },
  );
  try {
    procs.push(
      Bun.spawn(
        [
          "pebble-challtestsrv",
          "-dns01",
          `127.0.0.1:${dnsPort}`,
          "-http01",
          "",
          "-tlsalpn01",
          "",
          "-https01",
          "",
          "-management",
          `127.0.0.1:${ctsMgmt}`,
          "-defaultIPv4",
          "127.0.0.1",
          "-defaultIPv6",
          "",
        ],
        {
          stdout: "ignore",
          stderr: "ignore",
        },
      ),
    );
    procs.push(
      Bun.spawn(["pebble", "-config", join(dir, "pebble.json"), "-dnsserver", `127.0.0.1:${dnsPort}`], {
        env: { ...process.env, PEBBLE_VA_NOSLEEP: "1", PEBBLE_WFE_NONCEREJECT: "0" },
        stdout: "ignore",
        stderr: "ignore",
      }),
    );
    await listening(acmePort!, "pebble");
    const lego = Bun.spawn(
      [
        "lego",
        "--server",
        `https://localhost:${acmePort}/dir`,
        "--email",
        "ops@example.com",
        "--domains",
        NAME,
        "--accept-tos",
        "--tls",
        "--tls.port",
        `127.0.0.1:${legoPort}`,
        "--path",
        join(dir, "lego"),
        "run",
      ],
      { env: { ...process.env, LEGO_CA_CERTIFICATES: cert }, stdout: "pipe", stderr: "pipe", timeout: 90_000 },
    );
    // Ordinary HTTPS for the same name from the start of the issuance to its end (at least 100 requests, 10 at a time).
    const bodies: string[] = [];
    const until = Date.now() + 90_000;
    while ((bodies.length < 100 || lego.exitCode === null) && Date.now() < until) {
      const batch = Array.from({ length: 10 }, async () => {
        const c = Bun.spawn(
          [
            "curl",
            "-sk",
            "--max-time",
            "5",
            "--resolve",
            `${NAME}:${proxyPort}:127.0.0.1`,
            `https://${NAME}:${proxyPort}/`,
          ],
          { stdout: "pipe", stderr: "ignore" },
        );
        const out = await new Response(c.stdout).text();
        await c.exited;
        return out;
      });
      bodies.push(...(await Promise.all(batch)));
    }
    const legoOut = (await new Response(lego.stderr).text()) + (await new Response(lego.stdout).text());
    expect({ exit: await lego.exited, log: lego.exitCode === 0 ? "" : legoOut }).toEqual({ exit: 0, log: "" });
    expect(bodies.length).toBeGreaterThanOrEqual(100);
    expect(bodies.filter((b) => b !== "hello from app\n")).toEqual([]);
    const crt = join(dir, "lego/certificates", `${NAME}.crt`);
    expect(existsSync(crt)).toBe(true);
    const x509 = Bun.spawnSync([
      "openssl",
      "x509",
      "-in",
      crt,
      "-noout",
      "-issuer",
      "-ext",
      "subjectAltName",
    ]).stdout.toString();
    expect(x509).toContain(`DNS:${NAME}`);
    expect(x509).toContain("Pebble Intermediate CA");
    // Every validation connection took the acme-tls/1 route; every curl the plain one.
    const records = proxy.access();
    const acme = records.filter((r) => r.route === `${NAME}+acme-tls/1`);
    expect(acme.length).toBeGreaterThan(0);
    expect(
      acme.every((r) => r.backend === `127.0.0.1:${legoPort}` && (r.alpn as string[]).includes("acme-tls/1")),
    ).toBe(true);
    expect(records.filter((r) => r.route === NAME && r.outcome === "ok").length).toBeGreaterThanOrEqual(100);
    expect(app.connections).toBeGreaterThanOrEqual(100);
  } finally {
    for (const p of procs) p.kill();
    await proxy.stop();
    app.stop();
  }
}, 120_000);
