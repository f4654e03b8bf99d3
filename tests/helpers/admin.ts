// Config for a proxy with the admin API on TCP with mTLS, and the matching client settings.
import { AdminCallError } from "../../src/cli/admin_client";
import type { GrpcConfig } from "../../src/config/config";
import type { AdminPki } from "./certs";

export function grpcConfig(pki: AdminPki, port: number): GrpcConfig {
  return {
    addr: `127.0.0.1:${port}`,
    tlsCert: pki.serverCert,
    tlsKey: pki.serverKey,
    clientCa: pki.ca,
    clientCert: pki.clientCert,
    clientKey: pki.clientKey,
    serverCa: pki.ca,
    allowUnauthenticatedAdmin: false,
    adminClients: null,
  };
}

/** Client settings for an admin API on a unix socket. */
export function unixGrpcConfig(socketPath: string): GrpcConfig {
  return { addr: `unix:${socketPath}`, tlsCert: null, tlsKey: null, clientCa: null, clientCert: null, clientKey: null, serverCa: null, allowUnauthenticatedAdmin: false, adminClients: null };
}

export function adminToml(pki: AdminPki, grpcPort: number, listenerPort: number, routes: Record<string, number>, extra = ""): string {
  let t = `[database]
path = "data/mc-proxy.db"

[[listeners]]
addr = "127.0.0.1:${listenerPort}"
`;
  for (const [h, p] of Object.entries(routes)) t += `  [[listeners.routes]]\n  hostname = "${h}"\n  backend = "127.0.0.1:${p}"\n`;
  t += `
[grpc]
addr = "127.0.0.1:${grpcPort}"
tls_cert = "${pki.serverCert}"
tls_key = "${pki.serverKey}"
client_ca = "${pki.ca}"
client_cert = "${pki.clientCert}"
client_key = "${pki.clientKey}"
server_ca = "${pki.ca}"
${extra}`;
  return t;
}

/** The AdminCallError a call must fail with (anything else is rethrown; success fails the test). */
export async function callError(p: Promise<unknown>): Promise<AdminCallError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof AdminCallError) return e;
    throw e;
  }
  throw new Error("expected the call to fail");
}

/** ListRoutes' answer. */
export interface Routes {
  listeners: { listener: string; routes: { hostname: string; backend: string; send_proxy_protocol: string }[] }[];
}
