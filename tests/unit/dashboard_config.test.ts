// The [dashboard] section (src/config/dashboard.ts) and its files in the
// preflight (src/cli/startup/preflight.ts): an address (host:port or unix:),
// plain HTTP only on loopback or a unix socket, TLS files read and the key
// matching, users with unique names, known roles and argon2id hashes.
import { describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { preflight } from "../../src/cli/startup/preflight";
import { ConfigError } from "../../src/config/config";
import { isLoopbackHost } from "../../src/config/dashboard";
import { parseRoutedConfig } from "../../src/routing/route_config";
import { adminPki } from "../helpers/certs";

const HASH =
  "$argon2id$v=19$m=65536,t=2,p=1$KaOG3LawK0DArrFtm29nOc4Fr4Zdakmq3XxO1uE4T/4$2uhXIb1Zxdp13d2wu6Wt+9lP+5kdbxVr4I03c+GF7SY";
/** A string starting with `prefix` (escaped into a pattern). */
const starts = (prefix: string) =>
  expect.stringMatching(new RegExp(`^${prefix.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`));
const LISTENER = `[[listeners]]\naddr = "127.0.0.1:18443"\n`;
const user = (name: string, role = "operator", hash = HASH) =>
  `[[dashboard.users]]\nname = "${name}"\nrole = "${role}"\npassword_hash = "${hash}"\n`;

function problems(toml: string, env: Record<string, string> = {}): string[] {
  try {
    parseRoutedConfig(`${LISTENER}${toml}`, "/etc/mc-proxy/t.toml", env);
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  return [];
}

describe("[dashboard]", () => {
  test("absent: off; a loopback address with a user: valid, the defaults taken", () => {
    expect(parseRoutedConfig(LISTENER, "t.toml").dashboard).toBeNull();
    const c = parseRoutedConfig(`${LISTENER}[dashboard]\naddr = "127.0.0.1:9443"\n${user("alice")}`, "t.toml");
    expect(c.dashboard).toEqual({
      addr: "127.0.0.1:9443",
      tlsCert: null,
      tlsKey: null,
      sessionTtlMs: 8 * 3_600_000,
      users: [{ name: "alice", role: "operator", passwordHash: HASH }],
    });
  });

  test("plain HTTP: loopback, [::1], localhost and unix: pass; a wildcard or another address needs TLS", () => {
    for (const addr of ["127.0.0.1:9443", "127.0.0.2:9443", "[::1]:9443", "localhost:9443", "unix:dash.sock"])
      expect({ addr, p: problems(`[dashboard]\naddr = "${addr}"\n${user("a")}`) }).toEqual({ addr, p: [] });
    for (const addr of [":9443", "0.0.0.0:9443", "[::]:9443", "192.0.2.1:9443"]) {
      const p = problems(`[dashboard]\naddr = "${addr}"\n${user("a")}`);
      expect(p).toEqual([starts("dashboard.tls_cert, dashboard.tls_key: required for")]);
    }
    expect(problems(`[dashboard]\naddr = ":9443"\ntls_cert = "c.pem"\ntls_key = "k.pem"\n${user("a")}`)).toEqual([]);
    expect(isLoopbackHost("::ffff:127.0.0.1")).toBe(true);
    expect(isLoopbackHost("example.com")).toBe(false);
  });

  test("a unix: path is made absolute beside the config; the env may set the address", () => {
    const c = parseRoutedConfig(`${LISTENER}[dashboard]\naddr = "unix:run/d.sock"\n${user("a")}`, "/etc/mc/t.toml");
    expect(c.dashboard!.addr).toBe("unix:/etc/mc/run/d.sock");
    const e = parseRoutedConfig(`${LISTENER}[dashboard]\naddr = "127.0.0.1:1"\n${user("a")}`, "t.toml", {
      MCPROXY_DASHBOARD_ADDR: "127.0.0.1:2",
    });
    expect(e.dashboard!.addr).toBe("127.0.0.1:2");
  });

  test("every problem at once, each naming its key", () => {
    const p = problems(
      `[dashboard]\naddr = "nope"\ntls_cert = "c.pem"\nsession_ttl = "30s"\ncolour = "blue"\n` +
        `${user("alice")}${user("alice")}${user("bob", "root")}${user("eve", "reader", "plaintext")}${user("has space")}` +
        `[[dashboard.users]]\nname = "x"\nrole = "reader"\npassword_hash = "${HASH}"\nextra = 1\n`,
    );
    expect(p).toEqual([
      starts("dashboard.colour: unknown key"),
      starts('dashboard.users[1].name: "alice" is already a user\'s name'),
      starts('dashboard.users[2].role: "root" is not one of reader, operator, admin'),
      starts("dashboard.users[3].password_hash: not an argon2id hash"),
      starts('dashboard.users[4].name: "has space" must be'),
      starts("dashboard.users[5].extra: unknown key"),
      "dashboard.tls_cert, dashboard.tls_key: set both (HTTPS) or neither",
      "dashboard.session_ttl: 30s is out of range 1m-168h",
      starts('dashboard.addr: "nope": '),
    ]);
    // The hash is never echoed.
    expect(p.join("\n")).not.toContain("plaintext");
  });

  test("no users, or users not as tables; no address", () => {
    expect(problems(`[dashboard]\naddr = "127.0.0.1:1"\n`)).toEqual([
      starts("dashboard.users: at least one [[dashboard.users]] table is required"),
    ]);
    expect(problems(`[dashboard]\naddr = "127.0.0.1:1"\nusers = ["alice"]\n`)).toEqual([
      starts("dashboard.users: expected [[dashboard.users]] tables"),
    ]);
    expect(problems(`[dashboard]\n${user("a")}`)).toEqual([starts("dashboard.addr: required")]);
  });

  test("an address another part binds is refused: a listener, the admin API, the metrics", () => {
    expect(problems(`[dashboard]\naddr = "127.0.0.1:18443"\n${user("a")}`)).toEqual([
      expect.stringContaining("is the address of listeners[0]"),
    ]);
    expect(problems(`[metrics]\naddr = "127.0.0.1:9102"\n[dashboard]\naddr = "127.0.0.1:9102"\n${user("a")}`)).toEqual([
      expect.stringContaining("is the address of metrics.addr"),
    ]);
    expect(problems(`[grpc]\naddr = "unix:a.sock"\n[dashboard]\naddr = "unix:a.sock"\n${user("a")}`)).toEqual([
      expect.stringContaining("is the admin API's"),
    ]);
  });
});

describe("[dashboard] in the preflight: TLS files read, the key the certificate's", () => {
  const pki = adminPki();
  const file = (toml: string) => {
    const f = join(mkdtempSync(join(tmpdir(), "mcproxy-dash-")), "c.toml");
    writeFileSync(f, `${LISTENER}${toml}`);
    return f;
  };
  const dash = (cert: string, key: string) =>
    `[dashboard]\naddr = "127.0.0.1:9443"\ntls_cert = "${cert}"\ntls_key = "${key}"\n${user("a")}`;
  const problemsOf = (f: string) => {
    try {
      preflight(f, {});
      return [];
    } catch (e) {
      if (e instanceof ConfigError) return e.problems;
      throw e;
    }
  };

  test("a matching pair: prepared for HTTPS; plain HTTP: prepared without TLS", () => {
    expect(preflight(file(dash(pki.serverCert, pki.serverKey)), {}).dashboard?.tls).not.toBeNull();
    expect(preflight(file(`[dashboard]\naddr = "127.0.0.1:9443"\n${user("a")}`), {}).dashboard).toMatchObject({
      tls: null,
    });
  });

  test("a key of another certificate, or a missing file, is named", () => {
    expect(problemsOf(file(dash(pki.serverCert, pki.clientKey)))).toEqual([
      expect.stringMatching(/^dashboard\.tls_key \([^)]*\) does not match dashboard\.tls_cert/),
    ]);
    expect(problemsOf(file(dash("/nonexistent/c.pem", pki.serverKey)))).toEqual([
      starts("dashboard.tls_cert: cannot read /nonexistent/c.pem"),
    ]);
  });
});
