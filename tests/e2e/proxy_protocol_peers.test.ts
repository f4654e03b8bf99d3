// PROXY protocol with the real peers on both sides, against the
// compiled binary: HAProxy (send-proxy-v2, send-proxy) and nginx stream
// (proxy_protocol on) in front of mc-proxy; mc-proxy sending v2 to HAProxy
// (accept-proxy, logging the client, the SNI and the unique id) and v1 to
// nginx stream (listen … proxy_protocol). The configs here are the ones the
// docs/PROXY_PROTOCOL.md shows. Installs haproxy/nginx when missing (as root), else skips
// with a message.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Subprocess } from "bun";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { testCert } from "../helpers/certs";
import { freePort, sleep, waitFor } from "../helpers/net";
import { ensureCommands } from "../helpers/packages";
import { type RunningProxy, startProxy, tempDir } from "../helpers/proxy";
import { bodyOf, type TlsBackend, tlsBackend, tlsGet } from "../helpers/tls";

const NGINX_STREAM = "/usr/lib/nginx/modules/ngx_stream_module.so";

function missing(): string | null {
  const why = ensureCommands(["haproxy", "nginx", NGINX_STREAM], ["haproxy", "nginx", "libnginx-mod-stream"]);
  return why;
}

async function waitPort(port: number): Promise<void> {
  const end = Date.now() + 10_000;
  for (;;) {
    const ok = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } }).then(
      (s) => {
        s.end();
        return true;
      },
      () => false,
    );
    if (ok) return;
    if (Date.now() > end) throw new Error(`nothing listening on ${port}`);
    await sleep(50);
  }
}

/** Start a peer (haproxy or nginx) in the foreground; collect its stdout+stderr. */
async function peer(
  cmd: string[],
  port: number,
): Promise<{ proc: Subprocess; out: () => string; stop: () => Promise<void> }> {
  let text = "";
  const proc = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe" });
  for (const s of [proc.stdout, proc.stderr] as ReadableStream<Uint8Array>[]) {
    void (async () => {
      for await (const c of s) text += new TextDecoder().decode(c);
    })();
  }
  try {
    await waitPort(port);
  } catch (e) {
    proc.kill();
    throw new Error(`${cmd[0]} did not start: ${(e as Error).message}\n${text}`);
  }
  return {
    proc,
    out: () => text,
    stop: async () => {
      proc.kill("SIGTERM");
      await proc.exited;
    },
  };
}

function haproxyFront(dir: string, listen: number, mcproxy: number, send: "send-proxy-v2" | "send-proxy"): string {
  const f = join(dir, `haproxy-front-${send}.cfg`);
  writeFileSync(
    f,
    `global
  log stdout format raw local0
defaults
  mode tcp
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend fe
  bind 127.0.0.1:${listen}
  default_backend mc
backend mc
  server mc1 127.0.0.1:${mcproxy} ${send}
`,
  );
  return f;
}

function nginxConf(dir: string, name: string, server: string): string {
  const f = join(dir, `nginx-${name}.conf`);
  writeFileSync(
    f,
    `load_module ${NGINX_STREAM};
worker_processes 1;
pid ${dir}/nginx-${name}.pid;
error_log ${dir}/nginx-${name}-error.log warn;
daemon off;
events { worker_connections 64; }
stream {
${server}
}
`,
  );
  return f;
}

describe("real load balancers in front of mc-proxy (binary)", () => {
  const cert = testCert();
  let skip: string | null = null;
  let backend: TlsBackend;
  let proxy: RunningProxy;
  let mc = 0;
  const dir = tempDir();

  beforeAll(async () => {
    skip = missing();
    if (skip !== null) return;
    backend = tlsBackend("alpha", cert);
    mc = freePort();
    proxy = await startProxy(
      "binary",
      `[[listeners]]
addr = "127.0.0.1:${mc}"
proxy_protocol = true
trusted_proxies = ["127.0.0.1"]
  [[listeners.routes]]
  hostname = "alpha.example.com"
  backend = "127.0.0.1:${backend.port}"

[firewall]
blocked_ips = ["127.0.0.5"]
`,
      { dir },
    );
  });
  afterAll(async () => {
    await proxy?.stop();
    backend?.stop();
  });

  /** Through the balancer on `port`: 127.0.0.1 routes (logged as the client, the balancer as peer); 127.0.0.5 is refused by the firewall. */
  async function check(port: number): Promise<void> {
    const oks = () => proxy.access().filter((r) => r.outcome === "ok");
    const before = oks().length;
    const ok = await tlsGet(port, "alpha.example.com", cert);
    expect(bodyOf(ok)).toBe("hello from alpha\n");
    await waitFor(() => oks().length === before + 1, 5000, "the access record");
    const rec = oks()[before]!;
    // The client address is what the balancer saw (127.0.0.1 and the client's port), the peer is the balancer.
    expect(String(rec.client)).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(String(rec.peer)).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(rec.client).not.toBe(rec.peer);
    const blockedBefore = proxy.access().filter((r) => r.outcome === "blocked_ip").length;
    const blocked = await tlsGet(port, "alpha.example.com", cert, { localAddress: "127.0.0.5" });
    expect(bodyOf(blocked)).toBeNull();
    await waitFor(
      () => proxy.access().filter((r) => r.outcome === "blocked_ip").length === blockedBefore + 1,
      5000,
      "blocked record",
    );
    const b = proxy.access().filter((r) => r.outcome === "blocked_ip")[blockedBefore]!;
    expect(String(b.client)).toMatch(/^127\.0\.0\.5:\d+$/);
    expect(b.outcome).toBe("blocked_ip");
    expect(String(b.peer)).toMatch(/^127\.0\.0\.1:\d+$/);
  }

  for (const send of ["send-proxy-v2", "send-proxy"] as const) {
    test(`HAProxy ${send} → mc-proxy → TLS backend`, async () => {
      if (skip !== null) return void console.warn(`SKIP: HAProxy ${send}: ${skip}`);
      const port = freePort();
      const h = await peer(["haproxy", "-db", "-f", haproxyFront(dir, port, mc, send)], port);
      try {
        await check(port);
      } finally {
        await h.stop();
      }
    }, 30_000);
  }

  test("nginx stream (proxy_protocol on, v1) → mc-proxy → TLS backend", async () => {
    if (skip !== null) return void console.warn(`SKIP: nginx stream in front: ${skip}`);
    const port = freePort();
    const conf = nginxConf(
      dir,
      "front",
      `  server {\n    listen 127.0.0.1:${port};\n    proxy_pass 127.0.0.1:${mc};\n    proxy_protocol on;\n  }`,
    );
    const n = await peer(["nginx", "-c", conf], port);
    try {
      await check(port);
    } finally {
      await n.stop();
    }
  }, 30_000);
});

describe("mc-proxy sending PROXY headers to real peers (binary)", () => {
  const cert = testCert();
  let skip: string | null = null;
  let backend: TlsBackend;
  const dir = tempDir();

  beforeAll(() => {
    skip = missing();
    if (skip === null) backend = tlsBackend("alpha", cert);
  });
  afterAll(() => backend?.stop());

  test("v2 → HAProxy accept-proxy: HAProxy logs the client's address, the SNI (fc_pp_authority) and mc-proxy's id (fc_pp_unique_id)", async () => {
    if (skip !== null) return void console.warn(`SKIP: HAProxy accept-proxy: ${skip}`);
    const hp = freePort();
    const cfg = join(dir, "haproxy-accept.cfg");
    writeFileSync(
      cfg,
      `global
  log stdout format raw local0
defaults
  mode tcp
  log global
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend fe
  bind 127.0.0.1:${hp} accept-proxy
  log-format "pp client=%ci:%cp authority=%[fc_pp_authority] unique_id=%[fc_pp_unique_id]"
  default_backend tls
backend tls
  server b1 127.0.0.1:${backend.port}
`,
    );
    const h = await peer(["haproxy", "-db", "-f", cfg], hp);
    const port = freePort();
    const proxy = await startProxy(
      "binary",
      `[[listeners]]
addr = "127.0.0.1:${port}"
  [[listeners.routes]]
  hostname = "alpha.example.com"
  backend = "127.0.0.1:${hp}"
  send_proxy_protocol = "v2"
`,
    );
    try {
      const r = await tlsGet(port, "alpha.example.com", cert);
      expect(bodyOf(r)).toBe("hello from alpha\n");
      const rec = await proxy.waitAccess((x) => x.outcome === "ok");
      await waitFor(() => h.out().includes("pp client="), 5000, "HAProxy log line");
      const line = h
        .out()
        .split("\n")
        .find((l) => l.includes("pp client="))!;
      expect(line).toContain(`client=${rec.client}`);
      expect(line).toContain("authority=alpha.example.com");
      expect(line).toContain(`unique_id=${rec.id}`);
    } finally {
      await proxy.stop();
      await h.stop();
    }
  }, 30_000);

  test("v1 → nginx stream (listen … proxy_protocol): nginx logs $proxy_protocol_addr as the client's address", async () => {
    if (skip !== null) return void console.warn(`SKIP: nginx proxy_protocol listener: ${skip}`);
    const np = freePort();
    const log = join(dir, "nginx-pp-access.log");
    const conf = nginxConf(
      dir,
      "back",
      `  log_format pp 'pp addr=$proxy_protocol_addr:$proxy_protocol_port server=$proxy_protocol_server_addr:$proxy_protocol_server_port';
  access_log ${log} pp;
  server {
    listen 127.0.0.1:${np} proxy_protocol;
    proxy_pass 127.0.0.1:${backend.port};
  }`,
    );
    const n = await peer(["nginx", "-c", conf], np);
    const port = freePort();
    const proxy = await startProxy(
      "binary",
      `[[listeners]]
addr = "127.0.0.1:${port}"
  [[listeners.routes]]
  hostname = "alpha.example.com"
  backend = "127.0.0.1:${np}"
  send_proxy_protocol = "v1"
`,
    );
    try {
      const r = await tlsGet(port, "alpha.example.com", cert);
      expect(bodyOf(r)).toBe("hello from alpha\n");
      const rec = await proxy.waitAccess((x) => x.outcome === "ok");
      await waitFor(() => existsSync(log) && readFileSync(log, "utf8").includes("pp addr="), 5000, "nginx access log");
      const line = readFileSync(log, "utf8");
      expect(line).toContain(`pp addr=${rec.client}`);
      expect(line).toContain(`server=127.0.0.1:${port}`);
    } finally {
      await proxy.stop();
      await n.stop();
    }
  }, 30_000);
});
