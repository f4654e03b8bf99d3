// What the dashboard page reads (docs/DASHBOARD.md "The HTTP API"): one JSON
// document built from the admin API's read methods (the same replies the
// gRPC API gives) and the control plane's snapshots — never per connection —
// once a second at most, shared by every viewer; and the history behind its
// charts, one sample a second for 15 minutes, kept in memory.

import type { AdminService } from "../admin/admin_service";
import type { Refusal } from "../server/refusal_ring";
import type { Snapshot } from "../server/snapshot";
import { OUTCOME_INDEX } from "../server/stats";
import type { Session } from "./sessions";

/** Samples kept: one a second for 15 minutes. */
export const HISTORY_POINTS = 900;
/** Fingerprints the page shows. */
export const TOP_FINGERPRINTS = 20;
/**
 * Rules listed in the state (sent every second to every viewer; a rule set of
 * 1,000 CIDRs made a 65 kB event): the rest are counted, and listed by
 * `mc-proxy firewall list`.
 */
export const RULES_SHOWN = 200;

/** What the state reads of the control plane (ControlPlane has both). */
export interface StateSource {
  snapshot(): Promise<Snapshot>;
  refusals(): Promise<Refusal[]>;
}

/** The counters one sample is the difference of. */
export interface Totals {
  /** Epoch milliseconds. */
  at: number;
  open: number;
  accepted: number;
  bytesIn: number;
  bytesOut: number;
  /** Sessions ended with an outcome other than ok. */
  refused: number;
}

export function totalsOf(s: Snapshot, at: number): Totals {
  const t: Totals = { at, open: 0, accepted: 0, bytesIn: 0, bytesOut: 0, refused: 0 };
  const ok = OUTCOME_INDEX.ok;
  for (const l of s.listeners) {
    t.open += l.active;
    t.accepted += l.accepted;
    for (const r of l.routeStats) {
      t.bytesIn += r.bytesFromClient;
      t.bytesOut += r.bytesToClient;
    }
    l.closed.forEach((n, i) => {
      if (i !== ok) t.refused += n;
    });
  }
  return t;
}

/** Connections refused by the firewall, by rule kind (the listeners' outcome counters). */
export function blockedOf(s: Snapshot): { ip: number; cidr: number; country: number; ja4: number } {
  const sum = (o: keyof typeof OUTCOME_INDEX) => s.listeners.reduce((n, l) => n + (l.closed[OUTCOME_INDEX[o]] ?? 0), 0);
  return { ip: sum("blocked_ip"), cidr: sum("blocked_cidr"), country: sum("blocked_country"), ja4: sum("blocked_ja4") };
}

/** The charts' series: one point a second, the oldest dropped past `size`. */
export class History {
  readonly t: number[] = [];
  readonly open: number[] = [];
  readonly newPerSec: number[] = [];
  readonly bytesInPerSec: number[] = [];
  readonly bytesOutPerSec: number[] = [];
  readonly refusedPerSec: number[] = [];
  private last: Totals | null = null;

  constructor(private readonly size = HISTORY_POINTS) {}

  /** A sample: rates from the previous one (none for the first; a counter that went back counts 0). */
  add(now: Totals): void {
    const prev = this.last;
    this.last = now;
    if (prev === null || now.at <= prev.at) return;
    const secs = (now.at - prev.at) / 1000;
    const rate = (a: number, b: number) => Math.max(0, Math.round(((a - b) / secs) * 10) / 10);
    const series: [number[], number][] = [
      [this.t, Math.round(now.at / 1000)],
      [this.open, now.open],
      [this.newPerSec, rate(now.accepted, prev.accepted)],
      [this.bytesInPerSec, rate(now.bytesIn, prev.bytesIn)],
      [this.bytesOutPerSec, rate(now.bytesOut, prev.bytesOut)],
      [this.refusedPerSec, rate(now.refused, prev.refused)],
    ];
    for (const [s, v] of series) {
      s.push(v);
      if (s.length > this.size) s.shift();
    }
  }

  toJSON() {
    const { t, open, newPerSec, bytesInPerSec, bytesOutPerSec, refusedPerSec } = this;
    return { t, open, newPerSec, bytesInPerSec, bytesOutPerSec, refusedPerSec };
  }
}

/** The state document's fields after "me", as JSON text: the same for every viewer. */
export class DashboardState {
  readonly history = new History();
  private last: Snapshot | null = null;
  private cached: { at: number; body: Promise<string> } | null = null;

  constructor(
    private readonly service: AdminService,
    private readonly source: StateSource,
    private readonly now: () => number = Date.now,
  ) {}

  /** Take this second's sample (a timer calls it once a second). */
  async sample(): Promise<void> {
    const s = await this.source.snapshot();
    this.last = s;
    this.cached = null;
    this.history.add(totalsOf(s, this.now()));
  }

  /** A change was made (an action): the next read builds the document again. */
  invalidate(): void {
    this.cached = null;
  }

  /** The shared part of the document, built once a sample, or a second (concurrent callers share one build). */
  body(): Promise<string> {
    const at = this.now();
    if (this.cached !== null && at - this.cached.at < 1000) return this.cached.body;
    const body = this.build();
    this.cached = { at, body };
    body.catch(() => {
      if (this.cached?.body === body) this.cached = null;
    });
    return body;
  }

  private async build(): Promise<string> {
    const s = this.last ?? (await this.source.snapshot());
    const [status, fingerprints, refusals] = await Promise.all([
      this.service.getStatus(s),
      this.service.listFingerprints({ limit: TOP_FINGERPRINTS }),
      this.source.refusals(),
    ]);
    const { rules } = this.service.getFirewallRules();
    const ja4 = new Set(rules.filter((r) => r.type === "FIREWALL_RULE_TYPE_JA4").map((r) => r.value));
    const counts: Record<string, number> = {};
    for (const r of rules) counts[r.type] = (counts[r.type] ?? 0) + 1;
    const doc = {
      status,
      routes: this.service.listRoutes({ listener: "" }),
      // The first RULES_SHOWN rules (every second, to every viewer), the counts by kind, the total.
      firewall: { rules: rules.slice(0, RULES_SHOWN), total: rules.length, counts, blocked: blockedOf(s) },
      fingerprints: {
        ...fingerprints,
        fingerprints: fingerprints.fingerprints.map((f) => ({ ...f, ruled: ja4.has(f.ja4) })),
      },
      refusals: refusals.map((r) => ({ ...r, time: new Date(r.time).toISOString() })),
      history: this.history,
    };
    return JSON.stringify(doc).slice(1, -1);
  }
}

/** The whole document for one viewer: who they are (and their CSRF token), then the shared part. */
export function stateDocument(session: Session, body: string): string {
  const me = { user: session.user, role: session.role, csrf: session.csrf };
  return `{"me":${JSON.stringify(me)},${body}}`;
}
