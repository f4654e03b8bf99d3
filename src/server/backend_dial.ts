// Where a backend connection goes (docs/DNS.md, docs/SECURITY.md
// "Destination guard"): an IP literal as written; a host name through the
// loop's resolver cache, each address checked by the route's destination
// guard, then connected to by that address itself — the address checked is
// the address connected to, never resolved again in between (DNS rebinding).
// The addresses are tried in turn within the try's connect_timeout.

import { isIP } from "node:net";
import { networkInterfaces } from "node:os";
import type { Config, DnsConfig, TcpListenerConfig } from "../config/types";
import type { DnsCache, Lookup } from "../dns/dns_cache";
import { DestinationGuard, type OwnAddress } from "../dns/destination_guard";
import { newResolver } from "../dns/resolver";
import { splitHostPort } from "../net/host_port";
import type { RoutePool } from "../routing/pool";

/** A backend as split once: its host, port, and whether the host is an IP literal. */
export interface BackendTarget {
  readonly host: string;
  readonly port: number;
  readonly literal: boolean;
}

const targets = new Map<string, BackendTarget>();

/** "host:port" / "[v6]:port" → parts, cached; validated when the route was accepted. */
export function targetOf(backend: string): BackendTarget {
  let t = targets.get(backend);
  if (t === undefined) {
    const hp = splitHostPort(backend);
    t = { host: hp.host, port: hp.port, literal: isIP(hp.host) !== 0 };
    if (targets.size > 10_000) targets.clear();
    targets.set(backend, t);
  }
  return t;
}

/** What the dial reads of the try it serves (connection.ts). */
export interface DialOwner {
  readonly route: RoutePool | null;
  readonly listener: { readonly index: number };
  /** The address this try connects to, for a backend written as a name (access record `resolved`). */
  resolved: string | null;
  /** Whether try `attempt` is still the one awaited (not timed out, the client still there). */
  awaits(attempt: number): boolean;
  onBackendRefused(attempt: number, outcome: "destination_denied" | "dns_failed"): void;
  forceClose(outcome: "internal_error"): void;
}

/** What the process serves on: its listeners, the admin API, the metrics endpoint, the dashboard. */
export type ServedConfig = Pick<Config, "listeners" | "quicListeners" | "grpc" | "metrics" | "dashboard">;

/**
 * Every address the process serves on (docs/SECURITY.md "Destination guard": the proxy's own addresses):
 * TCP and QUIC listeners, and the admin API, metrics and dashboard when on host:port (a unix: socket is
 * no address). ":port" binds every address, IPv4 and IPv6; a host name is taken as every local address
 * (what it resolves to when bound is not known here; refusing more of this host's own port is safe).
 */
export function ownAddresses(cfg: ServedConfig): OwnAddress[] {
  const own: OwnAddress[] = [];
  const add = (host: string, port: number) => own.push({ ip: host === "" || isIP(host) === 0 ? "::" : host, port });
  for (const l of [...cfg.listeners, ...(cfg.quicListeners ?? [])]) add(l.bind.host, l.bind.port);
  for (const addr of [cfg.grpc?.addr, cfg.metrics?.addr, cfg.dashboard?.addr]) {
    if (addr === undefined || addr.startsWith("unix:")) continue;
    const hp = splitHostPort(addr);
    add(hp.host, hp.port);
  }
  return own;
}

/** Each pool's destination guard on one loop, built on first use from its route's and its listener's lists. */
export class GuardBook {
  private readonly guards = new WeakMap<RoutePool, DestinationGuard>();
  private readonly own: OwnAddress[];
  private readonly localIps: string[];
  private readonly listeners: readonly TcpListenerConfig[];

  constructor(cfg: ServedConfig) {
    this.listeners = cfg.listeners;
    this.own = ownAddresses(cfg);
    this.localIps = Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((a) => a.address));
  }

  of(listener: number, pool: RoutePool): DestinationGuard {
    let g = this.guards.get(pool);
    if (g === undefined) {
      const l = this.listeners[listener];
      g = new DestinationGuard({
        allow: [...(pool.route.allowDestinations ?? []), ...(l?.allowDestinations ?? [])],
        deny: [...(pool.route.denyDestinations ?? []), ...(l?.denyDestinations ?? [])],
        defaults: pool.templated,
        own: this.own,
        localIps: this.localIps,
      });
      this.guards.set(pool, g);
    }
    return g;
  }
}

/** One event loop's way to its backends: its resolver cache and its pools' guards, for TCP connections and QUIC flows alike. */
export interface Dialer {
  readonly dns: DnsCache;
  readonly guards: GuardBook;
}

export function newDialer(config: ServedConfig & { dns: DnsConfig }): Dialer {
  return { dns: newResolver(config.dns), guards: new GuardBook(config) };
}

/**
 * The addresses try `attempt` of `owner` may connect to, in order, given to `go`; or the refusal given to the
 * owner (dns_failed, destination_denied). Synchronous for a literal and a cached name.
 */
export function dial(
  owner: DialOwner,
  t: BackendTarget,
  attempt: number,
  dns: DnsCache,
  guards: GuardBook,
  go: (addresses: readonly string[]) => void,
): void {
  const pool = owner.route!;
  // A fixed IP literal goes as written (the operator chose it); a templated one is guarded like a name's answer.
  if (t.literal && !pool.templated) return go([t.host]);
  const guard = guards.of(owner.listener.index, pool);
  const checked = (addresses: readonly string[]): void => {
    const ok = guard.active ? addresses.filter((a) => guard.permits(a, t.port)) : addresses;
    if (ok.length > 0) return go(ok);
    owner.resolved = addresses[0] ?? null;
    owner.onBackendRefused(attempt, "destination_denied");
  };
  if (t.literal) return checked([t.host]);
  const found = (r: Lookup): void => {
    if (r.kind === "ok") checked(r.addresses);
    else owner.onBackendRefused(attempt, "dns_failed");
  };
  const r = dns.lookup(t.host);
  if (!(r instanceof Promise)) return found(r);
  r.then((v) => {
    if (owner.awaits(attempt)) found(v);
  }).catch(() => owner.forceClose("internal_error"));
}
