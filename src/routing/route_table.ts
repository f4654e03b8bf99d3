// RouteTable: one listener's hostname → backend map (SPEC §5). Immutable once
// built; a change builds a new table and swaps the reference, so a connection
// sees the old table or the new one, never a mix.
//
// Lookup: exact name, then the most specific wildcard, then the default
// backend (for "no SNI" and "no match" only). Wildcard lookup walks the
// name's suffixes from the longest down, one Map probe per label, so its cost
// depends on the name, not on the number of routes.

export interface Route {
  hostname: string;
  backend: string;
}

export class RouteTable {
  private readonly exact = new Map<string, string>();
  /** "*.example.com" is stored under "example.com". */
  private readonly wildcard = new Map<string, string>();

  constructor(
    routes: readonly Route[],
    readonly defaultBackend: string | null = null,
  ) {
    for (const r of routes) {
      if (r.hostname.startsWith("*.")) this.wildcard.set(r.hostname.slice(2), r.backend);
      else this.exact.set(r.hostname, r.backend);
    }
  }

  get size(): number {
    return this.exact.size + this.wildcard.size;
  }

  /** All routes, sorted by hostname (for the admin API and logs). */
  routes(): Route[] {
    const out: Route[] = [];
    for (const [hostname, backend] of this.exact) out.push({ hostname, backend });
    for (const [suffix, backend] of this.wildcard) out.push({ hostname: `*.${suffix}`, backend });
    return out.sort((a, b) => (a.hostname < b.hostname ? -1 : a.hostname > b.hostname ? 1 : 0));
  }

  /**
   * The backend for a normalised host name (lower case, no trailing dot), or
   * for a hello without SNI (null); null when nothing matches.
   */
  lookup(hostname: string | null): string | null {
    if (hostname !== null) {
      const exact = this.exact.get(hostname);
      if (exact !== undefined) return exact;
      if (this.wildcard.size > 0) {
        // "*.example.com" needs at least one more label: "a.example.com" matches,
        // "example.com" does not. Try "b.example.com" before "example.com" so the
        // longest suffix wins.
        let dot = hostname.indexOf(".");
        while (dot >= 0 && dot < hostname.length - 1) {
          const backend = this.wildcard.get(hostname.slice(dot + 1));
          if (backend !== undefined) return backend;
          dot = hostname.indexOf(".", dot + 1);
        }
      }
    }
    return this.defaultBackend;
  }
}
