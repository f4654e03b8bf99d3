// Routing on more than the name, end to end against the compiled binary with
// two workers: ALPN routes chosen by real clients (openssl s_client, curl,
// Python, node:tls) in various preference orders; per-route allow / deny for
// clients on distinct loopback addresses, through a real HAProxy sending
// PROXY v2, and IPv6; runtime changes over the admin API; and a per-route
// connection limit that holds exactly across workers.
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { AdminClient } from "../../src/cli/admin_client";
import { unixGrpcConfig } from "../helpers/admin";
import { type NamedBackend, named } from "../helpers/backends";
import { testCert } from "../helpers/certs";
import { helloFor } from "../helpers/hello_builder";
import { freePort, rawExchange, sleep, waitFor } from "../helpers/net";
import { ensureCommands } from "../helpers/packages";
import { type RunningProxy, runCli, startProxy, tempDir } from "../helpers/proxy";
import { v2Header } from "../helpers/proxy_header_builder";
import { tlsBackend, tlsGet } from "../helpers/tls";

const HOST = "app.example.com";

interface Setup {
  proxy: RunningProxy;
  port: number;
  dir: string;
  app: Backend;
  acme: Backend;
  h2: Backend;
  pg: Backend;
  stop(): Promise<void>;
}

/** A backend that counts its connections: plain (answers its name) or TLS (completes the handshake, answers HTTP). */
type Backend = Pick<NamedBackend, "port" | "conns" | "stop">;

function tlsNamed(name: string): Backend {
  const b = tlsBackend(name, testCert());
  return {
    port: b.port,
    get conns() {
      return b.connections;
    },
    stop: () => b.stop(),
  };
}

async function setup(extraRoutes = "", listenerExtra = "", make: (name: string) => Backend = named): Promise<Setup> {
  const [app, acme, h2, pg] = ["app", "acme", "h2", "pg"].map((n) => make(n));
  const port = freePort();
  const dir = tempDir();
  const toml = `[[listeners]]
addr = "127.0.0.1:${port}"
${listenerExtra}
  [[listeners.routes]]
  hostname = "${HOST}"
  backend = "127.0.0.1:${app!.port}"
  [[listeners.routes]]
  hostname = "${HOST}"
  alpn = ["acme-tls/1"]
  backend = "127.0.0.1:${acme!.port}"
  [[listeners.routes]]
  hostname = "${HOST}"
  alpn = ["h2", "postgresql-not"]
  backend = "127.0.0.1:${h2!.port}"
  [[listeners.routes]]
  hostname = "db.example.com"
  alpn = ["postgresql"]
  backend = "127.0.0.1:${pg!.port}"
  [[listeners.routes]]
  hostname = "plain.example.com"
  backend = "127.0.0.1:${app!.port}"
${extraRoutes}
[grpc]
addr = "unix:admin.sock"

[proxy]
workers = 2
`;
  const proxy = await startProxy("binary", toml, { dir });
  return {
    proxy,
    port,
    dir,
    app: app!,
    acme: acme!,
    h2: h2!,
    pg: pg!,
    stop: async () => {
      await proxy.stop();
      for (const b of [app, acme, h2, pg]) b!.stop();
    },
  };
}

/** Which backend a client's connection reached, from the access log (the clients here are real TLS clients: the backends answer no TLS). */
async function landed(s: Setup, before: number): Promise<{ route: unknown; backend: unknown; outcome: unknown }> {
  await waitFor(() => s.proxy.access().length > before, 5000, "an access record");
  const r = s.proxy.access()[before]!;
  return { route: r.route, backend: r.backend, outcome: r.outcome };
}

/** Run a client to its end without blocking this process (the backends live here). */
async function run(cmd: string[]): Promise<void> {
  const p = Bun.spawn(cmd, { stdin: "ignore", stdout: "ignore", stderr: "ignore", timeout: 10_000 });
  await p.exited;
}

describe("ALPN routes", () => {
  const missing = ensureCommands(["openssl", "curl", "python3"], ["openssl", "curl", "python3"]);
  if (missing !== null) console.warn(`SKIP parts of ALPN routes: ${missing}`);

  test("openssl, curl, Python and node:tls clients land on the route the client's own ALPN order picks", async () => {
    const s = await setup("", "", tlsNamed);
    const cert = testCert();
    try {
      const cases: { client: string; go: () => Promise<void> | void; route: string; backend: Backend }[] = [
        {
          client: "openssl -alpn acme-tls/1",
          go: () =>
            run(["openssl", "s_client", "-connect", `127.0.0.1:${s.port}`, "-servername", HOST, "-alpn", "acme-tls/1"]),
          route: `${HOST}+acme-tls/1`,
          backend: s.acme,
        },
        {
          client: "openssl -alpn h2,acme-tls/1",
          go: () =>
            run([
              "openssl",
              "s_client",
              "-connect",
              `127.0.0.1:${s.port}`,
              "-servername",
              HOST,
              "-alpn",
              "h2,acme-tls/1",
            ]),
          route: `${HOST}+h2,postgresql-not`,
          backend: s.h2,
        },
        {
          client: "openssl -alpn acme-tls/1,h2",
          go: () =>
            run([
              "openssl",
              "s_client",
              "-connect",
              `127.0.0.1:${s.port}`,
              "-servername",
              HOST,
              "-alpn",
              "acme-tls/1,h2",
            ]),
          route: `${HOST}+acme-tls/1`,
          backend: s.acme,
        },
        {
          client: "openssl, no ALPN",
          go: () => run(["openssl", "s_client", "-connect", `127.0.0.1:${s.port}`, "-servername", HOST]),
          route: HOST,
          backend: s.app,
        },
        {
          client: "openssl -alpn http/1.1",
          go: () =>
            run(["openssl", "s_client", "-connect", `127.0.0.1:${s.port}`, "-servername", HOST, "-alpn", "http/1.1"]),
          route: HOST,
          backend: s.app,
        },
        // curl offers h2 then http/1.1 by default; --http1.1 offers http/1.1 only; --no-alpn none.
        {
          client: "curl (h2, http/1.1)",
          go: () =>
            run([
              "curl",
              "-sk",
              "--max-time",
              "3",
              "--resolve",
              `${HOST}:${s.port}:127.0.0.1`,
              `https://${HOST}:${s.port}/`,
            ]),
          route: `${HOST}+h2,postgresql-not`,
          backend: s.h2,
        },
        {
          client: "curl --http1.1",
          go: () =>
            run([
              "curl",
              "-sk",
              "--http1.1",
              "--max-time",
              "3",
              "--resolve",
              `${HOST}:${s.port}:127.0.0.1`,
              `https://${HOST}:${s.port}/`,
            ]),
          route: HOST,
          backend: s.app,
        },
        {
          client: "curl --no-alpn",
          go: () =>
            run([
              "curl",
              "-sk",
              "--no-alpn",
              "--max-time",
              "3",
              "--resolve",
              `${HOST}:${s.port}:127.0.0.1`,
              `https://${HOST}:${s.port}/`,
            ]),
          route: HOST,
          backend: s.app,
        },
        {
          client: "python ssl [postgresql]",
          go: () =>
            run([
              "python3",
              "-c",
              `import socket,ssl\nc=ssl.create_default_context();c.check_hostname=False;c.verify_mode=ssl.CERT_NONE;c.set_alpn_protocols(["postgresql"])\ns=socket.create_connection(("127.0.0.1",${s.port}),timeout=3)\ntry: c.wrap_socket(s,server_hostname="db.example.com")\nexcept Exception: pass`,
            ]),
          route: "db.example.com+postgresql",
          backend: s.pg,
        },
        {
          client: "python ssl [http/1.1, acme-tls/1]",
          go: () =>
            run([
              "python3",
              "-c",
              `import socket,ssl\nc=ssl.create_default_context();c.check_hostname=False;c.verify_mode=ssl.CERT_NONE;c.set_alpn_protocols(["http/1.1","acme-tls/1"])\ns=socket.create_connection(("127.0.0.1",${s.port}),timeout=3)\ntry: c.wrap_socket(s,server_hostname="${HOST}")\nexcept Exception: pass`,
            ]),
          route: `${HOST}+acme-tls/1`,
          backend: s.acme,
        },
        {
          client: "node:tls [acme-tls/1]",
          go: async () => void (await tlsGet(s.port, HOST, cert, { alpn: ["acme-tls/1"], timeoutMs: 2000 })),
          route: `${HOST}+acme-tls/1`,
          backend: s.acme,
        },
        // acme-tls/1 for a name without such a route: its plain route (the ACME client then fails validation, as on a plain server).
        {
          client: "openssl -alpn acme-tls/1, plain.example.com",
          go: () =>
            run([
              "openssl",
              "s_client",
              "-connect",
              `127.0.0.1:${s.port}`,
              "-servername",
              "plain.example.com",
              "-alpn",
              "acme-tls/1",
            ]),
          route: "plain.example.com",
          backend: s.app,
        },
      ];
      for (const c of cases) {
        if (missing !== null && !c.client.startsWith("node")) continue;
        const before = s.proxy.access().length;
        const conns = c.backend.conns;
        await c.go();
        expect({ client: c.client, ...(await landed(s, before)) }).toEqual({
          client: c.client,
          route: c.route,
          backend: `127.0.0.1:${c.backend.port}`,
          outcome: expect.any(String),
        });
        expect({ client: c.client, conns: c.backend.conns - conns }).toEqual({ client: c.client, conns: 1 });
      }
      // A name with ALPN routes only, asked without a protocol they name: no route (RST).
      const before = s.proxy.access().length;
      const r = await rawExchange(s.port, helloFor("db.example.com", ["h2"]));
      expect(r.end).toBe("reset");
      expect(await landed(s, before)).toEqual({ route: "", backend: "", outcome: "no_route" });
    } finally {
      await s.stop();
    }
  }, 60_000);

  test("the admin API and the CLI add, list and remove ALPN routes; a (hostname, protocol) twice is refused", async () => {
    const s = await setup();
    const admin = new AdminClient(unixGrpcConfig(join(s.dir, "admin.sock")));
    try {
      const other = named("other");
      const add = await admin.call<{ route: { alpn: string[] }; replaced: boolean }>("AddRoute", {
        listener: `127.0.0.1:${s.port}`,
        route: { hostname: "new.example.com", backend: `127.0.0.1:${other.port}`, alpn: ["xmpp-client"] },
      });
      expect(add).toMatchObject({ replaced: false, route: { alpn: ["xmpp-client"] } });
      const r = await rawExchange(s.port, helloFor("new.example.com", ["xmpp-client"]));
      expect(r.received.toString()).toBe("other");
      const dup = await admin
        .call("AddRoute", {
          listener: `127.0.0.1:${s.port}`,
          route: { hostname: HOST, backend: `127.0.0.1:${other.port}`, alpn: ["h2"] },
        })
        .catch((e: Error) => e.message);
      expect(String(dup)).toContain('ALPN "h2" is in two routes');
      const cli = (args: string[]) => runCli([...args, "-c", s.proxy.configFile], { cwd: s.dir });
      const added = cli(["routes", "add", "--alpn", "acme-tls/1", "new.example.com", `127.0.0.1:${other.port}`]);
      expect(added.code).toBe(0);
      expect(added.out).toContain("added");
      const list = cli(["routes", "list"]);
      expect(list.out).toContain(`new.example.com+acme-tls/1  ->  127.0.0.1:${other.port}`);
      expect(list.out).toContain(`${HOST}+h2,postgresql-not  ->  127.0.0.1:${s.h2.port}`);
      expect(cli(["routes", "remove", "--alpn", "acme-tls/1", "new.example.com"]).code).toBe(0);
      expect(cli(["routes", "remove", "--alpn", "acme-tls/1", "new.example.com"]).err).toContain("no route");
      // The plain route of new.example.com never existed; the xmpp one stays.
      expect(cli(["routes", "list"]).out).toContain("new.example.com+xmpp-client");
      other.stop();
    } finally {
      admin.close();
      await s.stop();
    }
  }, 60_000);
});

describe("per-route allow and deny", () => {
  test("clients on 127.0.0.x: allowed, denied (RST, route_denied); changed at runtime, on every worker", async () => {
    const s = await setup(`  [[listeners.routes]]
  hostname = "private.example.com"
  backend = "127.0.0.1:1"
  allow = ["127.0.0.0/29"]
  deny = ["127.0.0.3"]
`);
    const admin = new AdminClient(unixGrpcConfig(join(s.dir, "admin.sock")));
    try {
      // The route's backend is the app (set over the API: the TOML could not know its port).
      await admin.call("AddRoute", {
        listener: `127.0.0.1:${s.port}`,
        route: {
          hostname: "private.example.com",
          backend: `127.0.0.1:${s.app.port}`,
          allow: ["127.0.0.0/29"],
          deny: ["127.0.0.3"],
        },
      });
      const hello = helloFor("private.example.com");
      const from = async (ip: string) => {
        const before = s.proxy.access().length;
        const r = await rawExchange(s.port, hello, { localAddress: ip, timeoutMs: 800 });
        const rec = await landed(s, before);
        return { ip, end: r.end, got: r.received.toString(), outcome: rec.outcome };
      };
      expect(await from("127.0.0.2")).toEqual({ ip: "127.0.0.2", end: "timeout", got: "app", outcome: "ok" });
      expect(await from("127.0.0.3")).toEqual({ ip: "127.0.0.3", end: "reset", got: "", outcome: "route_denied" });
      expect(await from("127.0.0.9")).toEqual({ ip: "127.0.0.9", end: "reset", got: "", outcome: "route_denied" });
      // Another route of the listener is not touched by this one's policy.
      expect((await rawExchange(s.port, helloFor(HOST), { localAddress: "127.0.0.9" })).received.toString()).toBe(
        "app",
      );
      // At runtime: deny 127.0.0.2 too; every next connection (spread over both workers) is refused.
      await admin.call("AddRoute", {
        listener: `127.0.0.1:${s.port}`,
        route: {
          hostname: "private.example.com",
          backend: `127.0.0.1:${s.app.port}`,
          allow: ["127.0.0.0/29"],
          deny: ["127.0.0.2", "127.0.0.3"],
        },
      });
      const after = await Promise.all(
        Array.from({ length: 12 }, () => rawExchange(s.port, hello, { localAddress: "127.0.0.2" })),
      );
      expect(after.map((r) => r.end)).toEqual(Array(12).fill("reset"));
      const denied = () => s.proxy.access().filter((r) => r.outcome === "route_denied");
      await waitFor(() => denied().length === 14, 5000, "14 route_denied records");
      expect(new Set(denied().map((r) => r.worker)).size).toBe(2);
      // And lifted: no policy, everyone in.
      await admin.call("AddRoute", {
        listener: `127.0.0.1:${s.port}`,
        route: { hostname: "private.example.com", backend: `127.0.0.1:${s.app.port}` },
      });
      expect((await rawExchange(s.port, hello, { localAddress: "127.0.0.3" })).received.toString()).toBe("app");
      const listed = await admin.call<{ listeners: { routes: { hostname: string; allow: string[] }[] }[] }>(
        "ListRoutes",
        { listener: "" },
      );
      expect(listed.listeners[0]!.routes.find((r) => r.hostname === "private.example.com")!.allow).toEqual([]);
    } finally {
      admin.close();
      await s.stop();
    }
  }, 60_000);

  test("through a trusted PROXY v2 sender (HAProxy, and IPv6 sources): the header's source is judged", async () => {
    const missing = ensureCommands(["haproxy"], ["haproxy"]);
    const s = await setup(
      `  [[listeners.routes]]
  hostname = "private.example.com"
  backend = "127.0.0.1:1"
  allow = ["127.0.0.4/32", "2001:db8:1::/48"]
  deny = ["2001:db8:1:bad::/64"]
`,
      `proxy_protocol = true\ntrusted_proxies = ["127.0.0.1"]`,
    );
    const admin = new AdminClient(unixGrpcConfig(join(s.dir, "admin.sock")));
    let haproxy: ReturnType<typeof Bun.spawn> | null = null;
    try {
      await admin.call("AddRoute", {
        listener: `127.0.0.1:${s.port}`,
        route: {
          hostname: "private.example.com",
          backend: `127.0.0.1:${s.app.port}`,
          allow: ["127.0.0.4/32", "2001:db8:1::/48"],
          deny: ["2001:db8:1:bad::/64"],
        },
      });
      const hello = helloFor("private.example.com");
      const v6 = async (src: string) => {
        const r = await rawExchange(
          s.port,
          Buffer.concat([
            v2Header({ family: "inet6", source: [src, 40000], destination: ["2001:db8::443", 443], crc: true }),
            hello,
          ]),
        );
        return r.end === "reset" ? "reset" : r.received.toString();
      };
      expect(await v6("2001:db8:1::5")).toBe("app");
      expect(await v6("2001:db8:1:bad::5")).toBe("reset");
      expect(await v6("2001:db8:2::5")).toBe("reset");
      await waitFor(
        () =>
          s.proxy.access().filter((r) => r.outcome === "route_denied" && String(r.client).startsWith("[2001:db8:"))
            .length === 2,
        5000,
        "two IPv6 refusals",
      );
      if (missing !== null) {
        console.warn(`SKIP the HAProxy part: ${missing}`);
        return;
      }
      const front = freePort();
      const cfg = join(s.dir, "haproxy.cfg");
      await Bun.write(
        cfg,
        `global\n  maxconn 100\ndefaults\n  mode tcp\n  timeout connect 2s\n  timeout client 5s\n  timeout server 5s\nfrontend f\n  bind 127.0.0.1:${front}\n  default_backend b\nbackend b\n  server mc 127.0.0.1:${s.port} send-proxy-v2\n`,
      );
      haproxy = Bun.spawn(["haproxy", "-db", "-f", cfg], { stdout: "ignore", stderr: "ignore" });
      for (let i = 0; (await rawExchange(front, null, { timeoutMs: 100 })).end === "refused"; i++) {
        if (i > 100) throw new Error("haproxy did not start");
        await sleep(50);
      }
      const via = async (ip: string) => {
        const r = await rawExchange(front, hello, { localAddress: ip });
        return r.received.toString();
      };
      expect(await via("127.0.0.4")).toBe("app");
      // HAProxy turns our reset into its own close: the backend got nothing, and the log says why.
      expect(await via("127.0.0.5")).toBe("");
      const rec = await s.proxy.waitAccess((r) => String(r.client).startsWith("127.0.0.5:"));
      expect(rec).toMatchObject({ outcome: "route_denied", route: "private.example.com" });
      expect(String(rec.peer)).toMatch(/^127\.0\.0\.1:/);
    } finally {
      haproxy?.kill();
      admin.close();
      await s.stop();
    }
  }, 60_000);
});

describe("per-route allow and deny, IPv6 clients", () => {
  test("a client on ::1: allowed by an IPv6 block, then denied (RST, route_denied) after a runtime change", async () => {
    const app = named("app6");
    const port = freePort();
    const dir = tempDir();
    const proxy = await startProxy(
      "binary",
      `[[listeners]]\naddr = "[::1]:${port}"\n  [[listeners.routes]]\n  hostname = "v6.example.com"\n  backend = "127.0.0.1:${app.port}"\n  allow = ["::1/128", "2001:db8::/32"]\n[grpc]\naddr = "unix:admin.sock"\n[proxy]\nworkers = 2\n`,
      { dir },
    );
    const admin = new AdminClient(unixGrpcConfig(join(dir, "admin.sock")));
    try {
      const hello = helloFor("v6.example.com");
      expect((await rawExchange(port, hello, { host: "::1" })).received.toString()).toBe("app6");
      await admin.call("AddRoute", {
        listener: `[::1]:${port}`,
        route: { hostname: "v6.example.com", backend: `127.0.0.1:${app.port}`, allow: ["2001:db8::/32"] },
      });
      const after = await Promise.all(Array.from({ length: 8 }, () => rawExchange(port, hello, { host: "::1" })));
      expect(after.map((r) => r.end)).toEqual(Array(8).fill("reset"));
      await waitFor(
        () =>
          proxy.access().filter((r) => r.outcome === "route_denied" && String(r.client).startsWith("[::1]:")).length ===
          8,
        5000,
        "8 refusals of ::1",
      );
    } finally {
      admin.close();
      await proxy.stop();
      app.stop();
    }
  }, 60_000);
});

describe("per-route max_connections", () => {
  test("40 held connections against a limit of 10 with two workers: exactly 10 open, the rest RST — five times", async () => {
    const s = await setup(`  [[listeners.routes]]
  hostname = "limited.example.com"
  backend = "127.0.0.1:1"
  max_connections = 10
`);
    const admin = new AdminClient(unixGrpcConfig(join(s.dir, "admin.sock")));
    const held = named("held");
    try {
      await admin.call("AddRoute", {
        listener: `127.0.0.1:${s.port}`,
        route: { hostname: "limited.example.com", backend: `127.0.0.1:${held.port}`, max_connections: 10 },
      });
      const hello = helloFor("limited.example.com");
      for (let round = 0; round < 5; round++) {
        const socks: { end: string; got: string; close: () => void }[] = await Promise.all(
          Array.from(
            { length: 40 },
            () =>
              new Promise<{ end: string; got: string; close: () => void }>((resolve) => {
                const c = require("node:net").createConnection({ host: "127.0.0.1", port: s.port });
                let got = "";
                const t = setTimeout(() => resolve({ end: "open", got, close: () => c.destroy() }), 1500);
                c.on("connect", () => c.write(hello));
                c.on("data", (d: Buffer) => (got += d.toString()));
                c.on("error", () => {
                  clearTimeout(t);
                  resolve({ end: "reset", got, close: () => {} });
                });
                c.on("close", () => {
                  clearTimeout(t);
                  resolve({ end: "reset", got, close: () => {} });
                });
              }),
          ),
        );
        const open = socks.filter((x) => x.end === "open");
        expect({
          round,
          open: open.length,
          answered: open.filter((x) => x.got === "held").length,
          backendOpen: held.open,
        }).toEqual({ round, open: 10, answered: 10, backendOpen: 10 });
        const listed = await admin.call<{
          listeners: { routes: { hostname: string; active_connections: number; max_connections: number }[] }[];
        }>("ListRoutes", { listener: "" });
        expect(listed.listeners[0]!.routes.find((r) => r.hostname === "limited.example.com")).toMatchObject({
          active_connections: 10,
          max_connections: 10,
        });
        for (const x of socks) x.close();
        await waitFor(() => held.open === 0, 5000, "backend connections closed");
        await sleep(100);
      }
      const refused = s.proxy.access().filter((r) => r.outcome === "over_capacity");
      expect(refused.length).toBe(150);
      expect(new Set(refused.map((r) => r.route))).toEqual(new Set(["limited.example.com"]));
      expect(new Set(refused.map((r) => r.worker)).size).toBe(2);
    } finally {
      held.stop();
      admin.close();
      await s.stop();
    }
  }, 60_000);
});
