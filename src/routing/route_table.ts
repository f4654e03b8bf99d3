// RouteTable: one listener's hostname → route map (docs/SPEC.md §5). Immutable once
// built; a change builds a new table and swaps the reference, so a connection
// sees the old table or the new one, never a mix.
//
// Lookup: exact name, then the most specific wildcard, then the default
// route (for "no SNI" and "no match" only). Wildcard lookup walks the
// name's suffixes from the longest down, one Map probe per label, so its cost
// depends on the name, not on the number of routes.

import type { BackendTable } from "./backend_table";
import { type BoundRoute, type PoolDefaults, RoutePool } from "./pool";

export type { BoundRoute, Route, SendProxy } from "./pool";

export class RouteTable {
  private readonly exact = new Map<string, RoutePool>();
  /** "*.example.com" is stored under "example.com". */
  private readonly wildcard = new Map<string, RoutePool>();
  readonly defaultRoute: RoutePool | null;

  constructor(routes: readonly BoundRoute[], defaultRoute: BoundRoute | null, defaults: PoolDefaults, table: BackendTable) {
    for (const r of routes) {
      const p = new RoutePool(r, defaults, table);
      if (r.hostname.startsWith("*.")) this.wildcard.set(r.hostname.slice(2), p);
      else this.exact.set(r.hostname, p);
    }
    this.defaultRoute = defaultRoute === null ? null : new RoutePool(defaultRoute, defaults, table);
  }

  get size(): number {
    return this.exact.size + this.wildcard.size;
  }

  /** All routes, sorted by hostname (for the admin API and logs). */
  routes(): BoundRoute[] {
    return [...this.exact.values(), ...this.wildcard.values()].map((p) => p.route).sort((a, b) => (a.hostname < b.hostname ? -1 : a.hostname > b.hostname ? 1 : 0));
  }

  /** The pools, with the default route's (for health checks and status). */
  pools(): RoutePool[] {
    return [...this.exact.values(), ...this.wildcard.values(), ...(this.defaultRoute === null ? [] : [this.defaultRoute])];
  }

  /**
   * The route for a normalised host name (lower case, no trailing dot), or
   * for a hello without SNI (null); null when nothing matches.
   */
  lookup(hostname: string | null): RoutePool | null {
    if (hostname !== null) {
      const exact = this.exact.get(hostname);
      if (exact !== undefined) return exact;
      if (this.wildcard.size > 0) {
        // "*.example.com" needs at least one more label: "a.example.com" matches,
        // "example.com" does not. Try "b.example.com" before "example.com" so the
        // longest suffix wins.
        let dot = hostname.indexOf(".");
        while (dot >= 0 && dot < hostname.length - 1) {
          const route = this.wildcard.get(hostname.slice(dot + 1));
          if (route !== undefined) return route;
          dot = hostname.indexOf(".", dot + 1);
        }
      }
    }
    return this.defaultRoute;
  }
}
