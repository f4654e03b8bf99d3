// Self-signed certificates for the test backends, made once per run with the
// openssl command line (Debian's openssl package).
import { mkdtempSync, readFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

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
  const r = Bun.spawnSync([
    "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
    "-keyout", keyFile, "-out", certFile, "-days", "2", "-subj", "/CN=alpha.example.com",
    "-addext", "subjectAltName=DNS:alpha.example.com,DNS:beta.example.com,DNS:*.example.com,DNS:default.test,DNS:localhost",
  ]);
  if (r.exitCode !== 0) throw new Error(`openssl req failed: ${r.stderr.toString()}`);
  cached = { dir, certFile, keyFile, cert: readFileSync(certFile, "utf8"), key: readFileSync(keyFile, "utf8") };
  return cached;
}
