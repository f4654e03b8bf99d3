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
import { AdminError, type AdminService } from "./admin_service";
import { ADMIN_SERVICE, HEALTH_SERVICE, adminDefinition, healthDefinition, reflectionDefinitions } from "./protos";

type Handler = (req: never) => unknown;

/** Wrap a synchronous handler as a grpc-js unary handler with status mapping. */
function unary(logger: Logger, name: string, fn: Handler): grpc.handleUnaryCall<unknown, unknown> {
  return (call, callback) => {
    try {
      callback(null, fn(call.request as never));
    } catch (e) {
      if (e instanceof AdminError) {
        logger.debug("admin: request refused", { rpc: name, code: grpc.status[e.code], error: e.message, peer: call.getPeer() });
        callback({ code: e.code, details: e.message });
      } else {
        logger.error("admin: handler failed", { rpc: name, error: (e as Error).message });
        callback({ code: grpc.status.INTERNAL, details: (e as Error).message });
      }
    }
  };
}

export class AdminServer {
  private constructor(
    private readonly server: grpc.Server,
    readonly address: string,
  ) {}

  static async start(cfg: GrpcConfig, service: AdminService, logger: Logger): Promise<AdminServer> {
    const server = new grpc.Server();
    const admin = adminDefinition();
    const health = healthDefinition();
    server.addService((admin[ADMIN_SERVICE] as unknown as grpc.ServiceDefinition), {
      ListRoutes: unary(logger, "ListRoutes", (r: { listener: string }) => service.listRoutes(r)),
      AddRoute: unary(logger, "AddRoute", (r: Parameters<AdminService["addRoute"]>[0]) => service.addRoute(r)),
      RemoveRoute: unary(logger, "RemoveRoute", (r: Parameters<AdminService["removeRoute"]>[0]) => service.removeRoute(r)),
      GetFirewallRules: unary(logger, "GetFirewallRules", () => service.getFirewallRules()),
      AddFirewallRule: unary(logger, "AddFirewallRule", (r: Parameters<AdminService["addFirewallRule"]>[0]) => service.addFirewallRule(r)),
      RemoveFirewallRule: unary(logger, "RemoveFirewallRule", (r: Parameters<AdminService["removeFirewallRule"]>[0]) => service.removeFirewallRule(r)),
      SetListenerMaxConnections: unary(logger, "SetListenerMaxConnections", (r: Parameters<AdminService["setListenerMaxConnections"]>[0]) =>
        service.setListenerMaxConnections(r),
      ),
      GetStatus: unary(logger, "GetStatus", () => service.getStatus()),
    });

    // grpc.health.v1: the whole server and the admin service are SERVING while it runs.
    const serving = new Set(["", ADMIN_SERVICE]);
    const check = (name: string) => {
      if (!serving.has(name)) throw new AdminError(grpc.status.NOT_FOUND, `service: unknown service ${JSON.stringify(name)}`);
      return { status: "SERVING" };
    };
    server.addService(health[HEALTH_SERVICE] as unknown as grpc.ServiceDefinition, {
      Check: unary(logger, "Health.Check", (r: { service: string }) => check(r.service)),
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
    logger.info("admin API listening", { addr: cfg.addr, tls: socketPath === null, mtls: socketPath === null && cfg.clientCa !== null });
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
