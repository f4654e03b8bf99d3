// Start-up's expose phase: what this process binds besides its listeners —
// the metrics, the admin API, the dashboard and the takeover socket (docs/TAKEOVER.md;
// docs/ARCHITECTURE.md "Takeover"). Before a handover a failure here stops
// this process (nothing was handed over); after it, this process serves its
// listeners whatever fails here: each failure is logged and told to the next
// reload (hello's "degraded"). Later, asked by the next process, it lets go
// of all of them.

import type { PreparedAdmin } from "../../admin/grpc_server";
import { AdminServer } from "../../admin/grpc_server";
import { AdminService } from "../../admin/admin_service";
import { DashboardServer, type PreparedDashboard } from "../../dashboard/dashboard_server";
import type { Logger } from "../../log/logger";
import { MetricsServer } from "../../metrics/http";
import type { Metrics } from "../../metrics/metrics";
import { bindRetrying } from "../../net/bind_retry";
import type { RoutedConfig } from "../../routing/route_config";
import type { ControlPlane } from "../../server/control_plane";
import { HandoverServer, type HandoverResult } from "../../server/handover";
import type { ConfigStore } from "../../store/config_store";
import type { Succession } from "./succession";

/** How long the admin API, metrics and takeover socket addresses are retried while the old process lets go of them. */
const REBIND_MS = 3000;

/** The metrics, admin API and takeover socket of this process, as they are bound. */
export class Exposed {
  private control: HandoverServer | null = null;
  private admin: AdminServer | null = null;
  private dashboard: DashboardServer | null = null;
  private metrics: MetricsServer | null = null;
  /** Every bind attempted: /readyz says ready from here (until the drain). */
  private serving = false;

  constructor(
    private readonly succession: Succession,
    private readonly logger: Logger,
  ) {}

  /**
   * A plain start claims the takeover socket before anything else binds: a
   * live one is another instance serving this config.
   */
  async claimTakeoverSocket(): Promise<void> {
    if (this.succession.session === null)
      this.control = await HandoverServer.start(this.succession.control, this.succession.hooks);
  }

  /**
   * Bind the metrics, the admin API, the dashboard and (in a takeover) the
   * takeover socket; `admin` and `dashboard` were prepared by the preflight.
   */
  async bind(
    cfg: RoutedConfig,
    admin: PreparedAdmin | null,
    dashboard: PreparedDashboard | null,
    plane: ControlPlane,
    store: ConfigStore,
    metrics: Metrics | null,
  ): Promise<void> {
    const { session, generation, degraded } = this.succession;
    const logger = this.logger;
    const retryMs = session !== null ? REBIND_MS : 0;
    const attempt = async (what: string, bind: () => Promise<void>) => {
      try {
        await bind();
      } catch (e) {
        if (session === null) throw e;
        degraded.push(`${what}: ${(e as Error).message}`);
        logger.error(`${what} could not bind after the handover; this process serves its listeners without it`, {
          error: (e as Error).message,
        });
      }
    };
    try {
      if (cfg.metrics !== null && metrics !== null) {
        const m = cfg.metrics;
        const readiness = {
          notReady: () => (plane.isDraining ? "draining" : this.serving ? null : "starting"),
          note: () => (store.stale ? `store: ${store.describe()}` : null),
        };
        await attempt("metrics", async () => {
          this.metrics = await bindRetrying(retryMs, () => MetricsServer.start(m, metrics, readiness, logger));
        });
      }
      // One service for both: one queue of mutations, the same rules and audit.
      const options = {
        unauthenticatedAdmin: cfg.grpc?.allowUnauthenticatedAdmin ?? false,
        generation,
        pid: process.pid,
      };
      const service = new AdminService(plane, store, logger, options);
      if (admin !== null) {
        const observe = (method: string, code: string) => metrics?.adminRequests.labels(method, code).inc();
        await attempt("admin API", async () => {
          this.admin = await bindRetrying(retryMs, () => AdminServer.start(admin, service, logger, observe));
        });
      }
      if (dashboard !== null)
        await attempt("dashboard", async () => {
          this.dashboard = await bindRetrying(retryMs, () => DashboardServer.start(dashboard, service, plane, logger));
        });
      if (this.control === null)
        await attempt("takeover socket", async () => {
          this.control = await bindRetrying(REBIND_MS, () =>
            HandoverServer.start(this.succession.control, this.succession.hooks),
          );
        });
    } catch (e) {
      plane.shutdown();
      this.stop();
      throw e;
    }
    this.serving = true;
  }

  /**
   * Asked by the next process (handover.ts), once it listens: stop
   * accepting, let it bind the admin API, metrics and takeover socket; the
   * drain follows (drain.ts).
   */
  handOver(plane: ControlPlane, pid: number): HandoverResult {
    this.logger.info("handing over: closing listeners, admin API, dashboard and metrics; draining", {
      generation: this.succession.generation,
      requester_pid: pid,
      active: plane.counters.total(),
    });
    this.stopAdmin();
    plane.shutdown();
    this.metrics?.stop();
    this.metrics = null;
    this.control?.close();
    return { active: plane.counters.total() };
  }

  /** The admin API and the dashboard stop first at a stop signal: no change is accepted while draining. */
  stopAdmin(): void {
    this.admin?.stop();
    this.admin = null;
    this.dashboard?.stop();
    this.dashboard = null;
  }

  /** The drain ended: the admin API, dashboard and takeover socket close; the metrics last (drain.ts). */
  closeAfterDrain(): void {
    this.admin?.stop();
    this.dashboard?.stop();
    this.control?.close();
  }

  /** The metrics listener closes last: through the drain it is how a balancer learns we are going. */
  stopMetrics(): void {
    this.metrics?.stop();
  }

  /** Everything bound so far, on a failed start. */
  stop(): void {
    this.metrics?.stop();
    this.admin?.stop();
    this.dashboard?.stop();
    this.control?.close();
  }
}
