// The preflight `check` and `server` share (src/cli/startup/preflight.ts):
// the config's problems and those of the files it names, collected in one
// ConfigError; a clean config comes back with its admin API prepared.
import { describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { preflight } from "../../src/cli/startup/preflight";
import { ConfigError } from "../../src/config/config";
import { adminPki } from "../helpers/certs";
import { writeMmdb } from "../helpers/mmdb_writer";

function configFile(toml: string): string {
  const f = join(mkdtempSync(join(tmpdir(), "mcproxy-preflight-")), "c.toml");
  writeFileSync(f, toml);
  return f;
}

/** The problems preflight reports for `file` (none: it returned). */
function problemsOf(file: string): string[] {
  try {
    preflight(file, {});
    return [];
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    return e.problems;
  }
}

const pki = adminPki();
const grpc = (key: string) =>
  `[grpc]\naddr = "127.0.0.1:2"\ntls_cert = "${pki.serverCert}"\ntls_key = "${key}"\nclient_ca = "${pki.ca}"\n`;

describe("preflight", () => {
  test("a config problem, an unreadable GeoIP database and a mismatched key: three problems, in that order", () => {
    const listener = `[[listeners]]\naddr = "127.0.0.1:1"\nproxy_protocol = true\ntrusted_proxies = ["10.0.0.1/8"]\n`;
    const f = configFile(`${listener}[firewall]\ngeoip_db = "missing.mmdb"\n${grpc(pki.clientKey)}`);
    const p = problemsOf(f);
    expect(p).toHaveLength(3);
    expect(p[0]).toStartWith("listeners[0].trusted_proxies[0]");
    expect(p[1]).toStartWith("firewall.geoip_db: ");
    expect(p[1]).toContain("missing.mmdb");
    expect(p[2]).toMatch(/^grpc\.tls_key \([^)]*\) does not match grpc\.tls_cert/);
  });

  test("the file a problem left unset is not checked: a wrongly typed geoip_db is one problem, not two", () => {
    const p = problemsOf(configFile(`[[listeners]]\naddr = "127.0.0.1:1"\n[firewall]\ngeoip_db = 7\n`));
    expect(p).toEqual(["firewall.geoip_db: expected a string, got 7"]);
  });

  test("a file that is not TOML is one problem; its files are not looked at", () => {
    expect(problemsOf(configFile("[[listeners]\n"))).toEqual([expect.stringContaining("not valid TOML")]);
  });

  test("a clean config returns, the admin API prepared and the config's warnings kept", () => {
    const mmdb = join(mkdtempSync(join(tmpdir(), "mcproxy-preflight-")), "g.mmdb");
    writeFileSync(mmdb, writeMmdb([{ cidr: "10.0.0.0/8", record: { country_code: "KP" } }]));
    const listener = `[[listeners]]\naddr = "127.0.0.1:1"\nproxy_protocol = true\ntrusted_proxies = ["0.0.0.0/0"]\n`;
    const f = configFile(
      `${listener}[firewall]\ngeoip_db = "${mmdb}"\nblocked_countries = ["KP"]\n${grpc(pki.serverKey)}`,
    );
    const r = preflight(f, {});
    expect(r.admin?.address).toBe("127.0.0.1:2");
    expect(r.warnings.some((w) => w.includes("trusts every address"))).toBe(true);
  });
});
