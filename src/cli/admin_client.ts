// A gRPC client for the admin API, configured from the [grpc] section of the
// same config file the server runs with: the address, and for TLS the CA
// that signed the server's certificate (server_ca, else the tls_cert itself
// for a self-signed one) and, for mTLS, client_cert / client_key.
import * as grpc from "@grpc/grpc-js";
import { type GrpcConfig, readGrpcFile } from "../config/config";
import { ipTls } from "../net/grpc_tls";
import { splitHostPort } from "../net/host_port";
import { ANSWERED_HEADER, adminDefinition } from "../admin/protos";

const CALL_TIMEOUT_MS = 10_000;

/** A failed admin call: what the server (or the connection) said. */
export class AdminCallError extends Error {
  constructor(
    readonly rpc: string,
    readonly code: string,
    readonly details: string,
  ) {
    super(`${rpc} failed: ${code}: ${details}`);
    this.name = "AdminCallError";
  }
}

type Unary = (
  req: object,
  meta: grpc.Metadata,
  opts: grpc.CallOptions,
  cb: (err: grpc.ServiceError | null, res: unknown) => void,
) => void;

export class AdminClient {
  private readonly client: grpc.Client & Record<string, Unary>;

  constructor(private readonly cfg: GrpcConfig) {
    const pkg = grpc.loadPackageDefinition(adminDefinition()) as unknown as {
      mc_proxy: {
        v1: {
          ProxyAdminService: new (
            target: string,
            creds: grpc.ChannelCredentials,
            options: grpc.ChannelOptions,
          ) => grpc.Client & Record<string, Unary>;
        };
      };
    };
    const t = target(cfg.addr);
    const ip = t.startsWith("unix:") ? null : ipTls([splitHostPort(t).host], PLACEHOLDER_SERVER_NAME);
    this.client = new pkg.mc_proxy.v1.ProxyAdminService(
      t,
      credentials(cfg, ip?.checkServerIdentity),
      ip?.channelOptions ?? {},
    );
  }

  call<T>(rpc: string, req: object = {}): Promise<T> {
    return new Promise((resolve, reject) => {
      const fn = this.client[rpc]!;
      fn.call(this.client, req, new grpc.Metadata(), { deadline: Date.now() + CALL_TIMEOUT_MS }, (err, res) => {
        if (err === null) return resolve(res as T);
        const code = grpc.status[err.code] ?? String(err.code);
        // The server marks its own answers; anything else UNAVAILABLE or past
        // the deadline never got an answer from it.
        const answered = err.metadata?.get(ANSWERED_HEADER).length > 0;
        const unreachable =
          !answered && (err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.DEADLINE_EXCEEDED);
        const details = unreachable ? `cannot reach the admin API at ${this.cfg.addr}: ${err.details}` : err.details;
        reject(new AdminCallError(rpc, code, details));
      });
    });
  }

  close(): void {
    this.client.close();
  }
}

function target(addr: string): string {
  if (addr.startsWith("unix:")) return addr;
  return addr.startsWith(":") ? `localhost${addr}` : addr;
}

/** The TLS server name sent to an admin API named by an IP address (it does not look at SNI). */
const PLACEHOLDER_SERVER_NAME = "mc-proxy-admin.invalid";

function credentials(
  cfg: GrpcConfig,
  checkIdentity: ((name: string, cert: import("node:tls").PeerCertificate) => Error | undefined) | undefined,
): grpc.ChannelCredentials {
  if (cfg.addr.startsWith("unix:")) return grpc.credentials.createInsecure();
  const ca = readGrpcFile("server_ca", cfg.serverCa) ?? readGrpcFile("tls_cert", cfg.tlsCert);
  const key = readGrpcFile("client_key", cfg.clientKey);
  const cert = readGrpcFile("client_cert", cfg.clientCert);
  if (cfg.clientCa !== null && (key === null || cert === null)) {
    throw new Error(
      "grpc.client_cert and grpc.client_key are required: the server asks for a client certificate (grpc.client_ca is set)",
    );
  }
  return grpc.credentials.createSsl(
    ca,
    key,
    cert,
    checkIdentity === undefined ? {} : { checkServerIdentity: checkIdentity },
  );
}
