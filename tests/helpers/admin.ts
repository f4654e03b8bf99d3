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
  return {
    addr: `unix:${socketPath}`,
    tlsCert: null,
    tlsKey: null,
    clientCa: null,
    clientCert: null,
    clientKey: null,
    serverCa: null,
    allowUnauthenticatedAdmin: false,
    adminClients: null,
  };
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

export { adminToml } from "./toml";
