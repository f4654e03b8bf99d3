// Config files for the end-to-end tests, built in one place (with
// listenerToml in proxy.ts and adminToml in admin.ts).

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
export function fleetToml(endpoints: string[], prefix: string, port: number, opts: { extra?: string; etcdExtra?: string; routes?: string; workers?: number } = {}): string {
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
