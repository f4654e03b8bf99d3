// Start-up's last phase: wait for the drain (docs/COMMAND_LINE.md "Signals": a stop
// signal, or a handover to the next process, shuts the plane down; open
// connections drain for up to [proxy] shutdown_timeout), then close what is
// left and write the last line.

import type { Logger } from "../../log/logger";
import type { ControlPlane } from "../../server/control_plane";
import type { Exposed } from "./expose";

/** The plane's exit code once it has drained. */
export async function drain(
  plane: ControlPlane,
  exposed: Exposed,
  generation: number,
  logger: Logger,
): Promise<number> {
  const code = await plane.done;
  exposed.closeAfterDrain();
  const s = await plane.snapshot().catch(() => null);
  const total = s === null ? null : s.listeners.reduce((n, l) => n + l.closed.reduce((a, b) => a + b, 0), 0);
  // The metrics listener closes last: through the drain it is how a balancer learns we are going.
  exposed.stopMetrics();
  // Last line: every access record (from every worker) is written before it.
  logger.info("stopped", { connections_total: total, exit_code: code, generation });
  return code;
}
