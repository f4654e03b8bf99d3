// Drains end, and connections grow old (docs/POOLS.md "Drains end"): one
// sweep per event loop over its open connections. A connection on a backend
// put in drain or disabled, or on one that left its route (the route
// removed, or its pool changed), is ended drain_timeout after that; one
// older than max_connection_lifetime is ended too. Ended: FIN both ways
// (Relay.closeBoth, the client's side a lingering close), or, while bytes
// wait to be written, FIN once they are out; RST when END_GRACE_MS pass
// first, and RST to a client that has not closed its side END_GRACE_MS
// after our FIN.
//
// The decisions are pure (dueReason, endStep), fed numbers; the shell
// (ConnectionSweep) reads the connections and the shared backend table on
// a timer armed only while some deadline can exist: a drain_timeout or a
// max_connection_lifetime configured, or connections left over from a
// route change, ending or lingering.

import type { Logger } from "../log/logger";
import type { BackendTable, SlotRef } from "../routing/backend_table";
import type { BoundRoute } from "../routing/route";
import type { Closer } from "../relay/relay";

/** How often the sweep runs while armed: a deadline is met within this (docs/POOLS.md). */
export const SWEEP_EVERY_MS = 250;
/** After our FIN: how long bytes in flight get to be written, and a client to close its side, before RST. */
export const END_GRACE_MS = 5000;

export type EndReason = "drain" | "lifetime";

/** What the decision reads of one connection, in milliseconds. */
export interface EndFacts {
  /** Since it was accepted. */
  ageMs: number;
  /** max_connection_lifetime in force for it (the route's, else its listener's); 0: never. */
  lifetimeMs: number;
  /** Since its backend left `enabled` or left its route; -1: it has not. */
  drainedForMs: number;
  /** drain_timeout in force for it (the route's, else [proxy]'s); 0: never. */
  drainTimeoutMs: number;
}

/** Whether the connection is due to end now, and why; null when not (yet). */
export function dueReason(f: EndFacts): EndReason | null {
  if (f.drainedForMs >= 0 && f.drainTimeoutMs > 0 && f.drainedForMs >= f.drainTimeoutMs) return "drain";
  if (f.lifetimeMs > 0 && f.ageMs >= f.lifetimeMs) return "lifetime";
  return null;
}

/** Milliseconds until it is due (0: now), or null: never. */
export function dueIn(f: EndFacts): number | null {
  const drain = f.drainedForMs >= 0 && f.drainTimeoutMs > 0 ? f.drainTimeoutMs - f.drainedForMs : null;
  const life = f.lifetimeMs > 0 ? f.lifetimeMs - f.ageMs : null;
  const soonest = drain === null ? life : life === null ? drain : Math.min(drain, life);
  return soonest === null ? null : Math.max(0, soonest);
}

/** A connection due to end: FIN when nothing waits to be written, RST once the grace is over, else wait. */
export function endStep(pending: boolean, dueForMs: number, graceMs = END_GRACE_MS): "fin" | "rst" | "wait" {
  if (!pending) return "fin";
  return dueForMs >= graceMs ? "rst" : "wait";
}

/** The drain_timeout in force for a route: its own, else [proxy]'s. */
export function drainTimeoutOf(route: BoundRoute, proxyDefaultMs: number): number {
  return route.drainTimeoutMs ?? proxyDefaultMs;
}

/** The backend's drain closing time (ms since the epoch), or 0: not draining, or drain_timeout 0 (never). */
export function drainClosesAt(drainedAt: number, drainTimeoutMs: number): number {
  return drainedAt === 0 || drainTimeoutMs === 0 ? 0 : drainedAt + drainTimeoutMs;
}

/** What the sweep reads and does of a connection (connection.ts; a unit test's fake). */
export interface Sweepable {
  /** performance.now() at accept. */
  readonly acceptedAt: number;
  /** performance.now() when the relay started; 0 before. */
  readonly connectedAt: number;
  readonly route: { readonly name: string; readonly route: BoundRoute } | null;
  readonly listener: { readonly index: number; readonly table: { find(name: string): BoundRoute | undefined } };
  readonly backendSlot: SlotRef | null;
  readonly relay: {
    readonly finished: boolean;
    readonly pending: boolean;
    readonly client: { terminate(): void };
    closeBoth(by: Closer): void;
    resetBoth(by: Closer): void;
  };
}

export interface SweepSettings {
  /** [proxy] drain_timeout. */
  drainTimeoutMs: number;
  /** Each listener's max_connection_lifetime, by index (0: never). */
  listenerLifetimeMs: readonly number[];
}

interface Clocks {
  /** ms since the epoch (the backend table's drain times). */
  wall: () => number;
  /** performance.now() (connections' accept times). */
  mono: () => number;
}

export class ConnectionSweep {
  private timer: ReturnType<typeof setInterval> | null = null;
  /** Connections on a backend that left their route: when it was seen (wall ms). */
  private readonly left = new WeakMap<Sweepable, number>();
  /** Due, waiting for bytes to be written: since when (wall ms), and why. */
  private readonly ending = new Map<Sweepable, { since: number; reason: EndReason }>();
  /** Clients sent our FIN: reset at this time (wall ms) unless closed before. */
  private lingering: { client: { terminate(): void }; rstAt: number }[] = [];
  /** Some drain_timeout or max_connection_lifetime is configured on this loop. */
  private configured = false;
  /** A route change may have left connections behind: look until a sweep finds none. */
  private leftovers = false;

  constructor(
    private readonly connections: () => Iterable<Sweepable>,
    private readonly backends: BackendTable,
    private settings: SweepSettings,
    private readonly logger: Logger,
    private readonly clock: Clocks = { wall: Date.now, mono: () => performance.now() },
  ) {}

  /** The routes in force changed (or were first set): `configured` says whether any sets a deadline. */
  routesChanged(configured: boolean): void {
    this.configured =
      configured || this.settings.drainTimeoutMs > 0 || this.settings.listenerLifetimeMs.some((l) => l > 0);
    this.leftovers = true;
    this.arm();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  private arm(): void {
    const want = this.configured || this.leftovers || this.ending.size > 0 || this.lingering.length > 0;
    if (want && this.timer === null) this.timer = setInterval(() => this.sweep(), SWEEP_EVERY_MS);
    else if (!want) this.stop();
  }

  /** One pass: the connections ended (FIN or RST) now. */
  sweep(): number {
    const now = this.clock.wall();
    const mono = this.clock.mono();
    let ended = 0;
    let leftSeen = false;
    for (const c of [...this.connections()]) {
      if (c.relay.finished || c.connectedAt === 0 || c.route === null) continue;
      const ending = this.ending.get(c);
      if (ending !== undefined) {
        ended += this.step(c, ending.reason, now - ending.since);
        continue;
      }
      const f = this.factsOf(c, now, mono);
      if (f.drainTimeoutMs > 0 && this.left.has(c)) leftSeen = true;
      const reason = dueReason(f);
      if (reason === null) continue;
      this.ending.set(c, { since: now, reason });
      ended += this.step(c, reason, 0);
    }
    for (const c of this.ending.keys()) if (c.relay.finished) this.ending.delete(c);
    this.lingering = this.lingering.filter((l) => {
      if (now < l.rstAt) return true;
      l.client.terminate();
      return false;
    });
    this.leftovers = leftSeen;
    this.arm();
    if (ended > 0) this.logger.debug("drain / lifetime: connections ended", { ended });
    return ended;
  }

  /** Act on a due connection: 1 when it ended now. */
  private step(c: Sweepable, reason: EndReason, dueForMs: number): number {
    const s = endStep(c.relay.pending, dueForMs);
    if (s === "wait") return 0;
    this.ending.delete(c);
    if (s === "rst") {
      c.relay.resetBoth(reason);
      return 1;
    }
    c.relay.closeBoth(reason);
    this.lingering.push({ client: c.relay.client, rstAt: this.clock.wall() + END_GRACE_MS });
    return 1;
  }

  private factsOf(c: Sweepable, now: number, mono: number): EndFacts {
    const own = c.route!.route;
    const lifetimeMs = own.maxConnectionLifetimeMs ?? this.settings.listenerLifetimeMs[c.listener.index] ?? 0;
    const facts = { ageMs: mono - c.acceptedAt, lifetimeMs, drainedForMs: -1, drainTimeoutMs: 0 };
    const ref = c.backendSlot;
    if (ref === null) return facts;
    let since: number;
    if (!this.backends.isCurrent(ref)) {
      // Its backend left the route: counted from when the sweep first saw it so.
      since = this.left.get(c) ?? now;
      this.left.set(c, since);
    } else {
      since = this.backends.drainedAt(ref);
      if (since === 0) return facts;
    }
    // The route now in force under its name says how long it may stay, else its own.
    const route = c.listener.table.find(c.route!.name) ?? own;
    return { ...facts, drainedForMs: now - since, drainTimeoutMs: drainTimeoutOf(route, this.settings.drainTimeoutMs) };
  }
}
