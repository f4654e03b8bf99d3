// The config file and the admin API together (docs/CONFIGURATION.md "The
// file and the API"), against the compiled binary: edits to the file apply
// on reload — routes added, changed and removed, a firewall rule — while
// what the API added stays; a key both changed is the file's, and the
// conflict is reported; `check` shows the same plan first. The same for two
// fleet members on etcd (applied once, not once per member), and for a
// database written by the previous release.
import { afterAll, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { buildRef } from "../../scripts/build_ref";
import { named, type NamedBackend } from "../helpers/backends";
import { EtcdCluster, etcdMissing } from "../helpers/etcd";
import { helloFor } from "../helpers/hello_builder";
import { firstReply, freePort, waitFor } from "../helpers/net";
import { BINARY, ROOT, type RunningProxy, cleanEnv, ensureBinary, runCli, startProxy, tempDir } from "../helpers/proxy";

/** The 0.2.0 release (CHANGELOG), as tests/e2e/takeover.test.ts builds it. */
const PREVIOUS_RELEASE = "3731369";

const backends: NamedBackend[] = [];
const proxies: RunningProxy[] = [];
afterAll(async () => {
  for (const p of proxies) await p.stop();
  // A reload's successor is not the test's child: stop every server started on these configs.
  for (const p of proxies) Bun.spawnSync(["pkill", "-KILL", "-f", p.configFile]);
  for (const b of backends) b.stop();
});

function backend(name: string): NamedBackend {
  const b = named(name);
  backends.push(b);
  return b;
}

/** Who answers `host` on the listener (a backend's name), or "" when the proxy refuses it. */
const who = (port: number, host: string) => firstReply(port, helloFor(host));

/** Poll until `host` on `port` is answered by `name` (bounded), then say who answers. */
async function until(port: number, host: string, name: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while ((await who(port, host)) !== name && Date.now() < end) await Bun.sleep(50);
  expect(await who(port, host)).toBe(name);
}

function routesToml(routes: Record<string, NamedBackend>): string {
  return Object.entries(routes)
    .map(([h, b]) => `  [[listeners.routes]]\n  hostname = "${h}"\n  backend = "127.0.0.1:${b.port}"\n`)
    .join("");
}

function sqliteToml(port: number, routes: Record<string, NamedBackend>, cidrs: string[]): string {
  return `[[listeners]]
addr = "127.0.0.1:${port}"
name = "web"
${routesToml(routes)}
[firewall]
blocked_cidrs = [${cidrs.map((c) => `"${c}"`).join(", ")}]

[grpc]
addr = "unix:admin.sock"

[log]
level = "info"
format = "json"
`;
}

function cli(dir: string, file: string, ...args: string[]): string {
  const r = runCli([...args.slice(0, 2), "-c", file, ...args.slice(2)], { cwd: dir });
  if (r.code !== 0) throw new Error(`mc-proxy ${args.join(" ")}: exit ${r.code}\n${r.out}\n${r.err}`);
  return r.out + r.err;
}

/** The summary the newest "config file applied" log line carries, once there is one after `after` of them. */
async function appliedAfter(p: RunningProxy, after: number): Promise<string> {
  const lines = () => p.records().filter((r) => r.msg === "config file applied");
  await waitFor(() => lines().length > after, 20_000, "a config file applied log line");
  return String(lines()[after]!.summary);
}

describe("edits to the file apply on reload, merged with API changes (binary, SQLite)", () => {
  test("changed, added, removed route and a new CIDR in force; the API's route and rule kept; the conflict reported; check shows it first", async () => {
    ensureBinary();
    const [A, B, C, D, E, F] = ["A", "B", "C", "D", "E", "F"].map(backend) as NamedBackend[];
    const dir = tempDir();
    const port = freePort();
    const p = await startProxy(
      "binary",
      sqliteToml(port, { "a.test": A!, "b.test": B!, "c.test": C! }, ["10.9.0.0/16"]),
      {
        dir,
      },
    );
    proxies.push(p);
    const file = p.configFile;
    expect(await appliedAfter(p, 0)).toContain("first apply");
    expect(await who(port, "b.test")).toBe("B");

    // Over the API: a route and a rule of its own, and a change to a.test the file will change too.
    cli(dir, file, "routes", "add", "--listener", "web", "x.test", `127.0.0.1:${E!.port}`);
    cli(dir, file, "routes", "add", "--listener", "web", "a.test", `127.0.0.1:${E!.port}`);
    cli(dir, file, "firewall", "add", "ip", "192.0.2.7");

    // The file: b.test's backend changed, d.test added, c.test removed, a CIDR added, a.test changed.
    writeFileSync(
      file,
      sqliteToml(port, { "a.test": F!, "b.test": D!, "d.test": D! }, ["10.9.0.0/16", "198.51.100.0/24"]),
    );
    const planned = cli(dir, file, "check");
    const line = planned.split("\n").find((l) => l.includes("a start or reload applies")) ?? "";
    for (const part of ["~b.test (backends)", "+d.test", "-c.test", "+1 cidr", "a.test on web"])
      expect(line).toContain(part);

    const reload = cli(dir, file, "reload");
    expect(reload).toContain("reloaded:");
    const summary = await appliedAfter(p, 1);
    // reload prints what the new process applied (the takeover socket's hello).
    expect(reload).toContain(`applied: ${summary}`);
    // check showed what the reload applied.
    expect(line).toContain(summary.slice(0, summary.indexOf("; conflicts:")));
    expect(summary).toContain("~a.test (backends)");
    expect(summary).toContain("conflicts: a.test on web");

    expect(await who(port, "b.test")).toBe("D");
    expect(await who(port, "d.test")).toBe("D");
    expect(await who(port, "c.test")).toBe("");
    expect(await who(port, "a.test")).toBe("F"); // the file's value won
    expect(await who(port, "x.test")).toBe("E"); // the API's route kept
    const rules = cli(dir, file, "firewall", "list");
    expect(rules).toContain("198.51.100.0/24");
    expect(rules).toContain("192.0.2.7");

    // Nothing changed since: the next check plans nothing.
    expect(cli(dir, file, "check")).toContain("routes: none; firewall: none; limits: none; conflicts: none");
  }, 90_000);
});

function fleetMemberToml(endpoints: string[], port: number, routes: Record<string, NamedBackend>): string {
  return `[database]
path = "cache.db"

[store]
backend = "etcd"

[etcd]
endpoints = [${endpoints.map((e) => `"${e}"`).join(", ")}]
prefix = "/mcp/apply/"
dial_timeout = "2s"

[[listeners]]
addr = "127.0.0.1:${port}"
name = "public"
${routesToml(routes)}
[grpc]
addr = "unix:admin.sock"

[proxy]
workers = 1

[log]
level = "info"
format = "json"
`;
}

describe("the same with two fleet members on etcd (binary)", () => {
  let etcd: EtcdCluster | null = null;
  afterAll(async () => {
    await etcd?.stopAll();
  });

  test("a reload of one member applies the edit to the fleet; the other's reload of the same edit applies nothing", async () => {
    const skip = etcdMissing();
    if (skip !== null) return void console.warn(`SKIP: fleet file apply: ${skip}`);
    ensureBinary();
    etcd = new EtcdCluster(1);
    await etcd.startAll();
    const [A, B, C, X] = ["fA", "fB", "fC", "fX"].map(backend) as NamedBackend[];
    const members = [0, 1].map(() => ({ dir: tempDir(), port: freePort() }));
    const ps: RunningProxy[] = [];
    for (const m of members) {
      const p = await startProxy("binary", fleetMemberToml(etcd.endpoints, m.port, { "a.test": A!, "b.test": B! }), {
        dir: m.dir,
      });
      proxies.push(p);
      ps.push(p);
    }
    const [m0, m1] = members as [{ dir: string; port: number }, { dir: string; port: number }];
    cli(m0.dir, ps[0]!.configFile, "routes", "add", "--listener", "public", "x.test", `127.0.0.1:${X!.port}`);
    await until(m1.port, "x.test", "fX");

    // Member 0's file: b.test changed to C, c.test added.
    const edited = (port: number) =>
      fleetMemberToml(etcd!.endpoints, port, { "a.test": A!, "b.test": C!, "c.test": C! });
    writeFileSync(ps[0]!.configFile, edited(m0.port));
    expect(cli(m0.dir, ps[0]!.configFile, "check")).toContain("~b.test (backends) +c.test");
    cli(m0.dir, ps[0]!.configFile, "reload");
    const s0 = await appliedAfter(ps[0]!, 1);
    expect(s0).toContain("~b.test (backends) +c.test");
    // Member 1 serves it through the fleet, without a reload of its own.
    for (const host of ["b.test", "c.test"]) await until(m1.port, host, "fC");
    // Member 1's file gets the same edit: nothing left to apply.
    writeFileSync(ps[1]!.configFile, edited(m1.port));
    cli(m1.dir, ps[1]!.configFile, "reload");
    expect(await appliedAfter(ps[1]!, 1)).toBe("routes: none; firewall: none; limits: none; conflicts: none");
    expect(await who(m1.port, "x.test")).toBe("fX");
    expect(await who(m0.port, "x.test")).toBe("fX");
  }, 120_000);
});

describe("a database written by the previous release (0.2.0)", () => {
  test("starts under this release (the file taken as applied), and later edits to the file apply", async () => {
    ensureBinary();
    let old: string;
    try {
      old = buildRef(PREVIOUS_RELEASE, join(ROOT, ".cache/releases"));
    } catch (e) {
      return void console.warn(`SKIP: cannot build the previous release ${PREVIOUS_RELEASE}: ${(e as Error).message}`);
    }
    const [A, B] = ["oA", "oB"].map(backend) as NamedBackend[];
    const dir = tempDir();
    const port = freePort();
    const file = join(dir, "mc-proxy.toml");
    writeFileSync(file, sqliteToml(port, { "a.test": A! }, []));
    // 0.2.0 serves it once and writes the database.
    const first = Bun.spawn([old, "server", "-c", file], { cwd: dir, env: cleanEnv(), stdout: "pipe", stderr: "pipe" });
    try {
      await until(port, "a.test", "oA", 15_000);
    } finally {
      first.kill("SIGTERM");
      await first.exited;
    }
    const p = await startProxy("binary", readFileSync(file, "utf8"), { dir });
    proxies.push(p);
    expect(await appliedAfter(p, 0)).toContain("first apply");
    writeFileSync(file, sqliteToml(port, { "a.test": A!, "b.test": B! }, ["198.51.100.0/24"]));
    cli(dir, file, "reload");
    expect(await appliedAfter(p, 1)).toBe("routes: +b.test; firewall: +1 cidr; limits: none; conflicts: none");
    expect(await who(port, "b.test")).toBe("oB");
  }, 180_000);
});

describe("what the file applies obeys the rules the API's writes obey; check reads the store and nothing else", () => {
  test("a file route that clashes with an API route on (hostname, protocol) is refused by check and by the reload, and nothing breaks", async () => {
    ensureBinary();
    const [P, Q] = ["P", "Q"].map(backend) as NamedBackend[];
    const dir = tempDir();
    const port = freePort();
    const p = await startProxy("binary", sqliteToml(port, { "a.test": P! }, []), { dir });
    proxies.push(p);
    const file = p.configFile;
    await appliedAfter(p, 0);
    cli(dir, file, "routes", "add", "--listener", "web", "--alpn", "h2", "z.test", `127.0.0.1:${Q!.port}`);
    const clashing = sqliteToml(port, { "a.test": P! }, []).replace(
      "\n[firewall]",
      `  [[listeners.routes]]\n  hostname = "z.test"\n  alpn = ["h2", "http/1.1"]\n  backend = "127.0.0.1:${P!.port}"\n  [[listeners.routes]]\n  hostname = "n.test"\n  backend = "127.0.0.1:${P!.port}"\n\n[firewall]`,
    );
    writeFileSync(file, clashing);
    const checked = runCli(["check", "-c", file], { cwd: dir });
    expect(checked.code).toBe(1);
    expect(checked.err).toContain("a reload would fail to add z.test+h2,http/1.1 on web");
    cli(dir, file, "reload");
    const summary = await appliedAfter(p, 1);
    expect(summary).toContain("failed: add z.test+h2,http/1.1 on web");
    // The rest of the edit applied; the API's route stands; the table takes new routes.
    expect(await who(port, "n.test")).toBe("P");
    const listed = cli(dir, file, "routes", "list");
    expect(listed).toContain("z.test");
    expect(listed).not.toContain("h2,http/1.1");
    cli(dir, file, "routes", "add", "--listener", "web", "unrelated.test", `127.0.0.1:${Q!.port}`);
    expect(await who(port, "unrelated.test")).toBe("Q");
  }, 90_000);

  test("check creates no file beside a database no process has open, refuses a newer schema and a database path that is not a file", async () => {
    ensureBinary();
    const dir = tempDir();
    const port = freePort();
    const p = await startProxy("binary", sqliteToml(port, { "a.test": backend("R") }, []), { dir });
    await appliedAfter(p, 0);
    p.signal("SIGTERM");
    await p.exited;
    const file = p.configFile;
    const db = join(dir, "mc-proxy.db");
    const before = readdirSync(dir).sort();
    expect(before).not.toContain("mc-proxy.db-wal");
    const ok = runCli(["check", "-c", file], { cwd: dir });
    expect(ok.code).toBe(0);
    expect(ok.out).toContain("routes: none");
    expect(readdirSync(dir).sort()).toEqual(before);

    const newer = new Database(db);
    newer.run("PRAGMA user_version = 99");
    newer.close();
    const refused = runCli(["check", "-c", file], { cwd: dir });
    expect(refused.code).toBe(1);
    expect(refused.err).toContain("schema version 99 is newer than this mc-proxy knows");

    const fifoDir = tempDir();
    writeFileSync(join(fifoDir, "mc-proxy.toml"), sqliteToml(port, { "a.test": backend("S") }, []));
    expect(Bun.spawnSync(["mkfifo", join(fifoDir, "mc-proxy.db")]).exitCode).toBe(0);
    const fifo = Bun.spawnSync([BINARY, "check", "-c", "mc-proxy.toml"], {
      cwd: fifoDir,
      env: cleanEnv(),
      timeout: 20_000,
    });
    expect(fifo.exitCode).toBe(1);
    expect(fifo.stderr.toString()).toContain("is not a regular file");
  }, 60_000);
});
