// The admin gRPC server: ProxyAdminService, grpc.health.v1.Health, and
// server reflection (v1 and v1alpha) so grpcurl / buf curl work without the
// .proto. TCP addresses are TLS 1.3 only, mTLS when client_ca is set; a
// `unix:` address is a plaintext socket file with mode 0600.

import * as grpc from "@grpc/grpc-js";
import { ReflectionV1Implementation } from "@grpc/reflection/build/src/implementations/reflection-v1";
import { chmodSync } from "node:fs";
import { createSecureContext } from "node:tls";
import { type GrpcConfig, readGrpcFile } from "../config/config";
import type { Logger } from "../log/logger";
import { type AdminCaller, adminCall, isMutating } from "./admin_call";
import { AdminError } from "./admin_error";
import type { AdminService } from "./admin_service";
import { clip } from "./clip";
import { removeStaleSocket } from "../net/unix_socket";
import { type Caller, type PeerCert, UNIX_CALLER, callerFromCert, grantedBy } from "./identity";
import {
  ADMIN_SERVICE,
  ANSWERED_HEADER,
  HEALTH_SERVICE,
  adminDefinition,
  healthDefinition,
  reflectionDefinitions,
} from "./protos";
import { bindHost, formatHostPort, splitHostPort } from "../net/host_port";
import { keyPairError } from "../net/key_pair";

type Handler = (req: never) => unknown;

/**
 * Largest request accepted. grpc-js refuses bigger ones with
 * RESOURCE_EXHAUSTED before a handler runs; under it, an oversized field
 * reaches the handler and is refused as INVALID_ARGUMENT naming the field
 * (a 5 MB hostname must say so). Real requests are under 1 KB.
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

/** Told of every admin call's method and final status code name (the metrics count them). */
export type CallObserver = (method: string, code: string) => void;

/**
 * Wrap a handler (synchronous, or returning a promise) as a grpc-js unary
 * handler: the caller named by its certificate (or the unix socket), then
 * the one admin call (admin_call.ts: access control for mutating calls,
 * status mapping, one audit line per mutating call).
 */
function unary(
  logger: Logger,
  name: string,
  fn: Handler,
  opts: {
    unix: boolean;
    policy: AccessPolicy;
    observe: CallObserver;
    /** A listener as the request names it (name or addr) → its name, for the audit line (audit.ts). */
    listenerName: (given: string) => string | undefined;
  },
): grpc.handleUnaryCall<unknown, unknown> {
  return (call, callback) => {
    const caller = callerOf(call, opts.unix);
    const granted = grantedBy(caller, opts.policy.adminClients);
    const who: AdminCaller = {
      // The identity that granted a mutating call (the admin_clients entry that matched), else the caller's own.
      identity: isMutating(name) ? (granted ?? caller.identity) : caller.identity,
      role: granted === null ? "reader" : "admin",
      refusal: () => `${name}: ${JSON.stringify(caller.identity)} may only read (not in grpc.admin_clients)`,
    };
    adminCall(logger, name, call.request, who, opts.listenerName, fn, (o) => {
      opts.observe(name, grpc.status[o.code]);
      if (o.code === grpc.status.OK) callback(null, o.result);
      else callback({ code: o.code, details: o.details, metadata: answeredMetadata() });
    });
  };
}

export class AdminServer {
  private constructor(
    private readonly server: grpc.Server,
    readonly address: string,
    private readonly watches: Set<grpc.ServerWritableStream<{ service: string }, unknown>>,
  ) {}

  /**
   * Everything about the admin API that can fail before it binds: the TLS
   * files read, parsed and matched (key to certificate). Server start-up
   * calls it before its listeners bind, and a takeover before it asks for
   * the handover (docs/ARCHITECTURE.md "Takeover").
   */
  static prepare(cfg: GrpcConfig): PreparedAdmin {
    if (cfg.addr.startsWith("unix:"))
      return {
        cfg,
        address: cfg.addr,
        socketPath: cfg.addr.slice("unix:".length),
        creds: grpc.ServerCredentials.createInsecure(),
      };
    const hp = splitHostPort(cfg.addr);
    return { cfg, address: formatHostPort(bindHost(hp.host), hp.port), socketPath: null, creds: tlsCredentials(cfg) };
  }

  static async start(
    prepared: PreparedAdmin,
    service: AdminService,
    logger: Logger,
    observe: CallObserver = () => {},
  ): Promise<AdminServer> {
    const { cfg, address, socketPath, creds } = prepared;
    const server = new grpc.Server({ "grpc.max_receive_message_length": MAX_REQUEST_BYTES });
    const admin = adminDefinition();
    const health = healthDefinition();
    const unix = cfg.addr.startsWith("unix:");
    const policy: AccessPolicy = { adminClients: cfg.adminClients };
    const listenerName = (given: string) => service.listenerName(given);
    // Which methods mutate, and who may call them: admin_call.ts's one rule.
    const rpc = (name: string, fn: Handler) => unary(logger, name, fn, { unix, policy, observe, listenerName });
    server.addService(admin[ADMIN_SERVICE] as unknown as grpc.ServiceDefinition, {
      ListRoutes: rpc("ListRoutes", (r: { listener: string }) => service.listRoutes(r)),
      AddRoute: rpc("AddRoute", (r: Parameters<AdminService["addRoute"]>[0]) => service.addRoute(r)),
      RemoveRoute: rpc("RemoveRoute", (r: Parameters<AdminService["removeRoute"]>[0]) => service.removeRoute(r)),
      GetFirewallRules: rpc("GetFirewallRules", () => service.getFirewallRules()),
      AddFirewallRule: rpc("AddFirewallRule", (r: Parameters<AdminService["addFirewallRule"]>[0]) =>
        service.addFirewallRule(r),
      ),
      RemoveFirewallRule: rpc("RemoveFirewallRule", (r: Parameters<AdminService["removeFirewallRule"]>[0]) =>
        service.removeFirewallRule(r),
      ),
      SetListenerMaxConnections: rpc(
        "SetListenerMaxConnections",
        (r: Parameters<AdminService["setListenerMaxConnections"]>[0]) => service.setListenerMaxConnections(r),
      ),
      GetStatus: rpc("GetStatus", () => service.getStatus()),
      SetBackendState: rpc("SetBackendState", (r: Parameters<AdminService["setBackendState"]>[0]) =>
        service.setBackendState(r),
      ),
      ListFingerprints: rpc("ListFingerprints", (r: Parameters<AdminService["listFingerprints"]>[0]) =>
        service.listFingerprints(r),
      ),
    });

    // grpc.health.v1: the whole server and the admin service are SERVING while it runs.
    const serving = new Set(["", ADMIN_SERVICE]);
    const watches = new Set<grpc.ServerWritableStream<{ service: string }, unknown>>();
    const check = (name: string) => {
      if (typeof name === "string" && name.length > 256)
        throw new AdminError(grpc.status.INVALID_ARGUMENT, `service: ${clip(name)} is too long`);
      if (!serving.has(name)) throw new AdminError(grpc.status.NOT_FOUND, `service: unknown service ${clip(name)}`);
      return { status: "SERVING" };
    };
    server.addService(health[HEALTH_SERVICE] as unknown as grpc.ServiceDefinition, {
      Check: rpc("Health.Check", (r: { service: string }) => check(r.service)),
      Watch: (call: grpc.ServerWritableStream<{ service: string }, unknown>) => {
        // Report now; the status changes only when the server stops, and then
        // every open stream hears NOT_SERVING and is ended (stop()).
        call.write({ status: serving.has(call.request.service) ? "SERVING" : "SERVICE_UNKNOWN" });
        watches.add(call);
        call.on("cancelled", () => watches.delete(call));
        call.on("close", () => watches.delete(call));
      },
    });

    // Reflection over the admin and health files, from the embedded copies of
    // the reflection protocol (docs/BUN-NOTES.md: @grpc/reflection's addToServer reads
    // its .proto from node_modules, which the compiled binary does not have).
    const reflection = new ReflectionV1Implementation({ ...admin, ...health });
    const refl = reflectionDefinitions();
    const reflect: grpc.handleBidiStreamingCall<unknown, unknown> = (stream) => {
      stream.on("end", () => stream.end());
      stream.on("data", (msg) => stream.write(reflection.handleServerReflectionRequest(msg as never)));
    };
    server.addService(refl.v1["grpc.reflection.v1.ServerReflection"] as unknown as grpc.ServiceDefinition, {
      ServerReflectionInfo: reflect,
    });
    server.addService(refl.v1alpha["grpc.reflection.v1alpha.ServerReflection"] as unknown as grpc.ServiceDefinition, {
      ServerReflectionInfo: reflect,
    });

    if (socketPath !== null) await removeStaleSocket(socketPath, "grpc.addr", "is in use by a running process");
    const oldMask = socketPath !== null ? process.umask(0o177) : null;
    try {
      await new Promise<number>((resolve, reject) =>
        server.bindAsync(address, creds, (err, port) => (err ? reject(err) : resolve(port))),
      );
    } catch (e) {
      throw new Error(`grpc.addr ${JSON.stringify(cfg.addr)}: cannot listen: ${(e as Error).message}`);
    } finally {
      if (oldMask !== null) process.umask(oldMask);
    }
    if (socketPath !== null) chmodSync(socketPath, 0o600);
    logger.info("admin API listening", {
      addr: cfg.addr,
      tls: socketPath === null,
      mtls: socketPath === null && cfg.clientCa !== null,
      admin_clients: cfg.adminClients ?? undefined,
    });
    if (socketPath === null && cfg.clientCa === null) {
      logger.warn(
        "admin API accepts ANY TLS client (grpc.allow_unauthenticated_admin = true): anyone who can reach it can change routes and firewall rules; set grpc.client_ca or use a unix: address",
        { addr: cfg.addr },
      );
    }
    return new AdminServer(server, cfg.addr, watches);
  }

  /** Stop accepting admin calls; Health.Watch streams hear NOT_SERVING and end; in-flight calls are cancelled. */
  stop(): void {
    for (const w of this.watches) {
      try {
        w.write({ status: "NOT_SERVING" });
        w.end();
      } catch {}
    }
    this.watches.clear();
    this.server.forceShutdown();
  }
}

/** The admin API's TLS, loaded and checked, waiting for its bind (AdminServer.prepare). */
export interface PreparedAdmin {
  cfg: GrpcConfig;
  /** What grpc-js binds: host:port, or unix:PATH. */
  address: string;
  /** The socket file of a unix: address; null for TCP. */
  socketPath: string | null;
  creds: grpc.ServerCredentials;
}

/**
 * Why the admin API's TLS cannot serve these files, or null: the key is not
 * the certificate's, or TLS refuses them together (a CA that does not parse).
 * The same question `check` asks (cli/startup/preflight.ts) and the bind
 * would, later.
 */
export function adminTlsError(cfg: GrpcConfig, cert: Buffer, key: Buffer, ca: Buffer | null): string | null {
  const mismatch = keyPairError(
    cert,
    key,
    { key: "grpc.tls_cert", path: cfg.tlsCert! },
    { key: "grpc.tls_key", path: cfg.tlsKey! },
  );
  if (mismatch !== null) return mismatch;
  try {
    createSecureContext({ cert, key, ca: ca ?? undefined, minVersion: "TLSv1.3" });
  } catch (e) {
    return `grpc: TLS refuses tls_cert, tls_key${ca === null ? "" : " and client_ca"} (${cfg.tlsCert}, ${cfg.tlsKey}${ca === null ? "" : `, ${cfg.clientCa}`}): ${(e as Error).message}`;
  }
  return null;
}

/**
 * TLS 1.3 only; with client_ca, a client certificate signed by it is
 * required. Throws, naming the key, when a file cannot be read, the key does
 * not match the certificate, or TLS refuses them together (adminTlsError).
 */
function tlsCredentials(cfg: GrpcConfig): grpc.ServerCredentials {
  // Config validation guarantees tls_cert and tls_key for a TCP address.
  const cert = readGrpcFile("tls_cert", cfg.tlsCert)!;
  const key = readGrpcFile("tls_key", cfg.tlsKey)!;
  const ca = readGrpcFile("client_ca", cfg.clientCa);
  const refused = adminTlsError(cfg, cert, key, ca);
  if (refused !== null) throw new Error(refused);
  const creds = grpc.ServerCredentials.createSsl(ca, [{ private_key: key, cert_chain: cert }], ca !== null);
  // grpc-js has no option for the protocol floor; its secure credentials hand
  // these constructor options to http2.createSecureServer, so add it there.
  const c = creds as unknown as { _getConstructorOptions(): object };
  const base = c._getConstructorOptions.bind(creds);
  c._getConstructorOptions = () => ({ ...base(), minVersion: "TLSv1.3" });
  return creds;
}
