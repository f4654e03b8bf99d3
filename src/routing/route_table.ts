// RouteTable: one listener's hostname → route map (docs/SPEC.md §5). Immutable once
// built; a change builds a new table and swaps the reference, so a connection
// sees the old table or the new one, never a mix.
//
// Lookup: exact name, then the most specific wildcard, then the
// hostname_pattern routes in the byte order of their pattern text (the same
// order whatever source wrote them; docs/ROUTING.md "Templated routes"),
// then the default route (for "no SNI" and "no match" only). Wildcard lookup
// walks the name's suffixes from the longest down, one Map probe per label,
// so its cost depends on the name, not on the number of routes. A route
// whose templates the name cannot fill (pool.ts `takes`) is passed over.
//
// ALPN (docs/SPEC.md "Routing on ALPN"): a hostname may have routes that
// name protocols beside its plain route. The first protocol in the client's
// own order (RFC 7301 §3.1: the list is in preference order) that one of the
// hostname's routes names picks that route; else its plain route serves;
// a hostname with neither is passed over as if it had no route, so the
// next candidate (a wildcard, the default route) still gets the client.

import type { BackendTable } from "./backend_table";
import { isPattern } from "./host_pattern";
import { RoutePool } from "./pool";
import type { BoundRoute } from "./route";
import type { PoolDefaults } from "../config/types";

const NO_ALPN: readonly string[] = [];

/** One hostname's routes: its plain route and its ALPN routes by protocol. */
class HostRoutes {
  plain: RoutePool | null = null;
  /** null until the hostname has an ALPN route (the common case costs nothing). */
  byAlpn: Map<string, RoutePool> | null = null;

  /** The route for a client offering `alpn` (its order), or null. */
  pick(alpn: readonly string[]): RoutePool | null {
    const m = this.byAlpn;
    if (m !== null) {
      for (let i = 0; i < alpn.length; i++) {
        const p = m.get(alpn[i]!);
        if (p !== undefined) return p;
      }
    }
    return this.plain;
  }
}

export class RouteTable {
  private readonly exact = new Map<string, HostRoutes>();
  /** "*.example.com" is stored under "example.com". */
  private readonly wildcard = new Map<string, HostRoutes>();
  /** hostname_pattern routes, by pattern text (byte order: patterns are ASCII). */
  private readonly patterns: RoutePool[] = [];
  private readonly all: RoutePool[] = [];
  /** Each route by its name (routeName): find() runs per connection in a drain's sweep. */
  private readonly byName = new Map<string, BoundRoute>();
  readonly defaultRoute: RoutePool | null;

  constructor(
    routes: readonly BoundRoute[],
    defaultRoute: BoundRoute | null,
    defaults: PoolDefaults,
    table: BackendTable,
  ) {
    for (const r of routes) {
      const p = new RoutePool(r, defaults, table);
      this.all.push(p);
      this.byName.set(p.name, r);
      if (isPattern(r.hostname)) {
        this.patterns.push(p);
        continue;
      }
      const wild = r.hostname.startsWith("*.");
      const map = wild ? this.wildcard : this.exact;
      const key = wild ? r.hostname.slice(2) : r.hostname;
      let h = map.get(key);
      if (h === undefined) map.set(key, (h = new HostRoutes()));
      if (r.alpn.length === 0) h.plain = p;
      else for (const proto of r.alpn) (h.byAlpn ??= new Map()).set(proto, p);
    }
    this.all.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    this.patterns.sort((a, b) => (a.hostname < b.hostname ? -1 : a.hostname > b.hostname ? 1 : 0));
    this.defaultRoute = defaultRoute === null ? null : new RoutePool(defaultRoute, defaults, table);
  }

  get size(): number {
    return this.all.length;
  }

  /** All routes, sorted by name (for the admin API and logs). */
  routes(): BoundRoute[] {
    return this.all.map((p) => p.route);
  }

  /** The route named `name` (routeName), or undefined. */
  find(name: string): BoundRoute | undefined {
    return this.byName.get(name);
  }

  /** The pools, with the default route's (for health checks and status). */
  pools(): RoutePool[] {
    return this.defaultRoute === null ? [...this.all] : [...this.all, this.defaultRoute];
  }

  /**
   * The route for a normalised host name (lower case, no trailing dot), or
   * for a hello without SNI (null), given the client's ALPN list; null when
   * nothing matches.
   */
  lookup(hostname: string | null, alpn: readonly string[] = NO_ALPN): RoutePool | null {
    if (hostname !== null) {
      const exact = this.exact.get(hostname)?.pick(alpn);
      if (exact != null && (!exact.templated || exact.takes(hostname))) return exact;
      if (this.wildcard.size > 0) {
        // "*.example.com" needs at least one more label: "a.example.com" matches,
        // "example.com" does not. Try "b.example.com" before "example.com" so the
        // longest suffix wins.
        let dot = hostname.indexOf(".");
        while (dot >= 0 && dot < hostname.length - 1) {
          const route: RoutePool | null | undefined = this.wildcard.get(hostname.slice(dot + 1))?.pick(alpn);
          if (route != null && (!route.templated || route.takes(hostname))) return route;
          dot = hostname.indexOf(".", dot + 1);
        }
      }
      for (const p of this.patterns) if (p.takes(hostname)) return p;
    }
    return this.defaultRoute;
  }
}
