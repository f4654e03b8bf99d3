// The metrics listener (Bun.serve): the Prometheus scrape at [metrics] path,
// GET /healthz (200 while the event loop runs) and GET /readyz (200 once every
// listener is bound and the database is open; 503 from the first
// SIGTERM/SIGINT on, so a balancer stops sending before the drain ends).
// Anything else is 404. It stays up through the drain and closes last.

import { chmodSync } from "node:fs";
import type { Server as BunServer } from "bun";
import type { MetricsConfig } from "../config/config";
import type { Logger } from "../log/logger";
import type { Metrics } from "./metrics";
import { bindHost, splitHostPort } from "../net/host_port";

export interface Readiness {
  /** Why not ready, or null when ready. */
  notReady(): string | null;
  /** Something to say while ready (a stale store), or null. */
  note(): string | null;
}

export class MetricsServer {
  private constructor(private readonly server: BunServer<undefined>) {}

  static start(cfg: MetricsConfig, metrics: Metrics, readiness: Readiness, logger: Logger): MetricsServer {
    const fetch = async (req: Request): Promise<Response> => {
      const path = new URL(req.url).pathname;
      if (req.method !== "GET" && req.method !== "HEAD") return new Response("not found\n", { status: 404 });
      if (path === cfg.path) {
        try {
          return new Response(await metrics.text(), { headers: { "content-type": metrics.contentType } });
        } catch (e) {
          logger.error("metrics: scrape failed", { error: (e as Error).message });
          return new Response("scrape failed\n", { status: 500 });
        }
      }
      if (path === "/healthz") return new Response("ok\n");
      if (path === "/readyz") {
        const why = readiness.notReady();
        if (why !== null) return new Response(`not ready: ${why}\n`, { status: 503 });
        const note = readiness.note();
        return new Response(note === null ? "ready\n" : `ready (${note})\n`);
      }
      return new Response("not found\n", { status: 404 });
    };
    let server: BunServer<undefined>;
    try {
      if (cfg.addr.startsWith("unix:")) {
        const path = cfg.addr.slice("unix:".length);
        server = Bun.serve({ unix: path, fetch });
        chmodSync(path, 0o600);
      } else {
        const { host, port } = splitHostPort(cfg.addr);
        server = Bun.serve({ hostname: bindHost(host), port, fetch });
      }
    } catch (e) {
      throw new Error(`metrics.addr ${JSON.stringify(cfg.addr)}: cannot listen: ${(e as Error).message}`);
    }
    logger.info("metrics listening", { addr: cfg.addr, path: cfg.path });
    return new MetricsServer(server);
  }

  stop(): void {
    this.server.stop(true);
  }
}
