// Who this process succeeds, and a takeover's one point of no return
// (docs/TAKEOVER.md; docs/ARCHITECTURE.md "Takeover"; RUNBOOK §3).
// `server --takeover` prepares the takeover with the running process
// through the takeover socket once the preflight passed (from then on that
// process refuses any other until this one ends); without a running
// process nothing else is touched. Every step that can fail comes before `handover`; after it this
// process serves whatever else fails, and says so (`degraded`). The
// successor it starts itself (a reload request, SIGUSR2) is
// successor_start.ts's.

import type { Logger } from "../../log/logger";
import type { ControlPlane } from "../../server/control_plane";
import { type HandoverHooks, type HandoverResult, type Incumbent, MAX_APPLIED } from "../../server/handover";
import { Refused, TakeoverSession } from "../../server/takeover_client";
import { VERSION } from "../../version";
import { SuccessorStarter } from "./successor_start";

export class Succession {
  /** What failed after this process's handover (it serves its listeners without them). */
  readonly degraded: string[] = [];
  private readonly startedAt = Date.now();
  /** What the takeover socket's handover request does: nothing until this process serves. */
  private handOver: (pid: number) => Promise<HandoverResult> = async () => {
    throw new Error("still starting");
  };
  /** What this process gives its takeover socket (handover.ts). */
  readonly hooks: HandoverHooks;
  /** The successor this process starts itself (a reload request, SIGUSR2). */
  readonly successor: SuccessorStarter;
  /** What this process applied from its config file at start, as hello tells it; null until set. */
  private applied: string | null = null;
  /** The pid this process handed over to, once it did. */
  private handedOverTo: number | null = null;

  private constructor(
    /** The takeover socket's path (handover.ts). */
    readonly control: string,
    /** The takeover prepared with the running process; null for a plain start. */
    readonly session: TakeoverSession | null,
    /** This process's config file, absolute: a successor must run the same one (successor.ts). */
    config: string,
    logger: Logger,
  ) {
    const previous = session === null ? null : { pid: session.incumbent.pid, generation: session.incumbent.generation };
    this.successor = new SuccessorStarter(config, logger, () => this.handedOverTo);
    this.hooks = {
      self: () => ({
        pid: process.pid,
        version: VERSION,
        generation: this.generation,
        startedAt: this.startedAt,
        previous,
        degraded: this.degraded,
        applied: this.applied,
        successor: this.successor.report(),
      }),
      config,
      handover: async (pid: number) => {
        const r = await this.handOver(pid);
        this.handedOverTo = pid;
        return r;
      },
      reload: (path: string) => this.successor.forRequest(path),
      prepared: (pid: number) => this.successor.prepared(pid),
      stopping: () => this.successor.stopping,
      logger,
    };
  }

  /** What this process applied from its config file at start: hello's `applied` (clipped to MAX_APPLIED characters). */
  setApplied(summary: string): void {
    this.applied = summary.length > MAX_APPLIED ? `${summary.slice(0, MAX_APPLIED - 1)}…` : summary;
  }

  /** A plain start, or (`takeover`) the takeover prepared with the process answering on `control`. */
  static async open(control: string, config: string, takeover: boolean, logger: Logger): Promise<Succession> {
    if (!takeover) return new Succession(control, null, config, logger);
    let session: TakeoverSession;
    try {
      session = await TakeoverSession.open(control);
    } catch (e) {
      if (e instanceof Refused) throw new Error(`--takeover: the running mc-proxy refused: ${e.message}`);
      throw new Error(
        `--takeover: no running mc-proxy answers on ${control} (${(e as Error).message}). A release before takeovers has no such socket: restart it once with this release (systemctl restart mc-proxy); from then on reload takes over. With nothing running, start without --takeover.`,
      );
    }
    const from = session.incumbent;
    logger.info("taking over", { from_pid: from.pid, from_version: from.version, from_generation: from.generation });
    return new Succession(control, session, config, logger);
  }

  /** The process being taken over; null for a plain start. */
  get incumbent(): Incumbent | null {
    return this.session?.incumbent ?? null;
  }

  /** This process's generation: 1 after a plain start, else as the running process assigned it. */
  get generation(): number {
    return this.session?.generation ?? 1;
  }

  /** Once this process serves: what it does when the next process asks for the handover. */
  serveHandovers(handOver: (pid: number) => Promise<HandoverResult>): void {
    this.handOver = handOver;
  }

  /**
   * The point of no return (nothing for a plain start). Ready — routes,
   * rules and GeoIP loaded, listeners bound beside the old process, the
   * admin API's TLS loaded, every address probed — it primes the health
   * checks, then the old process checks that this one listens on
   * `listeners`, closes its listeners, admin API, metrics and takeover
   * socket, and drains. If it does not hand over, this process stops.
   */
  async handover(plane: ControlPlane, listeners: string[], logger: Logger): Promise<void> {
    const session = this.session;
    if (session === null) return;
    const incumbent = session.incumbent;
    const t0 = performance.now();
    const health = await plane.primeHealth();
    if (health.checked > 0)
      logger.info("health checks primed", {
        backends: health.checked,
        down: health.down,
        ms: Math.round(performance.now() - t0),
      });
    try {
      const r = await session.handover(listeners);
      logger.info("took over", {
        from_pid: incumbent.pid,
        from_generation: incumbent.generation,
        generation: this.generation,
        old_active: r.active,
        handover_ms: Math.round(performance.now() - t0),
      });
    } catch (e) {
      logger.error("takeover failed: the running process did not hand over; stopping this one", {
        error: (e as Error).message,
        pid: incumbent.pid,
      });
      plane.shutdown();
      await plane.done;
      throw new Error(
        `--takeover: the running process (pid ${incumbent.pid}) did not hand over: ${(e as Error).message}`,
      );
    }
  }

  close(): void {
    this.session?.close();
  }
}
