// `check` and `server` share one preflight (src/cli/startup/preflight.ts)
// that collects every problem: a config problem, an unreadable file and a
// key that is not its certificate's are all printed in one run
// (docs/COMMAND_LINE.md: check prints every problem with its key).
import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { adminPki } from "../helpers/certs";
import { ensureBinary, runCli, tempDir } from "../helpers/proxy";

/** A config with three kinds of problem: a bad trusted_proxies entry, a GeoIP database that cannot be read, an admin key that is not the certificate's. */
function threeProblems(): { file: string; needles: RegExp[] } {
  const pki = adminPki();
  const dir = tempDir();
  const file = join(dir, "c.toml");
  writeFileSync(
    file,
    `[[listeners]]
addr = "127.0.0.1:1"
proxy_protocol = true
trusted_proxies = ["10.0.0.1/8"]
[firewall]
geoip_db = "missing.mmdb"
blocked_countries = ["KP"]
[grpc]
addr = "127.0.0.1:2"
tls_cert = "${pki.serverCert}"
tls_key = "${pki.clientKey}"
client_ca = "${pki.ca}"
`,
  );
  return {
    file,
    needles: [
      /listeners\[0\]\.trusted_proxies\[0\][^\n]*10\.0\.0\.0\/8/,
      /firewall\.geoip_db[^\n]*missing\.mmdb/,
      /grpc\.tls_key \([^)]*\) does not match grpc\.tls_cert/,
    ],
  };
}

describe("preflight: every problem in one run (binary)", () => {
  test("check on a file with a bad trusted_proxies entry, an unreadable GeoIP database and a mismatched admin key prints all three, exit 1", () => {
    ensureBinary();
    const { file, needles } = threeProblems();
    const r = runCli(["check", "-c", file]);
    expect(r.code).toBe(1);
    for (const n of needles) expect(r.err).toMatch(n);
    // One problem a line, each naming the file.
    for (const line of r.err.split("\n").filter((l) => needles.some((n) => n.test(l))))
      expect(line).toStartWith(`${file}: `);
    expect(r.out).not.toContain("OK");
  });

  test("server on the same file prints the same three problems and binds nothing", () => {
    const { file, needles } = threeProblems();
    const r = runCli(["server", "-c", file]);
    expect(r.code).toBe(1);
    for (const n of needles) expect(r.err).toMatch(n);
    expect(r.err).not.toContain("listening");
  });

  test("a config problem, an unreadable GeoIP database and an admin CA that TLS refuses: all three in one run", () => {
    const pki = adminPki();
    const dir = tempDir();
    const file = join(dir, "c.toml");
    writeFileSync(
      join(dir, "ca.pem"),
      "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
    );
    writeFileSync(
      file,
      `[[listeners]]
addr = "127.0.0.1:1"
trusted_proxies = ["10.0.0.0/8"]
[firewall]
geoip_db = "missing.mmdb"
[grpc]
addr = "127.0.0.1:2"
tls_cert = "${pki.serverCert}"
tls_key = "${pki.serverKey}"
client_ca = "ca.pem"
`,
    );
    const r = runCli(["check", "-c", file]);
    expect(r.code).toBe(1);
    expect(r.err).toContain(`${file}: listeners[0].trusted_proxies: only meaningful with proxy_protocol = true`);
    expect(r.err).toMatch(/firewall\.geoip_db: [^\n]*missing\.mmdb/);
    expect(r.err).toMatch(/grpc: TLS refuses tls_cert, tls_key and client_ca \([^)]*ca\.pem\)/);
  });

  test("a TOML syntax error names FILE:LINE:COLUMN and says nothing else was checked", () => {
    const file = join(tempDir(), "c.toml");
    writeFileSync(file, `[[listeners]]\naddr = "127.0.0.1:1"\n\n[grpc]\naddr "unix:a.sock"\n`);
    const r = runCli(["check", "-c", file]);
    expect(r.code).toBe(1);
    expect(r.err).toContain(`${file}:5:6: not valid TOML: Expected '=' after a key`);
    expect(r.err).toContain("nothing else is checked until the file parses");
  });

  test("unreadable files of every group are named together: the admin API's and etcd's certificates, the GeoIP database", () => {
    const dir = tempDir();
    const file = join(dir, "c.toml");
    writeFileSync(
      file,
      `[[listeners]]
addr = "127.0.0.1:1"
[firewall]
geoip_db = "nope.mmdb"
[grpc]
addr = "127.0.0.1:2"
tls_cert = "nope.pem"
tls_key = "nope.key"
client_ca = "nope-ca.pem"
[store]
backend = "etcd"
[etcd]
endpoints = ["https://127.0.0.1:2379"]
prefix = "/mc-proxy/test/"
ca = "nope-etcd-ca.pem"
cert = "nope-etcd.pem"
key = "nope-etcd.key"
`,
    );
    const r = runCli(["check", "-c", file]);
    expect(r.code).toBe(1);
    for (const key of [
      "firewall.geoip_db",
      "grpc.tls_cert",
      "grpc.tls_key",
      "grpc.client_ca",
      "etcd.ca",
      "etcd.cert",
      "etcd.key",
    ])
      expect(r.err).toContain(`${key}: `);
  });
});
