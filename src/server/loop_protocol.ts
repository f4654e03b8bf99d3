// What the control plane tells an event loop, and what it asks of one.
// Commands change every loop (routes, rules, GeoIP bytes, a backend's
// connections reset) and are answered with an ack or an error; queries read
// one loop (its counters, its top-fingerprints table, its recent refusals), each answered with
// its own type (LoopReply). Both are handled in one place each, EventLoop.apply
// and EventLoop.answer, whether the loop runs in this thread or in a worker
// (worker_main.ts posts the answer back). A data-plane change is one
// control-plane method plus one command here.

import type { RoutedConfig as Config } from "../routing/route_config";
import type { FirewallRules } from "../firewall/firewall";
import type { BoundRoute } from "../routing/route";
import type { HitterReport } from "../metrics/heavy_hitters";
import type { Refusal } from "./refusal_ring";
import type { Snapshot } from "./snapshot";

/** Everything an event loop is built from; shared memory is attached, never copied. */
export interface LoopInit {
  id: number;
  /** Event loops in the process (the shared tables' worker dimension). */
  workers: number;
  /** The effective config: routes, rules and limits as the control plane holds them now. */
  config: Config;
  counters: SharedArrayBuffer;
  /** The backend table (of backendSlots entries), and each listener's routes bound to its slots. */
  backends: SharedArrayBuffer;
  backendSlots: number;
  tables: { routes: BoundRoute[]; defaultRoute: BoundRoute | null }[];
  rateBuffer: SharedArrayBuffer | null;
  geoipData: Uint8Array | null;
  histograms: boolean;
  connectionCap: number;
  /** The process's takeover generation: the access log's `gen`. */
  generation: number;
  /** Started by a takeover: bind UDP (no SO_REUSEPORT in Bun) once the old process lets go of it. */
  takeover: boolean;
}

/** A change every loop applies. */
export type LoopCommand =
  | { type: "routes"; listener: number; routes: BoundRoute[] }
  /** Reset this loop's connections on the backend in that slot (of that generation). */
  | { type: "reset-backend"; slot: number; gen: number }
  /**
   * The rules in force from now on; with `passed`, this loop's sessions the
   * new rules block and `passed` did not are closed with RST
   * (Firewall.newlyBlocked); null: none is touched.
   */
  | { type: "rules"; rules: FirewallRules; passed: FirewallRules | null }
  | { type: "geoip"; data: Uint8Array };

/**
 * A command's answer: applied, with the connections it closed (reset-backend,
 * rules; 0 for the others), or why not (the loop failed applying it, died, or did
 * not answer in time).
 */
export type Ack = { ok: true; closed: number } | { ok: false; error: string };

/** What a loop can be asked, and the type of each answer. */
export interface LoopAnswers {
  /** This loop's counters. */
  snapshot: Snapshot;
  /** This loop's top-fingerprints table, counted over its window. */
  fingerprints: HitterReport;
  /** This loop's recent refusals, newest first. */
  refusals: Refusal[];
}

export type QueryType = keyof LoopAnswers;

/** A query (none has parameters yet). */
export type LoopQuery<K extends QueryType = QueryType> = { type: K };

/** The answer to a query of type K. */
export type LoopReply<K extends QueryType = QueryType> = LoopAnswers[K];

/** Main thread → worker thread. */
export type ToWorker =
  | { type: "init"; init: LoopInit }
  | { type: "command"; seq: number; command: LoopCommand }
  | { type: "query"; seq: number; query: LoopQuery }
  | { type: "drain" }
  | { type: "crash" };

/** Worker thread → main thread. */
export type FromWorker =
  | { type: "ready"; thread: number }
  | { type: "failed"; error: string }
  | { type: "ack"; seq: number; ack: Ack }
  /** The answer to the query sent with this seq (LoopReply of that query); null: answering failed (logged). */
  | { type: "answer"; seq: number; answer: LoopReply | null }
  | { type: "log"; text: string }
  /** Drained: its last counters come with it. */
  | { type: "stopped"; snapshot: Snapshot };
