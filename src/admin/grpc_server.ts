// The admin gRPC server: ProxyAdminService, grpc.health.v1.Health, and
// server reflection (v1 and v1alpha) so grpcurl / buf curl work without the
// .proto. TCP addresses are TLS 1.3 only, mTLS when client_ca is set; a
// `unix:` address is a plaintext socket file with mode 0600.

import * as grpc from "@grpc/grpc-js";
import { ReflectionV1Implementation } from "@grpc/reflection/build/src/implementations/reflection-v1";
import { chmodSync, existsSync, lstatSync, unlinkSync } from "node:fs";
import { createConnection } from "node:net";
import { type GrpcConfig, readGrpcFile } from "../config/config";
import type { Logger } from "../log/logger";
import type { Fields } from "../log/logger";
import { AdminError, type AdminService } from "./admin_service";
import { clip } from "./clip";
import { type Caller, type PeerCert, UNIX_CALLER, callerFromCert, mayMutate } from "./identity";
import { ADMIN_SERVICE, ANSWERED_HEADER, HEALTH_SERVICE, adminDefinition, healthDefinition, reflectionDefinitions } from "./protos";

type Handler = (req: never) => unknown;

/**
 * Largest request accepted. grpc-js refuses bigger ones with
 * RESOURCE_EXHAUSTED before a handler runs; under it, an oversized field
 * reaches the handler and is refused as INVALID_ARGUMENT naming the field
 * (a 5 MB hostname must say so, issue 7). Real requests are under 1 KB.
 */
const MAX_REQUEST_BYTES = 16 * 1024 * 1024;

export interface AccessPolicy {
  /** Names (certificate CN or DNS SAN) allowed to call mutating RPCs; null = every authenticated caller. */
  adminClients: readonly string[] | null;
}

function callerOf(call: grpc.ServerUnaryCall<unknown, unknown>, unix: boolean): Caller {
  if (unix) return UNIX_CALLER;
  return callerFromCert(call.getAuthContext()?.sslPeerCertificate as PeerCert | undefined);
}

/** Trailing metadata that marks an error as the server's own answer (see ANSWERED_HEADER). */
function answeredMetadata(): grpc.Metadata {
  const m = new grpc.Metadata();
  m.set(ANSWERED_HEADER, "1");
  return m;
}

/** The request's key fields for the audit line, each cut to 64 characters. */
function auditFields(req: unknown): Fields {
  const out: Fields = {};
  const walk = (o: unknown, prefix: string) => {
    if (typeof o !== "object" || o === null) return;
    for (const [k, v] of Object.entries(o)) {
      if (typeof v === "string") out[prefix + k] = v.length > 64 ? `${v.slice(0, 64)}…(${Buffer.byteLength(v)} bytes)` : v;
      else if (typeof v === "number" || typeof v === "boolean") out[prefix + k] = v;
      else if (prefix === "") walk(v, `${k}.`);
    }
  };
  walk(req, "");
  return out;
}

/**
 * Wrap a handler (synchronous, or returning a promise) as a grpc-js unary
 * handler: access control for mutating calls, status mapping, and one audit
 * line (`msg=admin`) per mutating call with the caller and the result.
 */
/** Told of every admin call's method and final status code name (the metrics count them). */
export type CallObserver = (method: string, code: string) => void;

function unary(logger: Logger, name: string, fn: Handler, opts: { mutating: boolean; unix: boolean; policy: AccessPolicy; observe: CallObserver }): grpc.handleUnaryCall<unknown, unknown> {
  return (call, callback) => {
    const caller = callerOf(call, opts.unix);
    const finish = (err: unknown, res?: unknown) => {
      let code = grpc.status.OK;
      let details = "";
      if (err !== null) {
        if (err instanceof AdminError) {
          code = err.code;
          details = err.message;
          logger.debug("admin: request refused", { rpc: name, code: grpc.status[code], error: details, identity: caller.identity });
        } else {
          code = grpc.status.INTERNAL;
          details = (err as Error).message;
          logger.error("admin: handler failed", { rpc: name, error: details, stack: (err as Error).stack });
        }
      }
      if (opts.mutating) logger.info("admin", { method: name, identity: caller.identity, ...auditFields(call.request), code: grpc.status[code] });
      opts.observe(name, grpc.status[code]);
      if (code === grpc.status.OK) callback(null, res);
      else callback({ code, details, metadata: answeredMetadata() });
    };
    if (opts.mutating && !mayMutate(caller, opts.policy.adminClients)) {
      return finish(new AdminError(grpc.status.PERMISSION_DENIED, `${name}: ${JSON.stringify(caller.identity)} may only read (not in grpc.admin_clients)`));
    }
    try {
      const r = fn(call.request as never);
      if (r instanceof Promise) r.then((v) => finish(null, v), (e) => finish(e));
      else finish(null, r);
    } catch (e) {
      finish(e);
    }
  };
}

export class AdminServer {
  private constructor(
    private readonly server: grpc.Server,
    readonly address: string,
  ) {}

  static async start(cfg: GrpcConfig, service: AdminService, logger: Logger, observe: CallObserver = () => {}): Promise<AdminServer> {
    const server = new grpc.Server({ "grpc.max_receive_message_length": MAX_REQUEST_BYTES });
    const admin = adminDefinition();
    const health = healthDefinition();
    const unix = cfg.addr.startsWith("unix:");
    const policy: AccessPolicy = { adminClients: cfg.adminClients };
    const read = (name: string, fn: Handler) => unary(logger, name, fn, { mutating: false, unix, policy, observe });
    const write = (name: string, fn: Handler) => unary(logger, name, fn, { mutating: true, unix, policy, observe });
    server.addService((admin[ADMIN_SERVICE] as unknown as grpc.ServiceDefinition), {
      ListRoutes: read("ListRoutes", (r: { listener: string }) => service.listRoutes(r)),
      AddRoute: write("AddRoute", (r: Parameters<AdminService["addRoute"]>[0]) => service.addRoute(r)),
      RemoveRoute: write("RemoveRoute", (r: Parameters<AdminService["removeRoute"]>[0]) => service.removeRoute(r)),
      GetFirewallRules: read("GetFirewallRules", () => service.getFirewallRules()),
      AddFirewallRule: write("AddFirewallRule", (r: Parameters<AdminService["addFirewallRule"]>[0]) => service.addFirewallRule(r)),
      RemoveFirewallRule: write("RemoveFirewallRule", (r: Parameters<AdminService["removeFirewallRule"]>[0]) => service.removeFirewallRule(r)),
      SetListenerMaxConnections: write("SetListenerMaxConnections", (r: Parameters<AdminService["setListenerMaxConnections"]>[0]) =>
        service.setListenerMaxConnections(r),
      ),
      GetStatus: read("GetStatus", () => service.getStatus()),
      SetBackendState: write("SetBackendState", (r: Parameters<AdminService["setBackendState"]>[0]) => service.setBackendState(r)),
    });

    // grpc.health.v1: the whole server and the admin service are SERVING while it runs.
    const serving = new Set(["", ADMIN_SERVICE]);
    const check = (name: string) => {
      if (typeof name === "string" && name.length > 256) throw new AdminError(grpc.status.INVALID_ARGUMENT, `service: ${clip(name)} is too long`);
      if (!serving.has(name)) throw new AdminError(grpc.status.NOT_FOUND, `service: unknown service ${clip(name)}`);
      return { status: "SERVING" };
    };
    server.addService(health[HEALTH_SERVICE] as unknown as grpc.ServiceDefinition, {
      Check: read("Health.Check", (r: { service: string }) => check(r.service)),
      Watch: (call: grpc.ServerWritableStream<{ service: string }, unknown>) => {
        // Report once; the status never changes while the process runs.
        call.write({ status: serving.has(call.request.service) ? "SERVING" : "SERVICE_UNKNOWN" });
      },
    });

    // Reflection over the admin and health files, from the embedded copies of
    // the reflection protocol (BUN-NOTES: @grpc/reflection's addToServer reads
    // its .proto from node_modules, which the compiled binary does not have).
    const reflection = new ReflectionV1Implementation({ ...admin, ...health });
    const refl = reflectionDefinitions();
    const reflect: grpc.handleBidiStreamingCall<unknown, unknown> = (stream) => {
      stream.on("end", () => stream.end());
      stream.on("data", (msg) => stream.write(reflection.handleServerReflectionRequest(msg as never)));
    };
    server.addService(refl.v1["grpc.reflection.v1.ServerReflection"] as unknown as grpc.ServiceDefinition, { ServerReflectionInfo: reflect });
    server.addService(refl.v1alpha["grpc.reflection.v1alpha.ServerReflection"] as unknown as grpc.ServiceDefinition, { ServerReflectionInfo: reflect });

    let address: string;
    let creds: grpc.ServerCredentials;
    let socketPath: string | null = null;
    if (cfg.addr.startsWith("unix:")) {
      socketPath = cfg.addr.slice("unix:".length);
      await removeStaleSocket(socketPath);
      address = `unix:${socketPath}`;
      creds = grpc.ServerCredentials.createInsecure();
    } else {
      const colon = cfg.addr.lastIndexOf(":");
      const host = cfg.addr.slice(0, colon);
      address = host === "" ? `[::]${cfg.addr}` : cfg.addr;
      creds = tlsCredentials(cfg);
    }
    const oldMask = socketPath !== null ? process.umask(0o177) : null;
    try {
      await new Promise<number>((resolve, reject) => server.bindAsync(address, creds, (err, port) => (err ? reject(err) : resolve(port))));
    } catch (e) {
      throw new Error(`grpc.addr ${JSON.stringify(cfg.addr)}: cannot listen: ${(e as Error).message}`);
    } finally {
      if (oldMask !== null) process.umask(oldMask);
    }
    if (socketPath !== null) chmodSync(socketPath, 0o600);
    logger.info("admin API listening", { addr: cfg.addr, tls: socketPath === null, mtls: socketPath === null && cfg.clientCa !== null, admin_clients: cfg.adminClients ?? undefined });
    if (socketPath === null && cfg.clientCa === null) {
      logger.warn("admin API accepts ANY TLS client (grpc.allow_unauthenticated_admin = true): anyone who can reach it can change routes and firewall rules; set grpc.client_ca or use a unix: address", { addr: cfg.addr });
    }
    return new AdminServer(server, cfg.addr);
  }

  /** Stop accepting admin calls; in-flight calls are cancelled. */
  stop(): void {
    this.server.forceShutdown();
  }
}

/** TLS 1.3 only; with client_ca, a client certificate signed by it is required. */
function tlsCredentials(cfg: GrpcConfig): grpc.ServerCredentials {
  // Config validation guarantees tls_cert and tls_key for a TCP address.
  const cert = readGrpcFile("tls_cert", cfg.tlsCert)!;
  const key = readGrpcFile("tls_key", cfg.tlsKey)!;
  const ca = readGrpcFile("client_ca", cfg.clientCa);
  const creds = grpc.ServerCredentials.createSsl(ca, [{ private_key: key, cert_chain: cert }], ca !== null);
  // grpc-js has no option for the protocol floor; its secure credentials hand
  // these constructor options to http2.createSecureServer, so add it there.
  const c = creds as unknown as { _getConstructorOptions(): object };
  const base = c._getConstructorOptions.bind(creds);
  c._getConstructorOptions = () => ({ ...base(), minVersion: "TLSv1.3" });
  return creds;
}

/**
 * A socket file left by a process that died is removed; a live one (someone
 * answers) or a path that is not a socket is an error, never deleted.
 */
async function removeStaleSocket(path: string): Promise<void> {
  if (!existsSync(path)) return;
  if (!lstatSync(path).isSocket()) throw new Error(`grpc.addr: ${path} exists and is not a socket; refusing to replace it`);
  const live = await new Promise<boolean>((resolve) => {
    const s = createConnection({ path });
    s.on("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.on("error", () => resolve(false));
  });
  if (live) throw new Error(`grpc.addr: ${path} is in use by a running process`);
  unlinkSync(path);
}
