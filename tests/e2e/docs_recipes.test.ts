// Every fenced block of README.md, RUNBOOK.md and docs/*.md is run as written,
// or marked in the Markdown as not runnable with its reason (the markers:
// tests/helpers/recipes.ts). docs/SPEC.md is included: its configuration is a
// config like any other, and the product contract must not show one that fails.
//
// - ```toml: written to a directory holding the files the docs' configs name
//   (certs/*.pem, GeoLite2-Country.mmdb, relative to the config) and run
//   through `dist/mc-proxy check -c`; a fragment is placed into a minimal
//   config first.
// - ```sh: each block is one `sh` script run in its environment, every command's
//   exit code checked (non-zero expected where its comment says "reset"; the
//   text quoted after "routed:" expected in its output). `mc-proxy` on PATH is
//   dist/mc-proxy, `dist/mc-proxy` too, `buf` the npm one; grpcurl, when not
//   installed, is the same call made by `buf curl` (said on stderr).
//   Environments: the packaged layout (RUNBOOK: /srv/mc-proxy is this test's
//   directory, the one path rewritten, in configs and commands alike; the
//   server started by the blocks' own `mc-proxy server -c …` line); the demo
//   (README step 1: examples/mc-proxy.toml on 127.0.0.1:8443, its TLS backend
//   on 127.0.0.1:9443); the admin API over TCP (127.0.0.1:9090, mTLS, with the
//   certificates ADMIN_API.md's openssl block makes).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { adminPki, testCert } from "../helpers/certs";
import { writeMmdb } from "../helpers/mmdb_writer";
import { named } from "../helpers/backends";
import { helloFor } from "../helpers/hello_builder";
import { firstReply, freePort, sleep } from "../helpers/net";
import { ROOT, RunningProxy, cleanEnv, ensureBinary, tempDir } from "../helpers/proxy";
import { type Recipe, changesHost, extractRecipes, shellCommands, shellWords, withBase } from "../helpers/recipes";

const BUF = join(ROOT, "node_modules/@bufbuild/buf-linux-x64/bin/buf");
const SRV = "/srv/mc-proxy";
const SHELLS = new Set(["sh", "bash", "console", "shell"]);

const DOCS = [
  "README.md",
  "RUNBOOK.md",
  ...readdirSync(join(ROOT, "docs"))
    .filter((f) => f.endsWith(".md"))
    .sort()
    .map((f) => `docs/${f}`),
];
const RECIPES: Recipe[] = DOCS.flatMap((f) => extractRecipes(f, readFileSync(join(ROOT, f), "utf8")));
const where = (r: Recipe) => `${r.file}:${r.line}`;

type Env = "packaged" | "demo" | "admin over TCP";
const envOf = (r: Recipe): Env =>
  r.marker.kind === "demo" || r.marker.kind === "admin over TCP" ? r.marker.kind : "packaged";

let bin = "";
let binDir = "";
let geo: Uint8Array;
const dirs = new Map<Env, string>();
const servers = new Map<Env, RunningProxy>();
let backend: ReturnType<typeof Bun.serve> | null = null;

function environment(extra: Record<string, string> = {}): Record<string, string> {
  return cleanEnv({
    PATH: `${binDir}:${process.env.PATH ?? ""}`,
    BUF_CACHE_DIR: join(binDir, "buf-cache"),
    RECIPE_BUF: BUF,
    ...extra,
  });
}

/** A directory with every file the docs' configs name, relative to the config. */
function configDir(pki: ReturnType<typeof adminPki>): string {
  const dir = tempDir("mcproxy-recipe-");
  mkdirSync(join(dir, "certs"));
  const files: Record<string, string> = {
    "cert.pem": pki.serverCert,
    "key.pem": pki.serverKey,
    "ca.pem": pki.ca,
    "admin.pem": pki.opsAdminCert,
    "admin.key": pki.opsAdminKey,
    "etcd-ca.pem": pki.ca,
    "etcd-client.pem": pki.clientCert,
    "etcd-client.key": pki.clientKey,
  };
  for (const [name, from] of Object.entries(files)) copyFileSync(from, join(dir, "certs", name));
  writeFileSync(join(dir, "GeoLite2-Country.mmdb"), geo);
  return dir;
}

/** dist/mc-proxy beside the commands, as in a checkout. */
function checkoutLike(dir: string): void {
  mkdirSync(join(dir, "dist"), { recursive: true });
  symlinkSync(bin, join(dir, "dist/mc-proxy"));
}

async function startServer(env: Env, commandLine: string): Promise<RunningProxy> {
  const dir = dirs.get(env)!;
  const proc = Bun.spawn(["sh", "-c", `exec ${commandLine}`], {
    cwd: dir,
    env: environment(),
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const config = shellWords(commandLine)[shellWords(commandLine).indexOf("-c") + 1]!;
  const p = new RunningProxy(proc, config);
  const end = Date.now() + 20_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`${commandLine} exited with ${proc.exitCode}:\n${p.output}`);
    const st = Bun.spawnSync([bin, "status", "-c", config], {
      cwd: dir,
      env: environment(),
      stdout: "pipe",
      stderr: "pipe",
    });
    if (st.exitCode === 0) break;
    if (Date.now() > end) {
      await p.stop();
      throw new Error(`${commandLine} did not answer status within 20 s:\n${p.output}`);
    }
    await sleep(100);
  }
  servers.set(env, p);
  return p;
}

const isServer = (words: string[]) => /(^|\/)mc-proxy$/.test(words[0] ?? "") && words[1] === "server";
const CLIENTS = /^(mc-proxy|dist\/mc-proxy|grpcurl|buf|curl)$/;
const needsServer = (r: Recipe) =>
  shellCommands(r.body).some(
    (c) =>
      !c.notRunHere && c.text.split(/\s*(?:&&|\|\||;|\|)\s*/).some((part) => CLIENTS.test(shellWords(part)[0] ?? "")),
  );

interface Outcome {
  where: string;
  command: string;
  problem: string;
}

/** Run one shell block in its environment; what went wrong, one entry per command. */
async function runShell(r: Recipe): Promise<Outcome[]> {
  const env = envOf(r);
  const dir = dirs.get(env)!;
  const sub = (s: string) => s.replaceAll(SRV, dir);
  const cmds = shellCommands(r.body);
  const problems: Outcome[] = [];
  const at = (line: number) => `${r.file}:${r.line + line}`;
  for (const c of cmds)
    if (!c.notRunHere && isServer(shellWords(c.text)) && !servers.has(env)) await startServer(env, sub(c.text));
  if (needsServer(r) && !servers.has(env)) await startServer(env, defaultServer(env));
  const script = ["exec 2>&1"];
  cmds.forEach((c, i) => {
    if (c.notRunHere || isServer(shellWords(c.text))) return;
    // Checked again here, so that a block added since the first test is never run on the host.
    if (changesHost(sub(c.text)) !== null) return;
    script.push(`echo "@@begin ${i}"`, sub(c.text), `echo "@@end ${i} $?"`);
  });
  const began = Date.now();
  // Not spawnSync: the demo's backend answers from this process.
  const proc = Bun.spawn(["sh", "-c", script.join("\n")], {
    cwd: dir,
    env: environment(),
    stdout: "pipe",
    stderr: "pipe",
    timeout: 60_000,
  });
  const [out] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
  console.log(`${where(r)} (${env}): ${cmds.length} commands, ${Date.now() - began} ms`);
  for (const [i, c] of cmds.entries()) {
    if (c.notRunHere || isServer(shellWords(c.text))) continue;
    const problem = (p: string) => problems.push({ where: at(c.line), command: c.text, problem: p });
    const host = changesHost(sub(c.text));
    if (host !== null) {
      problem(`not run: it ${host}`);
      continue;
    }
    const m = new RegExp(`@@begin ${i}\\n([\\s\\S]*?)@@end ${i} (\\d+)`).exec(out);
    if (m === null) {
      problem(`never finished (60 s):\n${out}`);
      continue;
    }
    const [, text, code] = m;
    const reset = /^reset\b/.test(c.comment);
    if (reset ? code === "0" : code !== "0") problem(`exit ${code}${reset ? " (a reset was expected)" : ""}: ${text}`);
    const routed = /^routed: "([^"]+)"/.exec(c.comment);
    if (routed !== null && !text!.includes(routed[1]!)) problem(`output lacks "${routed[1]}": ${text}`);
  }
  return problems;
}

function defaultServer(env: Env): string {
  if (env === "demo") return "dist/mc-proxy server -c examples/mc-proxy.toml";
  return `mc-proxy server -c ${join(dirs.get(env)!, "mc-proxy.toml")}`;
}

beforeAll(() => {
  bin = ensureBinary(); // may build dist/mc-proxy: a minute or two
  geo = writeMmdb([{ cidr: "192.0.2.0/24", record: { country: { iso_code: "KP" } } }]);
  binDir = tempDir("mcproxy-recipe-bin-");
  symlinkSync(bin, join(binDir, "mc-proxy"));
  if (existsSync(BUF)) symlinkSync(BUF, join(binDir, "buf"));
  if (Bun.which("grpcurl") === null) {
    writeFileSync(
      join(binDir, "grpcurl"),
      `#!/bin/sh\nexec "${process.execPath}" "${join(ROOT, "tests/helpers/grpcurl_via_buf.ts")}" "$@"\n`,
      { mode: 0o755 },
    );
    console.warn("grpcurl is not installed: the docs' grpcurl commands run as the same call made by buf curl");
  }
  // The packaged layout: /srv/mc-proxy with its config, the admin socket beside it.
  const srv = tempDir("mcproxy-recipe-srv-");
  checkoutLike(srv);
  writeFileSync(join(srv, "GeoLite2-Country.mmdb"), geo);
  writeFileSync(
    join(srv, "mc-proxy.toml"),
    `[[listeners]]\naddr = "127.0.0.1:${freePort()}"\nname = "public"\n  [[listeners.routes]]\n  hostname = "app.example.com"\n` +
      `  backends = ["10.0.0.5:8443", "10.0.0.6:8443"]\n  health_check = "off"\n\n[grpc]\naddr = "unix:${srv}/admin.sock"\n\n` +
      `[firewall]\ngeoip_db = "GeoLite2-Country.mmdb"\nblocked_countries = ["KP"]\n\n[log]\nformat = "json"\n`,
  );
  dirs.set("packaged", srv);
  // The demo: a copy of examples/mc-proxy.toml (its database is created beside the copy) and the demo's backend.
  const demo = tempDir("mcproxy-recipe-demo-");
  checkoutLike(demo);
  mkdirSync(join(demo, "examples"));
  copyFileSync(join(ROOT, "examples/mc-proxy.toml"), join(demo, "examples/mc-proxy.toml"));
  dirs.set("demo", demo);
  // The admin API over TCP: the certificates come from the docs' own openssl block.
  const tcp = tempDir("mcproxy-recipe-tcp-");
  // a copy: buf does not follow a symlinked directory
  cpSync(join(ROOT, "proto"), join(tcp, "proto"), { recursive: true });
  writeFileSync(
    join(tcp, "mc-proxy.toml"),
    `[[listeners]]\naddr = "127.0.0.1:${freePort()}"\nname = "public"\n\n[grpc]\naddr = "127.0.0.1:9090"\n` +
      `tls_cert = "certs/cert.pem"\ntls_key = "certs/key.pem"\nclient_ca = "certs/ca.pem"\nadmin_clients = ["ops-admin"]\n` +
      `server_ca = "certs/ca.pem"\nclient_cert = "certs/admin.pem"\nclient_key = "certs/admin.key"\n\n[log]\nformat = "json"\n`,
  );
  dirs.set("admin over TCP", tcp);
}, 300_000);

afterAll(async () => {
  for (const s of servers.values()) await s.stop();
  backend?.stop(true);
});

describe("docs recipes", () => {
  test("the minimal config at the top of docs/CONFIGURATION.md passes check and serves, as written", async () => {
    const minimal = RECIPES.find((r) => r.file === "docs/CONFIGURATION.md" && r.lang === "toml");
    expect(minimal?.body).toContain("[[listeners]]");
    const dir = tempDir();
    writeFileSync(join(dir, "mc-proxy.toml"), minimal!.body);
    const checked = Bun.spawnSync([bin, "check", "-c", "mc-proxy.toml"], { cwd: dir, env: environment() });
    expect(checked.exitCode).toBe(0);
    const be = named("minimal backend", 9443);
    const server = Bun.spawn([bin, "server", "-c", "mc-proxy.toml"], {
      cwd: dir,
      env: environment(),
      stdout: "pipe",
      stderr: "pipe",
    });
    try {
      let got = "";
      for (const end = Date.now() + 15_000; got === "" && Date.now() < end; await sleep(50))
        got = await firstReply(8443, helloFor("app.example.com"));
      expect(got).toBe("minimal backend");
      expect(await firstReply(8443, helloFor("other.example.com"))).toBe("minimal backend");
    } finally {
      server.kill("SIGTERM");
      await server.exited;
      be.stop();
    }
  }, 60_000);

  test("every fenced block is run by this test or marked not runnable with its reason", () => {
    const unmarked = RECIPES.filter(
      (r) => r.marker.kind !== "not runnable" && r.lang !== "toml" && !SHELLS.has(r.lang),
    ).map((r) => `${where(r)} (\`\`\`${r.lang || "no language"})`);
    expect(unmarked).toEqual([]);
    const misplaced = RECIPES.filter(
      (r) =>
        (r.marker.kind === "fragment" && r.lang !== "toml") ||
        ((r.marker.kind === "demo" || r.marker.kind === "admin over TCP") && !SHELLS.has(r.lang)),
    ).map(where);
    expect(misplaced).toEqual([]);
    // A shell block of commands none of which is run must say so for the whole block.
    const allSkipped = RECIPES.filter(
      (r) => SHELLS.has(r.lang) && r.marker.kind !== "not runnable" && shellCommands(r.body).every((c) => c.notRunHere),
    ).map(where);
    expect(allSkipped).toEqual([]);
    // A command that would change this machine must be marked: never run here.
    const host = RECIPES.filter((r) => SHELLS.has(r.lang) && r.marker.kind !== "not runnable").flatMap((r) =>
      shellCommands(r.body)
        .filter((c) => !c.notRunHere && changesHost(c.text.replaceAll(SRV, "/tmp/srv")) !== null)
        .map((c) => `${r.file}:${r.line + c.line}: ${changesHost(c.text.replaceAll(SRV, "/tmp/srv"))}`),
    );
    expect(host).toEqual([]);
    // The extraction found the docs' blocks (a broken fence pattern would pass everything above).
    expect(RECIPES.filter((r) => r.marker.kind !== "not runnable").length).toBeGreaterThan(20);
  });

  test("every TOML config and fragment passes `mc-proxy check`", () => {
    const pki = adminPki();
    const failures: string[] = [];
    for (const r of RECIPES.filter((x) => x.lang === "toml" && x.marker.kind !== "not runnable")) {
      const dir = configDir(pki);
      const text = r.marker.kind === "fragment" ? withBase(r.body, "127.0.0.1:8443") : r.body;
      writeFileSync(join(dir, "mc-proxy.toml"), text.replaceAll(SRV, dir));
      const res = Bun.spawnSync([bin, "check", "-c", "mc-proxy.toml"], {
        cwd: dir,
        env: environment(),
        stdout: "pipe",
        stderr: "pipe",
        timeout: 30_000,
      });
      if (res.exitCode !== 0)
        failures.push(`${where(r)}: check exited ${res.exitCode}:\n${res.stdout.toString()}${res.stderr.toString()}`);
    }
    expect(failures).toEqual([]);
  }, 120_000);

  test("every shell recipe runs as written", async () => {
    const cert = testCert();
    backend = Bun.serve({
      hostname: "127.0.0.1",
      port: 9443,
      tls: { cert: cert.cert, key: cert.key },
      // The reply of scripts/demo.ts's backend, which README's tour quotes.
      fetch: (req) =>
        new Response(`hello from the mc-proxy demo backend (you asked for ${new URL(req.url).hostname})\n`),
    });
    const problems: Outcome[] = [];
    for (const r of RECIPES.filter((x) => SHELLS.has(x.lang) && x.marker.kind !== "not runnable"))
      problems.push(...(await runShell(r)));
    expect(problems).toEqual([]);
  }, 180_000);
});
