// A route's pool of backends on one event loop: which backend a
// new connection goes to, and which one after a failed connect.
//
// Eligible: enabled (not drained, not disabled) and up. Backups only when no
// primary is eligible; several backups are balanced like primaries.
//   round_robin        smooth weighted round robin (each loop keeps its own
//                      position; the shares hold over any loop's traffic)
//   least_connections  fewest open connections per unit of weight, counted
//                      over every loop (shared memory)
//   source_hash        rendezvous (highest random weight) hashing of the
//                      client address: the same client reaches the same
//                      backend while the pool is unchanged, and removing a
//                      backend moves only that backend's clients

import { AddressTable } from "../firewall/address_table";
import type { BackendTable, SlotRef } from "./backend_table";
import { fillTemplate, isTemplate } from "./backend_template";
import { type HostPattern, SNI_PLACEHOLDER, compileHostPattern, isPattern } from "./host_pattern";
import {
  type BackendSpec,
  type BoundRoute,
  type PoolDefaults,
  type Route,
  type SendProxy,
  checkSettingsOf,
  healthCheckOf,
  routeName,
} from "./route";

/** The listener's default route (default_backend) in logs and metrics alike (docs/METRICS_AND_LOGS.md). */
export const DEFAULT_ROUTE_LABEL = "_default";

export class RoutePool {
  readonly hostname: string;
  /** routeName, or DEFAULT_ROUTE_LABEL for the default route: the route in logs and metrics. */
  readonly name: string;
  readonly sendProxyProtocol: SendProxy;
  /** This route's connect_timeout; null: [proxy] connect_timeout. */
  readonly connectTimeoutMs: number | null;
  /** Tries at most: the first and `retries` more, never more than the backends. */
  readonly maxTries: number;
  readonly fall: number;
  readonly checksOn: boolean;
  /** With checks off, a backend down from connect failures is tried again after this long. */
  readonly holdSec: number;
  /** Whether the backends are templates filled from the name (docs/ROUTING.md "Templated routes"). */
  readonly templated: boolean;
  private readonly backends: readonly BackendSpec[];
  private readonly refs: readonly SlotRef[];
  /** Smooth weighted round robin (and least_connections' tie-break): the current weights of this loop. */
  private readonly current: Float64Array;
  /** Each backend's load at this pick (round robin: 0), -1 where not usable. */
  private readonly loads: Float64Array;
  private readonly hashes: number[];
  /** The route's hostname_pattern, compiled; null for an exact, wildcard or default route. */
  readonly pattern: HostPattern | null;
  /** The last name `filled` was asked about and its answer (the lookup's, then the connect's). */
  private lastName: string | null = null;
  private lastFilled: readonly string[] | null = null;
  /** The route's source policy; null when it has none (nothing to check). */
  private readonly allow: AddressTable | null;
  private readonly deny: AddressTable | null;

  constructor(
    readonly route: BoundRoute,
    defaults: PoolDefaults,
    private readonly table: BackendTable,
  ) {
    this.hostname = route.hostname;
    this.name = route.hostname === "" ? DEFAULT_ROUTE_LABEL : routeName(route);
    this.allow = route.allow.length === 0 ? null : new AddressTable(route.allow);
    this.deny = route.deny.length === 0 ? null : new AddressTable(route.deny);
    this.sendProxyProtocol = route.sendProxyProtocol;
    this.connectTimeoutMs = route.connectTimeoutMs;
    this.backends = route.backends;
    this.refs = route.refs;
    const check = checkSettingsOf(route, defaults);
    this.fall = check.fall;
    this.checksOn = healthCheckOf(route) !== "off";
    this.templated = route.backends.some((b) => isTemplate(b.addr));
    // The route was validated (routeProblems): its pattern compiles.
    const p = isPattern(route.hostname) ? compileHostPattern(route.hostname) : null;
    this.pattern = p?.ok ? p.value : null;
    this.holdSec = Math.max(1, Math.ceil((check.intervalMs * check.rise) / 1000));
    this.maxTries = Math.min(this.backends.length, 1 + (route.retries ?? defaults.retries));
    this.current = new Float64Array(this.backends.length);
    this.loads = new Float64Array(this.backends.length);
    this.hashes = this.backends.map((b) => hash32(b.addr, 0x9747b28c));
  }

  get size(): number {
    return this.backends.length;
  }

  /**
   * Whether the route lets this client in: "route_denied" when its source
   * policy refuses the address (outside allow, or inside deny),
   * "over_capacity" when max_connections are open over every loop; null
   * when it may go on, with a place taken that `leave` gives back.
   */
  enter(clientIp: string, worker: number): "route_denied" | "over_capacity" | null {
    if (!this.admits(clientIp)) return "route_denied";
    return this.table.tryTake(this.route.countRef, worker, this.route.maxConnections) ? null : "over_capacity";
  }

  /** Whether the route's source policy lets this address in (inside allow, outside deny): enter's first test, alone. */
  admits(clientIp: string): boolean {
    return (this.allow === null || this.allow.has(clientIp)) && !this.deny?.has(clientIp);
  }

  leave(worker: number): void {
    this.table.give(this.route.countRef, worker);
  }

  /** Connections open through this route now, over every loop. */
  get active(): number {
    return this.table.active(this.route.countRef);
  }

  addr(i: number): string {
    return this.backends[i]!.addr;
  }

  /**
   * Whether this route takes the name the table found it for: its pattern
   * matches the whole name, and every template filled from the name is a
   * valid host:port (else the route is passed over as if it did not match).
   */
  takes(sni: string): boolean {
    if (!this.templated) return this.pattern === null || this.pattern.test(sni);
    return this.filled(sni) !== null;
  }

  /** Where backend i's connection goes for this name: its address, or its template filled from the name (checked by `takes`). */
  target(i: number, sni: string | null): string {
    if (!this.templated || sni === null) return this.backends[i]!.addr;
    return this.filled(sni)?.[i] ?? this.backends[i]!.addr;
  }

  /** Every backend's address for this name, templates filled; null when the pattern does not match or a host filled in is not valid. */
  private filled(sni: string): readonly string[] | null {
    if (sni === this.lastName) return this.lastFilled;
    let out: string[] | null = null;
    const caps = this.pattern === null ? {} : this.pattern.captures(sni);
    if (caps !== null) {
      const values = { ...caps, [SNI_PLACEHOLDER]: sni };
      out = [];
      for (const b of this.backends) {
        const a = isTemplate(b.addr) ? fillTemplate(b.addr, values) : b.addr;
        if (a === null) {
          out = null;
          break;
        }
        out.push(a);
      }
    }
    this.lastName = sni;
    this.lastFilled = out;
    return out;
  }

  ref(i: number): SlotRef {
    return this.refs[i]!;
  }

  /**
   * The backend for a new connection (or its next try): an index, or -1
   * when none is eligible. `tried` is a bit set of indexes already tried on
   * this connection (a backend never gets a second try).
   */
  pick(clientIp: string, tried: number, nowSec: number): number {
    const n = this.backends.length;
    if (n === 1) return tried === 0 && this.table.eligible(this.refs[0]!, nowSec) ? 0 : -1;
    let backups = false;
    for (;;) {
      const i = this.pickAmong(clientIp, tried, nowSec, backups);
      if (i >= 0 || backups) return i;
      backups = true;
    }
  }

  private usable(i: number, tried: number, nowSec: number, backups: boolean): boolean {
    return (
      this.backends[i]!.backup === backups && (tried & (1 << i)) === 0 && this.table.eligible(this.refs[i]!, nowSec)
    );
  }

  /**
   * Smooth weighted round robin (nginx's) among the backends whose load is
   * `load` this pick: each gains its weight, the highest wins and gives back
   * the total. Over any run the shares follow the weights, evenly spread.
   */
  private smoothAmong(load: number): number {
    let best = -1;
    let total = 0;
    for (let i = 0; i < this.backends.length; i++) {
      if (this.loads[i] !== load) continue;
      const w = this.backends[i]!.weight;
      this.current[i]! += w;
      total += w;
      if (best < 0 || this.current[i]! > this.current[best]!) best = i;
    }
    if (best >= 0) this.current[best]! -= total;
    return best;
  }

  private pickAmong(clientIp: string, tried: number, nowSec: number, backups: boolean): number {
    const n = this.backends.length;
    switch (this.route.balance) {
      case "round_robin": {
        for (let i = 0; i < n; i++) this.loads[i] = this.usable(i, tried, nowSec, backups) ? 0 : -1;
        return this.smoothAmong(0);
      }
      case "least_connections": {
        // Fewest connections per unit of weight; a tie (sequential short
        // connections all see 0) is broken by smooth weighted round robin
        // among the tied, as HAProxy's leastconn and nginx's least_conn do.
        // Loads read once (other loops change them meanwhile); -1 = not usable.
        const loads = this.loads;
        let min = Number.POSITIVE_INFINITY;
        for (let i = 0; i < n; i++) {
          loads[i] = this.usable(i, tried, nowSec, backups)
            ? this.table.active(this.refs[i]!) / this.backends[i]!.weight
            : -1;
          if (loads[i]! >= 0 && loads[i]! < min) min = loads[i]!;
        }
        return min === Number.POSITIVE_INFINITY ? -1 : this.smoothAmong(min);
      }
      case "source_hash": {
        const h = hash32(clientIp, 0x1b873593);
        let best = -1;
        let bestScore = Number.NEGATIVE_INFINITY;
        for (let i = 0; i < n; i++) {
          if (!this.usable(i, tried, nowSec, backups)) continue;
          // Weighted rendezvous: -w / ln(u), u uniform in (0, 1) from the pair's hash.
          const u = ((mix(h ^ this.hashes[i]!) >>> 0) + 0.5) / 4294967296;
          const score = -this.backends[i]!.weight / Math.log(u);
          if (score > bestScore) {
            best = i;
            bestScore = score;
          }
        }
        return best;
      }
    }
  }
}

function hash32(s: string, seed: number): number {
  let h = seed | 0;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return mix(h);
}

function mix(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  return x ^ (x >>> 16);
}

/**
 * The slots of a listener's routes: one per backend, keyed by listener,
 * route name and address, and one per route (address "") that counts its
 * connections (max_connections, ListRoutes' live count).
 */
function slotKeys(listener: number, routes: readonly Route[], defaultRoute: Route | null): Set<string> {
  const keys = new Set<string>();
  for (const r of defaultRoute === null ? routes : [...routes, defaultRoute]) {
    const name = routeName(r);
    keys.add(`${listener}\u0000${name}\u0000`);
    for (const b of r.backends) keys.add(`${listener}\u0000${name}\u0000${b.addr}`);
  }
  return keys;
}

/**
 * Give every backend of a listener's routes its slot in the shared table
 * (the same slot while a route keeps the backend), freeing first the slots
 * of backends no longer routed. Run by the thread that owns the table; throws
 * when the table is full (check canBind first).
 */
export function bindRoutes(
  table: BackendTable,
  listener: number,
  routes: readonly Route[],
  defaultRoute: Route | null,
): { routes: BoundRoute[]; defaultRoute: BoundRoute | null } {
  const prefix = `${listener}\u0000`;
  table.releaseExcept(prefix, slotKeys(listener, routes, defaultRoute));
  const bind = (r: Route): BoundRoute => {
    const at = `${prefix}${routeName(r)}\u0000`;
    return {
      ...r,
      refs: r.backends.map((b) => table.acquire(`${at}${b.addr}`, b.state ?? "enabled")),
      countRef: table.acquire(at, "enabled", true),
    };
  };
  return { routes: routes.map(bind), defaultRoute: defaultRoute === null ? null : bind(defaultRoute) };
}

/** Would bindRoutes find a slot for every backend? (Checked before a change is written anywhere.) */
export function canBind(
  table: BackendTable,
  listener: number,
  routes: readonly Route[],
  defaultRoute: Route | null,
): boolean {
  return table.fits(`${listener}\u0000`, slotKeys(listener, routes, defaultRoute));
}
