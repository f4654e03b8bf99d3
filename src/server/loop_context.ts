// What every connection of one event loop shares: settings, the deadline
// wheel, the logger, the shared counts and backend table, the backend socket
// connector. Generic over the connection type so this file imports nothing
// of connection.ts (no import cycle).
import type { ProxyConfig } from "../config/config";
import type { Firewall } from "../firewall/firewall";
import type { Logger } from "../log/logger";
import type { HeavyHitters } from "../metrics/heavy_hitters";
import type { DeadlineWheel, Timed } from "../relay/deadline_wheel";
import type { RefusalRing } from "./refusal_ring";
import type { BackendTable } from "../routing/backend_table";
import type { SharedCounters } from "./shared_counters";

export interface LoopContext<C extends Timed, A> {
  readonly proxy: ProxyConfig;
  readonly firewall: Firewall;
  readonly wheel: DeadlineWheel<C>;
  readonly logger: Logger;
  /** Observe the latency histograms (on when metrics are served; the plain counters always count). */
  readonly histograms: boolean;
  /** Open-connection counts shared by every event loop: exact limits. */
  readonly counters: SharedCounters;
  /** This event loop's worker id (0 for a single loop): the access log's `worker`. */
  readonly workerId: number;
  /** The process's takeover generation: the access log's `gen`. */
  readonly generation: number;
  /** This event loop's connections (for the drain and the live byte counts). */
  readonly connections: Set<C>;
  /** Start a backend connect for owner `A` (backend_socket.ts BackendConnector): Bun's sockets, or a test's fake. */
  readonly connect: (owner: A, backend: string, attempt: number) => void;
  /** Backend state shared by every loop: health, operator state, connections per backend. */
  readonly backends: BackendTable;
  /** Compute each hello's JA4 fingerprint (sni/ja4.ts): on when something reads it (the access log, the top table). */
  readonly ja4: boolean;
  /** The live top-fingerprints table of this loop; null when [fingerprints] top = 0. */
  readonly fingerprints: HeavyHitters | null;
  /** This loop's recent refusals (refusal_ring.ts), for the dashboard. */
  readonly refusals: RefusalRing;
  onConnectionClosed(): void;
}
