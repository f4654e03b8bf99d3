// Who can reach the admin API, and how: TLS 1.3 only, mTLS enforced, a 0600
// unix socket; server reflection from the compiled binary with the source
// tree absent (buf curl, which speaks grpcurl's reflection protocol); and the
// operator CLI against a running binary.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as grpc from "@grpc/grpc-js";
import { Database } from "bun:sqlite";
import { copyFileSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { connect as tlsConnect } from "node:tls";
import { adminDefinition } from "../../src/admin/protos";
import { AdminClient } from "../../src/cli/admin_client";
import { adminPki } from "../helpers/certs";
import { freePort, waitFor } from "../helpers/net";
import { ROOT, cleanEnv, command, type RunningProxy, listenerToml, startProxy, tempDir } from "../helpers/proxy";
import { RUN_AS, buildRootfs } from "../helpers/rootfs";
import { adminToml, unixGrpcConfig } from "../helpers/admin";

const BUF = join(ROOT, "node_modules/@bufbuild/buf-linux-x64/bin/buf");

/** A raw grpc-js client with the given channel credentials. */
function rawStatus(port: number, creds: grpc.ChannelCredentials): Promise<grpc.ServiceError | null> {
  const pkg = grpc.loadPackageDefinition(adminDefinition()) as unknown as {
    mc_proxy: {
      v1: {
        ProxyAdminService: new (
          t: string,
          c: grpc.ChannelCredentials,
          o: object,
        ) => grpc.Client & { GetStatus: (...args: unknown[]) => unknown };
      };
    };
  };
  const c = new pkg.mc_proxy.v1.ProxyAdminService(`127.0.0.1:${port}`, creds, {
    "grpc.ssl_target_name_override": "localhost",
  });
  return new Promise((resolve) => {
    c.GetStatus({}, new grpc.Metadata(), { deadline: Date.now() + 3000 }, (err: grpc.ServiceError | null) => {
      c.close();
      resolve(err);
    });
  });
}

describe("admin access (binary)", () => {
  const pki = adminPki();
  let proxy: RunningProxy;
  let grpcPort = 0;

  beforeAll(async () => {
    grpcPort = freePort();
    proxy = await startProxy("binary", adminToml(pki, grpcPort, freePort(), {}), { dir: tempDir() });
  });
  afterAll(async () => {
    await proxy?.stop();
  });

  test("the proper client certificate works", async () => {
    const ok = await rawStatus(
      grpcPort,
      grpc.credentials.createSsl(readFileSync(pki.ca), readFileSync(pki.clientKey), readFileSync(pki.clientCert)),
    );
    expect(ok).toBeNull();
  });

  test("a plaintext client is refused", async () => {
    const err = await rawStatus(grpcPort, grpc.credentials.createInsecure());
    expect(err?.code).toBe(grpc.status.UNAVAILABLE);
  });

  test("without a client certificate the call fails", async () => {
    const err = await rawStatus(grpcPort, grpc.credentials.createSsl(readFileSync(pki.ca)));
    expect(err).not.toBeNull();
    expect(err!.code).toBe(grpc.status.UNAVAILABLE);
  });

  test("a client certificate from another CA is refused", async () => {
    const err = await rawStatus(
      grpcPort,
      grpc.credentials.createSsl(readFileSync(pki.ca), readFileSync(pki.foreignKey), readFileSync(pki.foreignCert)),
    );
    expect(err).not.toBeNull();
    expect(err!.code).toBe(grpc.status.UNAVAILABLE);
  });

  test("a TLS 1.2-only client cannot complete a handshake; TLS 1.3 can", async () => {
    const handshake = (maxVersion: "TLSv1.2" | "TLSv1.3") =>
      new Promise<{ ok: boolean; protocol: string | null; error: string | null }>((resolve) => {
        const s = tlsConnect({
          host: "127.0.0.1",
          port: grpcPort,
          servername: "localhost",
          ca: readFileSync(pki.ca),
          cert: readFileSync(pki.clientCert),
          key: readFileSync(pki.clientKey),
          minVersion: "TLSv1.2",
          maxVersion,
          ALPNProtocols: ["h2"],
        });
        const t = setTimeout(() => {
          s.destroy();
          resolve({ ok: false, protocol: null, error: "timeout" });
        }, 3000);
        s.on("secureConnect", () => {
          clearTimeout(t);
          const protocol = s.getProtocol();
          s.destroy();
          resolve({ ok: true, protocol, error: null });
        });
        s.on("error", (e) => {
          clearTimeout(t);
          resolve({ ok: false, protocol: null, error: e.message });
        });
      });
    const v12 = await handshake("TLSv1.2");
    expect(v12.ok).toBe(false);
    const v13 = await handshake("TLSv1.3");
    expect(v13).toEqual({ ok: true, protocol: "TLSv1.3", error: null });
  });
});

describe("admin API on a unix socket (binary)", () => {
  test("the socket file is 0600, the CLI works over it, and a stale socket is replaced", async () => {
    const dir = tempDir();
    const sock = join(dir, "admin.sock");
    const port = freePort();
    const toml = `${listenerToml(port, { "a.example.com": 1 })}\n[grpc]\naddr = "unix:admin.sock"\n`;
    let proxy = await startProxy("binary", toml, { dir });
    try {
      const st = statSync(sock);
      expect(st.isSocket()).toBe(true);
      expect(st.mode & 0o777).toBe(0o600);
      const r = Bun.spawnSync([...command("binary"), "routes", "list", "-c", proxy.configFile], {
        env: cleanEnv(),
        stdout: "pipe",
        stderr: "pipe",
      });
      expect(r.stderr.toString()).toBe("");
      expect(r.stdout.toString()).toContain("a.example.com  ->  127.0.0.1:1");
      // A crash leaves the socket file behind; the next start replaces it.
      proxy.proc.kill("SIGKILL");
      await proxy.exited;
      expect(existsSync(sock)).toBe(true);
      proxy = await startProxy("binary", toml, { dir });
      expect(statSync(sock).mode & 0o777).toBe(0o600);
      const c = new AdminClient(unixGrpcConfig(sock));
      const s = await c.call<{ listeners: unknown[] }>("GetStatus");
      c.close();
      expect(s.listeners.length).toBe(1);
      // A second instance on the same live socket refuses to start.
      const second = Bun.spawnSync([...command("binary"), "server", "-c", proxy.configFile], {
        env: cleanEnv({ MCPROXY_DATABASE_PATH: join(dir, "other.db") }),
        stdout: "pipe",
        stderr: "pipe",
      });
      expect(second.exitCode).toBe(1);
    } finally {
      await proxy.stop();
    }
  });
});

describe("reflection from the compiled binary with no source tree (chroot)", () => {
  test("buf curl lists the services and calls GetStatus over mTLS", async () => {
    const fs = buildRootfs();
    if (fs === null) {
      console.warn("SKIP: reflection-in-chroot check needs root with chroot and mount");
      return;
    }
    const pki = adminPki();
    // Everything the server reads or writes lives in /srv/mc-proxy, owned by the mc-proxy user it runs as.
    const srv = join(fs.root, "srv/mc-proxy");
    for (const f of ["ca.pem", "server.pem", "server.key"]) copyFileSync(join(pki.dir, f), join(srv, f));
    const grpcPort = freePort();
    writeFileSync(
      join(srv, "mc-proxy.toml"),
      `${listenerToml(freePort(), {})}
[grpc]
addr = "127.0.0.1:${grpcPort}"
tls_cert = "server.pem"
tls_key = "server.key"
client_ca = "ca.pem"
[log]
format = "json"
`,
    );
    Bun.spawnSync(["chown", "-R", RUN_AS, srv]);
    const p = Bun.spawn(fs.argv("server", "-c", "/srv/mc-proxy/mc-proxy.toml"), { stdout: "pipe", stderr: "pipe" });
    let log = "";
    void (async () => {
      for await (const chunk of p.stderr) log += new TextDecoder().decode(chunk);
    })();
    try {
      await waitFor(() => log.includes('"started"') || p.exitCode !== null, 15_000, "started");
      expect(log).toContain("admin API listening");
      const env = { ...process.env, BUF_CACHE_DIR: tempDir("buf-cache-") };
      const tls = ["--cacert", pki.ca, "--cert", pki.clientCert, "--key", pki.clientKey];
      const list = Bun.spawn(
        [BUF, "curl", "--protocol", "grpc", "--list-services", ...tls, `https://127.0.0.1:${grpcPort}`],
        { env, stdout: "pipe", stderr: "pipe" },
      );
      const services = (await new Response(list.stdout).text()).trim().split("\n");
      expect(services).toContain("mc_proxy.v1.ProxyAdminService");
      expect(services).toContain("grpc.health.v1.Health");
      const call = Bun.spawn(
        [
          BUF,
          "curl",
          "--protocol",
          "grpc",
          ...tls,
          `https://127.0.0.1:${grpcPort}/mc_proxy.v1.ProxyAdminService/GetStatus`,
        ],
        {
          env,
          stdout: "pipe",
          stderr: "pipe",
        },
      );
      const out = await new Response(call.stdout).text();
      expect(await call.exited).toBe(0);
      const status = JSON.parse(out) as { version: string; listeners: unknown[] };
      expect(status.version).toMatch(/^\d+\.\d+\.\d+/);
      expect(status.listeners.length).toBe(1);
      const health = Bun.spawn(
        [BUF, "curl", "--protocol", "grpc", ...tls, `https://127.0.0.1:${grpcPort}/grpc.health.v1.Health/Check`],
        { env, stdout: "pipe", stderr: "pipe" },
      );
      expect(JSON.parse(await new Response(health.stdout).text())).toEqual({ status: "SERVING" });
    } finally {
      p.kill("SIGTERM");
      await p.exited;
      fs.cleanup();
    }
  }, 60_000);
});

describe("operator CLI against a running binary", () => {
  const pki = adminPki();
  let proxy: RunningProxy;
  let port = 0;
  const cli = (...args: string[]) => {
    const r = Bun.spawnSync([...command("binary"), ...args, "-c", proxy.configFile], {
      env: cleanEnv(),
      stdout: "pipe",
      stderr: "pipe",
    });
    return { code: r.exitCode, out: r.stdout.toString(), err: r.stderr.toString() };
  };

  beforeAll(async () => {
    port = freePort();
    proxy = await startProxy("binary", adminToml(pki, freePort(), port, { "alpha.example.com": 9001 }), {
      dir: tempDir(),
    });
  });
  afterAll(async () => {
    await proxy?.stop();
  });

  test("status", () => {
    const r = cli("status");
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^mc-proxy \d+\.\d+\.\d+, up /);
    expect(r.out).toContain(`127.0.0.1:${port}  routes=1  active=0  max=unlimited`);
    const j = JSON.parse(cli("status", "--json").out) as { listeners: { addr: string }[] };
    expect(j.listeners[0]!.addr).toBe(`127.0.0.1:${port}`);
  });

  test("routes add / list / remove", () => {
    expect(cli("routes", "add", "Beta.Example.com", "127.0.0.1:9002").out).toContain("added: 127.0.0.1:");
    expect(cli("routes", "add", "beta.example.com", "127.0.0.1:9003").out).toContain("replaced:");
    const list = cli("routes", "list");
    expect(list.out).toContain("beta.example.com  ->  127.0.0.1:9003");
    const json = JSON.parse(cli("routes", "list", "--json").out) as { listeners: { routes: { hostname: string }[] }[] };
    expect(json.listeners[0]!.routes.map((r) => r.hostname)).toEqual(["alpha.example.com", "beta.example.com"]);
    expect(cli("routes", "remove", "beta.example.com").code).toBe(0);
    expect(cli("routes", "list").out).not.toContain("beta.example.com");
  });

  test("firewall add / list / remove", () => {
    expect(cli("firewall", "add", "cidr", "198.51.100.0/24").out).toContain("added: cidr 198.51.100.0/24");
    expect(cli("firewall", "add", "ip", "192.0.2.9").code).toBe(0);
    const list = cli("firewall", "list");
    expect(list.out).toContain("cidr    198.51.100.0/24");
    expect(list.out).toContain("ip      192.0.2.9");
    expect(cli("firewall", "remove", "ip", "192.0.2.9").code).toBe(0);
    expect(cli("firewall", "list").out).not.toContain("192.0.2.9");
  });

  test("server-side errors are one clear line and a non-zero exit", () => {
    const bad = cli("routes", "add", "x.example.com", "nohost");
    expect(bad.code).toBe(1);
    expect(bad.err.trim().split("\n").length).toBe(1);
    expect(bad.err).toContain("INVALID_ARGUMENT: route.backend");
    const missing = cli("firewall", "remove", "ip", "192.0.2.200");
    expect(missing.code).toBe(1);
    expect(missing.err).toContain("NOT_FOUND");
    const usage = cli("firewall", "add", "subnet", "1.2.3.0/24");
    expect(usage.code).toBe(2);
  });

  test("snapshot writes a valid SQLite database holding the same routes", () => {
    const dest = join(tempDir(), "snap.db");
    const r = cli("snapshot", "-o", dest);
    expect(r.code).toBe(0);
    expect(r.out).toContain(dest);
    const live = JSON.parse(cli("routes", "list", "--json").out) as {
      listeners: { routes: { hostname: string; backend: string; send_proxy_protocol: string }[] }[];
    };
    const db = new Database(dest, { readonly: true });
    expect((db.query("PRAGMA integrity_check").get() as { integrity_check: string }).integrity_check).toBe("ok");
    const rows = db
      .query(
        "SELECT hostname, value ->> '$.backends[0].addr' AS backend, 'SEND_PROXY_PROTOCOL_' || upper(value ->> '$.send_proxy_protocol') AS send_proxy_protocol FROM routes ORDER BY hostname",
      )
      .all();
    db.close();
    expect(rows).toEqual(
      live.listeners[0]!.routes.map(({ hostname, backend, send_proxy_protocol }) => ({
        hostname,
        backend,
        send_proxy_protocol,
      })),
    );
    // The default path: a timestamped file in backups/ beside the database.
    const d = cli("snapshot");
    expect(d.code).toBe(0);
    expect(d.out).toMatch(/backups\/mc-proxy-\d{8}T\d{6}\.\d{3}Z\.db/);
  });

  test("snapshot --keep: 10 snapshots, keep 7 — the 3 oldest are gone, other files and the database untouched", async () => {
    const live = join(dirname(proxy.configFile), "data");
    const backups = join(live, "backups");
    const { readdirSync: ls, rmSync, statSync: st } = await import("node:fs");
    rmSync(backups, { recursive: true, force: true });
    mkdirSync(backups, { recursive: true });
    writeFileSync(join(backups, "notes.txt"), "not a snapshot");
    const dbBefore = st(join(live, "mc-proxy.db")).ino;
    const made: string[] = [];
    for (let i = 0; i < 10; i++) {
      const r = cli("snapshot", "--keep", "7");
      expect(r.code).toBe(0);
      made.push(/backups\/(mc-proxy-\S+\.db)/.exec(r.out)![1]!);
      await Bun.sleep(5);
    }
    expect(new Set(made).size).toBe(10);
    expect(ls(backups).sort()).toEqual([...made.slice(3), "notes.txt"].sort());
    expect(st(join(live, "mc-proxy.db")).ino).toBe(dbBefore);
    expect(cli("routes", "list").code).toBe(0);
    expect(cli("snapshot", "--keep", "0").code).toBe(2);
  });
});
