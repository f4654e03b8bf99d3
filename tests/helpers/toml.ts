// Config files for the end-to-end tests, built in one place: a listener
// with routes, the admin API over mTLS, a pool, a fleet member.
import type { AdminPki } from "./certs";

/** One listener on `port` with the route app.example.com (`route`: its backend lines), the admin API on a unix socket. */
export function poolToml(port: number, route: string, extra = ""): string {
  return `[[listeners]]
addr = "127.0.0.1:${port}"
  [[listeners.routes]]
  hostname = "app.example.com"
${route}
[grpc]
addr = "unix:admin.sock"
${extra}`;
}

/** A fleet member: etcd at `endpoints` under `prefix`, the listener "public" on `port`, the admin API on a unix socket. */
export function fleetToml(
  endpoints: string[],
  prefix: string,
  port: number,
  opts: { extra?: string; etcdExtra?: string; routes?: string; workers?: number } = {},
): string {
  return `[database]
path = "cache.db"

[store]
backend = "etcd"

[etcd]
endpoints = [${endpoints.map((e) => `"${e}"`).join(", ")}]
prefix = "${prefix}"
dial_timeout = "1s"
${opts.etcdExtra ?? ""}
[[listeners]]
addr = "127.0.0.1:${port}"
name = "public"
${opts.routes ?? ""}
[grpc]
addr = "unix:admin.sock"

[proxy]
workers = ${opts.workers ?? 2}
${opts.extra ?? ""}`;
}

/** TOML for one loopback listener on `port` with `routes` (hostname → backend port). */
export function listenerToml(
  port: number,
  routes: Record<string, number>,
  extra: { maxConnections?: number; defaultBackendPort?: number } = {},
): string {
  let t = `[[listeners]]\naddr = "127.0.0.1:${port}"\n`;
  if (extra.maxConnections !== undefined) t += `max_connections = ${extra.maxConnections}\n`;
  if (extra.defaultBackendPort !== undefined) t += `default_backend = "127.0.0.1:${extra.defaultBackendPort}"\n`;
  for (const [hostname, p] of Object.entries(routes))
    t += `  [[listeners.routes]]\n  hostname = "${hostname}"\n  backend = "127.0.0.1:${p}"\n`;
  return t;
}

/** A listener with `routes`, a database under data/, and the admin API on TCP with mTLS from `pki` (the CLI settings too). */
export function adminToml(
  pki: AdminPki,
  grpcPort: number,
  listenerPort: number,
  routes: Record<string, number>,
  extra = "",
): string {
  return `[database]
path = "data/mc-proxy.db"

${listenerToml(listenerPort, routes)}
[grpc]
addr = "127.0.0.1:${grpcPort}"
tls_cert = "${pki.serverCert}"
tls_key = "${pki.serverKey}"
client_ca = "${pki.ca}"
client_cert = "${pki.clientCert}"
client_key = "${pki.clientKey}"
server_ca = "${pki.ca}"
${extra}`;
}
