// Everything the benchmark needs on a fresh Debian machine: packages, certs,
// the TLS backend (nginx), the three proxies' configs, a realistic mc-proxy
// firewall (1,000 blocked CIDRs, a country database with 5 blocked
// countries, the rate limiter on, the access log written to a file).
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { selfSignedArgs } from "../self_signed";
import { DASHBOARD_PASSWORD, DASHBOARD_USER } from "./dashboard_viewers";

export const ROOT = resolve(import.meta.dir, "../..");
export const WORK = join(ROOT, ".bench");
/** SNI used by every client; resolves to 127.0.0.1 here (checked in ensureHost). */
export const HOST = "localhost";

export const PORTS = {
  backend: 19443,
  /** The same backend, expecting a PROXY header first (for mc-proxy with send_proxy_protocol). */
  backendPp: 19444,
  haproxy: 20443,
  nginx: 21443,
  mcproxy: 22443,
  /** mc-proxy with PROXY protocol both ways, and the HAProxy that sends it v2 from in front. */
  mcproxyPp: 22444,
  ppFront: 20444,
  /** The metrics endpoint of mc-proxy-metrics (scraped every second during its runs). */
  metrics: 22102,
  /** The dashboard of mc-proxy+dashboard (its viewers read the event stream during its runs). */
  dashboard: 22104,
  /** --scaling: a plain TCP backend with a fixed reply, and the proxies in front of it. */
  replyBackend: 19445,
  scaleHaproxy: 20445,
  scaleNginx: 21445,
  scaleMcproxy: 22445,
  /** --breakdown: the bare Bun relay, each mc-proxy variant, its PROXY front and metrics. */
  bare: 23440,
  breakdown: 23443,
  breakdownPp: 23444,
  breakdownFront: 20446,
  breakdownMetrics: 22103,
} as const;

/** --scaling: the backend's fixed reply, in bytes. */
export const REPLY_BYTES = 64;

export const PACKAGES = ["haproxy", "nginx", "libnginx-mod-stream", "wrk", "openssl", "curl"];

function run(cmd: string[], what: string): string {
  const r = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0)
    throw new Error(`${what} failed (${cmd.join(" ")}):\n${r.stderr.toString()}${r.stdout.toString()}`);
  return r.stdout.toString();
}

export function ensurePackages(): void {
  const missing = ["haproxy", "nginx", "wrk", "openssl", "curl"].filter(
    (b) => Bun.which(b) === null && !existsSync(`/usr/sbin/${b}`),
  );
  const streamModule = existsSync("/usr/lib/nginx/modules/ngx_stream_module.so");
  if (missing.length === 0 && streamModule) return;
  if (process.getuid?.() !== 0)
    throw new Error(
      `missing ${missing.join(", ")}${streamModule ? "" : " nginx stream module"}; install as root: apt-get install ${PACKAGES.join(" ")}`,
    );
  console.log(`bench: installing ${PACKAGES.join(" ")} (apt)`);
  run(["apt-get", "update", "-qq"], "apt-get update");
  run(["apt-get", "install", "-y", "-qq", ...PACKAGES], "apt-get install");
}

export function ensureHost(): void {
  const r = Bun.spawnSync(["getent", "ahostsv4", HOST]).stdout.toString();
  if (!r.startsWith("127.0.0.1"))
    throw new Error(`${HOST} must resolve to 127.0.0.1 for the load tools (got: ${r.split("\n")[0]})`);
}

export interface Files {
  cert: string;
  key: string;
  www: string;
  bigFile: string;
  uploadFile: string;
  bigBytes: number;
  backendConf: string;
  haproxyConf: string;
  nginxConf: string;
  mcproxyConf: string;
  mcproxyLog: string;
  /** mc-proxy receiving PROXY v2 (from ppFrontConf's HAProxy) and sending v2 to the backend. */
  mcproxyPpConf: string;
  ppFrontConf: string;
  /** mc-proxy with [metrics] on. */
  mcproxyMetricsConf: string;
  /** mc-proxy with a [dashboard] on loopback and one user (dashboard_viewers.ts logs in as it). */
  mcproxyDashboardConf: string;
  /** mc-proxy with two workers (memory per idle connection). */
  mcproxyW2Conf: string;
  /**
   * mc-proxy whose one route is a templated route (docs/ROUTING.md "Templated
   * routes"): the name matched by a pattern, the backend filled from it and
   * resolved (the system resolver: `localhost`), every address checked by
   * the destination guard (loopback allowed).
   */
  mcproxyTemplatedConf: string;
  /** --scaling: the reply backend, and per system and event-loop count (1, 2) its config. */
  replyBackendConf: string;
  scaling: { haproxy: [string, string]; nginx: [string, string]; mcproxy: [string, string] };
  /** A recorded ClientHello for SCALE_SNI (built if the shared fixtures are absent). */
  helloFile: string;
  /** The country database of the realistic config. */
  geoDb: string;
}

/** A self-signed certificate for the benchmark's host name, made once. */
function certificate(): { cert: string; key: string } {
  const cert = join(WORK, "cert.pem");
  const key = join(WORK, "key.pem");
  if (!existsSync(cert)) {
    run(selfSignedArgs(key, cert, { cn: HOST, sans: [HOST], days: 30 }), "openssl req");
  }
  return { cert, key };
}

/** --scaling: each system with `n` threads / workers / processes, in front of the plain reply backend. */
function scalingConfigs(
  n: 1 | 2,
  haproxyConf: string,
  nginxConf: string,
  mcproxyConf: string,
): { hp: string; ng: string; mc: string } {
  const hp = join(WORK, `haproxy-scale-${n}.cfg`);
  writeFileSync(
    hp,
    readFileSync(haproxyConf, "utf8")
      .replace("nbthread 1", `nbthread ${n}`)
      .replace(`bind 127.0.0.1:${PORTS.haproxy}`, `bind 127.0.0.1:${PORTS.scaleHaproxy}`)
      .replace(`req.ssl_sni -i ${HOST}`, `req.ssl_sni -i ${SCALE_SNI}`)
      .replace(`server s1 127.0.0.1:${PORTS.backend}`, `server s1 127.0.0.1:${PORTS.replyBackend}`),
  );
  const ng = join(WORK, `nginx-scale-${n}.conf`);
  writeFileSync(
    ng,
    readFileSync(nginxConf, "utf8")
      .replace("worker_processes 1;", `worker_processes ${n};`)
      .replace(`pid ${WORK}/run/nginx-stream.pid;`, `pid ${WORK}/run/nginx-scale-${n}.pid;`)
      .replace(`listen 127.0.0.1:${PORTS.nginx};`, `listen 127.0.0.1:${PORTS.scaleNginx} reuseport;`)
      .replace(`${HOST} 127.0.0.1:${PORTS.backend};`, `${SCALE_SNI} 127.0.0.1:${PORTS.replyBackend};`),
  );
  const mc = join(WORK, `mc-proxy-scale-${n}.toml`);
  writeFileSync(
    mc,
    readFileSync(mcproxyConf, "utf8")
      .replace(`path = "${WORK}/run/mc-proxy.db"`, `path = "${WORK}/run/mc-proxy-scale-${n}.db"`)
      .replace(`addr = "127.0.0.1:${PORTS.mcproxy}"`, `addr = "127.0.0.1:${PORTS.scaleMcproxy}"`)
      .replace(
        `hostname = "${HOST}"\n  backend = "127.0.0.1:${PORTS.backend}"`,
        `hostname = "${SCALE_SNI}"\n  backend = "127.0.0.1:${PORTS.replyBackend}"`,
      )
      .replace("workers = 1", `workers = ${n}`),
  );
  return { hp, ng, mc };
}

/**
 * The environment a user starts mc-proxy with: nothing of the allocator's
 * set (docs/BENCHMARKS.md "Performance: the allocator"). A server from dist/
 * sets MIMALLOC_PURGE_DELAY itself (src/cli/allocator.ts); an older release
 * runs with its default, as a user who starts it by hand gets it.
 */
export const USER_ENV: Record<string, string | undefined> = { ...process.env, MIMALLOC_PURGE_DELAY: undefined };

export function prepare(bigBytes: number): Files {
  for (const d of ["", "www", "run", "logs", "tmp"]) mkdirSync(join(WORK, d), { recursive: true });
  const { cert, key } = certificate();
  const www = join(WORK, "www");
  writeFileSync(join(www, "small"), "x".repeat(64));
  const bigFile = join(www, `big-${bigBytes}`);
  if (!existsSync(bigFile)) run(["sh", "-c", `head -c ${bigBytes} /dev/urandom > ${bigFile}`], "write big file");
  const uploadFile = bigFile;

  const backendConf = join(WORK, "backend.conf");
  writeFileSync(
    backendConf,
    `# TLS backend for every system: small and large responses, an upload sink.
worker_processes 1;
worker_rlimit_nofile 20000;
pid ${WORK}/run/backend.pid;
error_log ${WORK}/logs/backend-error.log warn;
daemon off;
events { worker_connections 15000; }
http {
  access_log off;
  sendfile on;
  keepalive_timeout 600s;
  # Idle holders (memory per idle connection, the soak) send nothing for minutes.
  client_header_timeout 600s;
  keepalive_requests 100000000;
  client_body_temp_path ${WORK}/tmp;
  proxy_temp_path ${WORK}/tmp;
  fastcgi_temp_path ${WORK}/tmp;
  uwsgi_temp_path ${WORK}/tmp;
  scgi_temp_path ${WORK}/tmp;
  server {
    listen 127.0.0.1:${PORTS.backend} ssl;
    listen 127.0.0.1:${PORTS.backendPp} ssl proxy_protocol;
    # --breakdown's pool of 3: the same server on three loopback addresses.
    listen 127.0.0.2:${PORTS.backend} ssl;
    listen 127.0.0.3:${PORTS.backend} ssl;
    listen 127.0.0.2:${PORTS.backendPp} ssl proxy_protocol;
    listen 127.0.0.3:${PORTS.backendPp} ssl proxy_protocol;
    server_name ${HOST};
    ssl_certificate ${cert};
    ssl_certificate_key ${key};
    ssl_protocols TLSv1.3;
    ssl_session_tickets off;
    ssl_session_cache off;
    root ${www};
    location = /upload {
      client_max_body_size 0;
      return 204;
    }
  }
}
`,
  );

  const haproxyConf = join(WORK, "haproxy.cfg");
  writeFileSync(
    haproxyConf,
    `# HAProxy as an SNI router: mode tcp, inspect-delay + req.ssl_sni, one thread.
global
  nbthread 1
  maxconn 9000
  log stdout format raw local0 err
defaults
  mode tcp
  timeout connect 5s
  timeout client 10m
  timeout server 10m
frontend sni
  bind 127.0.0.1:${PORTS.haproxy}
  tcp-request inspect-delay 5s
  tcp-request content accept if { req.ssl_hello_type 1 }
  use_backend be_bench if { req.ssl_sni -i ${HOST} }
backend be_bench
  server s1 127.0.0.1:${PORTS.backend}
`,
  );

  const nginxConf = join(WORK, "nginx-stream.conf");
  writeFileSync(
    nginxConf,
    `# nginx stream + ssl_preread as an SNI router, one worker.
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes 1;
worker_rlimit_nofile 20000;
pid ${WORK}/run/nginx-stream.pid;
error_log ${WORK}/logs/nginx-stream-error.log warn;
daemon off;
events { worker_connections 15000; }
stream {
  map $ssl_preread_server_name $upstream {
    ${HOST} 127.0.0.1:${PORTS.backend};
  }
  server {
    listen 127.0.0.1:${PORTS.nginx};
    ssl_preread on;
    proxy_pass $upstream;
    proxy_timeout 10m;
  }
}
`,
  );

  // A realistic mc-proxy: 1,000 blocked CIDRs (none match loopback), a real
  // country database with 5 blocked countries, the rate limiter on (high
  // enough not to refuse the load), the access log written to a file.
  const cidrs: string[] = [];
  for (let i = 0; i < 1000; i++) cidrs.push(`"10.${i >> 8}.${i & 255}.0/24"`);
  const geo = countryDatabase();
  const mcproxyConf = join(WORK, "mc-proxy.toml");
  writeFileSync(
    mcproxyConf,
    `[database]
path = "${WORK}/run/mc-proxy.db"

[[listeners]]
addr = "127.0.0.1:${PORTS.mcproxy}"
  [[listeners.routes]]
  hostname = "${HOST}"
  backend = "127.0.0.1:${PORTS.backend}"

[firewall]
geoip_db = "${geo}"
blocked_countries = ["KP", "IR", "SY", "CU", "RU"]
blocked_ips = ["192.0.2.1"]
blocked_cidrs = [${cidrs.join(", ")}]
rate_limit = 1000000
rate_window = "1s"

[proxy]
idle_timeout = "10m"
# One event loop, as HAProxy runs nbthread 1 and nginx one worker here (--scaling compares 1 and 2).
workers = 1

[log]
level = "info"
format = "text"
`,
  );
  // PROXY protocol both ways: HAProxy in front sends v2 (its CPU is not
  // counted), mc-proxy reads it and sends v2 to the backend's proxy_protocol port.
  const mcproxyPpConf = join(WORK, "mc-proxy-pp.toml");
  writeFileSync(
    mcproxyPpConf,
    readFileSync(mcproxyConf, "utf8")
      .replace(`path = "${WORK}/run/mc-proxy.db"`, `path = "${WORK}/run/mc-proxy-pp.db"`)
      .replace(
        `addr = "127.0.0.1:${PORTS.mcproxy}"\n  [[listeners.routes]]\n  hostname = "${HOST}"\n  backend = "127.0.0.1:${PORTS.backend}"`,
        `addr = "127.0.0.1:${PORTS.mcproxyPp}"\nproxy_protocol = true\ntrusted_proxies = ["127.0.0.1"]\n  [[listeners.routes]]\n  hostname = "${HOST}"\n  backend = "127.0.0.1:${PORTS.backendPp}"\n  send_proxy_protocol = "v2"`,
      ),
  );
  const mcproxyW2Conf = join(WORK, "mc-proxy-w2.toml");
  writeFileSync(
    mcproxyW2Conf,
    readFileSync(mcproxyConf, "utf8")
      .replace(`path = "${WORK}/run/mc-proxy.db"`, `path = "${WORK}/run/mc-proxy-w2.db"`)
      .replace("workers = 1", "workers = 2"),
  );
  const mcproxyMetricsConf = join(WORK, "mc-proxy-metrics.toml");
  writeFileSync(
    mcproxyMetricsConf,
    `${readFileSync(mcproxyConf, "utf8").replace(`path = "${WORK}/run/mc-proxy.db"`, `path = "${WORK}/run/mc-proxy-metrics.db"`)}\n[metrics]\naddr = "127.0.0.1:${PORTS.metrics}"\n`,
  );
  // The dashboard on loopback (plain HTTP), one reader: the bench's viewers.
  // Logins are not measured: the hash is argon2id with 64 KiB of memory, not
  // Bun's default 64 MiB, which each login would leave in the allocator for
  // the idle-connection round to reuse (its memory per connection read low).
  const mcproxyDashboardConf = join(WORK, "mc-proxy-dashboard.toml");
  writeFileSync(
    mcproxyDashboardConf,
    `${readFileSync(mcproxyConf, "utf8").replace(`path = "${WORK}/run/mc-proxy.db"`, `path = "${WORK}/run/mc-proxy-dashboard.db"`)}
[dashboard]
addr = "127.0.0.1:${PORTS.dashboard}"
[[dashboard.users]]
name = "${DASHBOARD_USER}"
role = "reader"
password_hash = "${Bun.password.hashSync(DASHBOARD_PASSWORD, { algorithm: "argon2id", memoryCost: 64, timeCost: 2 })}"
`,
  );
  const mcproxyTemplatedConf = join(WORK, "mc-proxy-templated.toml");
  writeFileSync(
    mcproxyTemplatedConf,
    readFileSync(mcproxyConf, "utf8")
      .replace(`path = "${WORK}/run/mc-proxy.db"`, `path = "${WORK}/run/mc-proxy-templated.db"`)
      // A function: the pattern's "$'" would be a replacement pattern in a string.
      .replace(
        `hostname = "${HOST}"\n  backend = "127.0.0.1:${PORTS.backend}"`,
        () =>
          `hostname_pattern = '^(?<h>${HOST})$'\n  backend = "{h}:${PORTS.backend}"\n  allow_destinations = ["127.0.0.0/8"]`,
      ),
  );
  // --scaling: a plain backend answering REPLY_BYTES to anything (nginx stream `return`, C, cheap).
  const replyBackendConf = join(WORK, "reply-backend.conf");
  writeFileSync(
    replyBackendConf,
    `load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes 1;
worker_rlimit_nofile 20000;
pid ${WORK}/run/reply-backend.pid;
error_log ${WORK}/logs/reply-backend-error.log warn;
daemon off;
events { worker_connections 15000; }
stream {
  server {
    listen 127.0.0.1:${PORTS.replyBackend};
    return "${"r".repeat(REPLY_BYTES - 1)}\n";
  }
}
`,
  );
  const s1 = scalingConfigs(1, haproxyConf, nginxConf, mcproxyConf);
  const s2 = scalingConfigs(2, haproxyConf, nginxConf, mcproxyConf);
  const helloFile = join(WORK, "hello.bin");
  writeFileSync(helloFile, recordedHello());
  const ppFrontConf = join(WORK, "haproxy-pp-front.cfg");
  writeFileSync(ppFrontConf, tcpFront("mc-proxy-pp", PORTS.ppFront, PORTS.mcproxyPp, true));
  return {
    geoDb: geo,
    mcproxyW2Conf,
    replyBackendConf,
    scaling: { haproxy: [s1.hp, s2.hp], nginx: [s1.ng, s2.ng], mcproxy: [s1.mc, s2.mc] },
    helloFile,
    mcproxyMetricsConf,
    mcproxyDashboardConf,
    mcproxyTemplatedConf,
    mcproxyPpConf,
    ppFrontConf,
    cert,
    key,
    www,
    bigFile,
    uploadFile,
    bigBytes,
    backendConf,
    haproxyConf,
    nginxConf,
    mcproxyConf,
    mcproxyLog: join(WORK, "logs/mc-proxy-access.log"),
  };
}

/**
 * An HAProxy in TCP mode in front of an mc-proxy (the bench's mc-proxy-pp,
 * --breakdown's +pp and base-fronted): its own CPU is not counted.
 */
export function tcpFront(what: string, bind: number, target: number, sendProxy: boolean): string {
  return `# In front of ${what}${sendProxy ? ": sends PROXY v2" : ""} (its own CPU is not counted).
global
  nbthread 1
  maxconn 9000
defaults
  mode tcp
  timeout connect 5s
  timeout client 10m
  timeout server 10m
frontend fe
  bind 127.0.0.1:${bind}
  default_backend mc
backend mc
  server mc1 127.0.0.1:${target}${sendProxy ? " send-proxy-v2" : ""}
`;
}

/**
 * --scaling sends a real ClientHello recorded from curl (../shared/testdata,
 * server name alpha.example.com); where the fixtures are absent, one built
 * for the same name.
 */
export const SCALE_SNI = "alpha.example.com";

function recordedHello(): Uint8Array {
  const f = join(ROOT, "../shared/testdata/hellos/curl.bin");
  if (existsSync(f)) return new Uint8Array(readFileSync(f));
  const { helloFor } =
    require("../../tests/helpers/hello_builder") as typeof import("../../tests/helpers/hello_builder");
  return helloFor(SCALE_SNI);
}

/** The CC0 ip-location-db country database from npm (records carry `country_code`). */
function countryDatabase(): string {
  const dir = join(WORK, "geo");
  const find = () => (existsSync(dir) ? readdirSync(join(dir, "package")).find((f) => f.endsWith(".mmdb")) : undefined);
  let f = find();
  if (f === undefined) {
    mkdirSync(dir, { recursive: true });
    const tgz = run(
      ["npm", "pack", "--silent", "@ip-location-db/geo-whois-asn-country-mmdb", "--pack-destination", dir],
      "npm pack country db",
    )
      .trim()
      .split("\n")
      .pop()!;
    run(["tar", "-xzf", join(dir, tgz), "-C", dir], "untar country db");
    f = find();
  }
  if (f === undefined) throw new Error("no .mmdb in @ip-location-db/geo-whois-asn-country-mmdb");
  return join(dir, "package", f);
}
