// The dashboard's listener (Bun.serve; docs/DASHBOARD.md): HTTPS with
// [dashboard] tls_cert / tls_key, plain HTTP on a loopback address, or a
// unix socket of mode 0600; the handler is dashboard_app.ts. It samples the
// counters once a second for the charts and sends the state to every open
// event stream. Bound in start-up's expose phase, after a takeover's
// handover, and let go of at the next one, as the admin API is.

import { chmodSync, readFileSync } from "node:fs";
import type { Server as BunServer } from "bun";
import type { AdminService } from "../admin/admin_service";
import type { DashboardConfig } from "../config/types";
import type { Logger } from "../log/logger";
import { bindHost, splitHostPort } from "../net/host_port";
import { normaliseIp } from "../net/ip";
import { keyPairError } from "../net/key_pair";
import { removeStaleSocket } from "../net/unix_socket";
import { DashboardApp } from "./dashboard_app";
import { LoginLimiter } from "./login_limiter";
import { Sessions } from "./sessions";
import { DashboardState, type StateSource } from "./state";
import { Users } from "./users";

/** Bun refuses bodies past this (413) before the handler, which has its own smaller bounds. */
const MAX_REQUEST_BYTES = 64 * 1024;
/** The state's sample and the streams' event, every second. */
const TICK_MS = 1000;

/** The dashboard's TLS files, read and matched (or none), waiting for the bind. */
export interface PreparedDashboard {
  cfg: DashboardConfig;
  tls: { cert: string; key: string } | null;
}

/** Why these files cannot serve HTTPS, or null: the key is not the certificate's (the preflight asks too). */
export function dashboardTlsError(cfg: DashboardConfig, cert: Buffer, key: Buffer): string | null {
  return keyPairError(
    cert,
    key,
    { key: "dashboard.tls_cert", path: cfg.tlsCert! },
    { key: "dashboard.tls_key", path: cfg.tlsKey! },
  );
}

/** Read a file a [dashboard] key names; the error names the key and the path. */
export function readDashboardFile(key: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new Error(`dashboard.${key}: cannot read ${path}: ${(e as Error).message}`);
  }
}

export class DashboardServer {
  private readonly timer: ReturnType<typeof setInterval>;
  private stopped = false;

  private constructor(
    private readonly server: BunServer<undefined>,
    private readonly app: DashboardApp,
    state: DashboardState,
    logger: Logger,
  ) {
    let busy = false;
    this.timer = setInterval(() => {
      if (busy) return;
      busy = true;
      state
        .sample()
        .then(() => app.tick())
        .catch((e) => logger.warn("dashboard: state sample failed", { error: (e as Error).message }))
        .finally(() => {
          busy = false;
        });
    }, TICK_MS);
    this.timer.unref();
  }

  /** Everything that can fail before the bind: the TLS files read, the key the certificate's. */
  static prepare(cfg: DashboardConfig): PreparedDashboard {
    if (cfg.tlsCert === null || cfg.tlsKey === null) return { cfg, tls: null };
    const cert = readDashboardFile("tls_cert", cfg.tlsCert);
    const key = readDashboardFile("tls_key", cfg.tlsKey);
    const bad = dashboardTlsError(cfg, cert, key);
    if (bad !== null) throw new Error(bad);
    return { cfg, tls: { cert: cert.toString("utf8"), key: key.toString("utf8") } };
  }

  static async start(
    prepared: PreparedDashboard,
    service: AdminService,
    source: StateSource,
    logger: Logger,
  ): Promise<DashboardServer> {
    const { cfg, tls } = prepared;
    const state = new DashboardState(service, source);
    const app = new DashboardApp({
      service,
      state,
      users: new Users(cfg.users),
      sessions: new Sessions(cfg.sessionTtlMs),
      limiter: new LoginLimiter(),
      logger,
      https: tls !== null,
    });
    const fetch = (req: Request, server: BunServer<undefined>) =>
      app.fetch(req, normaliseIp(server.requestIP(req)?.address ?? "unix"));
    const error = (e: Error) => {
      logger.error("dashboard: request failed", { error: e.message, stack: e.stack });
      return new Response("internal error\n", { status: 500 });
    };
    const common = { fetch, error, maxRequestBodySize: MAX_REQUEST_BYTES, ...(tls === null ? {} : { tls }) };
    let server: BunServer<undefined>;
    const unix = cfg.addr.startsWith("unix:");
    try {
      if (unix) {
        const path = cfg.addr.slice("unix:".length);
        await removeStaleSocket(path, "dashboard.addr", "is in use by a running process");
        const oldMask = process.umask(0o177);
        try {
          server = Bun.serve({ unix: path, ...common });
        } finally {
          process.umask(oldMask);
        }
        chmodSync(path, 0o600);
      } else {
        const { host, port } = splitHostPort(cfg.addr);
        server = Bun.serve({ hostname: bindHost(host), port, ...common });
      }
    } catch (e) {
      throw new Error(`dashboard.addr ${JSON.stringify(cfg.addr)}: cannot listen: ${(e as Error).message}`);
    }
    if (!unix && tls === null) {
      // Plain HTTP is loopback only (config/dashboard.ts): answer to the names of loopback.
      const port = server.port;
      const { host } = splitHostPort(cfg.addr);
      const named = host.includes(":") ? `[${host}]` : host;
      app.allowHosts([`${named}:${port}`, `127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`]);
    }
    logger.info("dashboard listening", {
      addr: cfg.addr,
      port: unix ? undefined : server.port,
      https: tls !== null,
      users: cfg.users.length,
    });
    await state.sample().catch(() => {});
    return new DashboardServer(server, app, state, logger);
  }

  /** Stop accepting; open event streams end. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.timer);
    this.app.closeAll();
    this.server.stop(true);
  }
}
