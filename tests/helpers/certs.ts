// Self-signed certificates for the test backends, made once per run with the
// openssl command line (Debian's openssl package).
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { selfSignedArgs } from "../../scripts/self_signed";

export interface TestCert {
  dir: string;
  certFile: string;
  keyFile: string;
  cert: string;
  key: string;
}

let cached: TestCert | null = null;

/** A P-256 certificate valid for *.example.com and example hosts; the CA is itself. */
export function testCert(): TestCert {
  if (cached !== null && existsSync(cached.certFile)) return cached;
  const dir = mkdtempSync(join(tmpdir(), "mcproxy-certs-"));
  const certFile = join(dir, "cert.pem");
  const keyFile = join(dir, "key.pem");
  const r = Bun.spawnSync(
    selfSignedArgs(keyFile, certFile, {
      cn: "alpha.example.com",
      sans: ["alpha.example.com", "beta.example.com", "*.example.com", "default.test", "localhost"],
      days: 2,
    }),
  );
  if (r.exitCode !== 0) throw new Error(`openssl req failed: ${r.stderr.toString()}`);
  cached = { dir, certFile, keyFile, cert: readFileSync(certFile, "utf8"), key: readFileSync(keyFile, "utf8") };
  return cached;
}

export interface AdminPki {
  dir: string;
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  /** A client certificate from a CA the server does not trust. */
  foreignCert: string;
  foreignKey: string;
  /** Client certificates from the trusted CA for role tests: CN=ops-admin; CN=ci-runner with DNS SAN "deployer"; CN=viewer. */
  opsAdminCert: string;
  opsAdminKey: string;
  deployerCert: string;
  deployerKey: string;
  viewerCert: string;
  viewerKey: string;
}

function openssl(args: string[]): void {
  const r = Bun.spawnSync(["openssl", ...args], { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`openssl ${args[0]} failed: ${r.stderr.toString()}`);
}

/** A CA, a server certificate for localhost / 127.0.0.1 / ::1, a client certificate, and a foreign client. */
export function adminPki(): AdminPki {
  const dir = mkdtempSync(join(tmpdir(), "mcproxy-pki-"));
  const p = (n: string) => join(dir, n);
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  for (const ca of ["ca", "foreign-ca"])
    openssl([
      "req",
      "-x509",
      ...ec,
      "-keyout",
      p(`${ca}.key`),
      "-out",
      p(`${ca}.pem`),
      "-days",
      "2",
      "-subj",
      `/CN=${ca}`,
    ]);
  const leaf = (name: string, ca: string, ext: string | null, cn = name) => {
    openssl(["req", ...ec, "-keyout", p(`${name}.key`), "-out", p(`${name}.csr`), "-subj", `/CN=${cn}`]);
    const args = [
      "x509",
      "-req",
      "-in",
      p(`${name}.csr`),
      "-CA",
      p(`${ca}.pem`),
      "-CAkey",
      p(`${ca}.key`),
      "-CAcreateserial",
      "-out",
      p(`${name}.pem`),
      "-days",
      "2",
    ];
    if (ext !== null) {
      writeFileSync(p(`${name}.ext`), ext);
      args.push("-extfile", p(`${name}.ext`));
    }
    openssl(args);
  };
  leaf("server", "ca", "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n");
  leaf("client", "ca", null);
  leaf("foreign", "foreign-ca", null);
  leaf("ops-admin", "ca", null);
  leaf("deployer", "ca", "subjectAltName=DNS:deployer\n", "ci-runner");
  leaf("viewer", "ca", null);
  return {
    dir,
    ca: p("ca.pem"),
    serverCert: p("server.pem"),
    serverKey: p("server.key"),
    clientCert: p("client.pem"),
    clientKey: p("client.key"),
    foreignCert: p("foreign.pem"),
    foreignKey: p("foreign.key"),
    opsAdminCert: p("ops-admin.pem"),
    opsAdminKey: p("ops-admin.key"),
    deployerCert: p("deployer.pem"),
    deployerKey: p("deployer.key"),
    viewerCert: p("viewer.pem"),
    viewerKey: p("viewer.key"),
  };
}
