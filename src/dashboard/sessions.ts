// Dashboard sessions (docs/DASHBOARD.md "Security model"): an id of 32 random
// bytes (the cookie) → the user, their role, a CSRF token of 32 random bytes
// (sent back in the X-CSRF-Token header of every action) and the expiry.
// Bounded per user: at most PER_USER sessions each, a user's own oldest
// dropped for their new one — never another user's, so logging in again and
// again cannot log anyone else out. Users come from the config, so the table
// is at most PER_USER × users.

import { timingSafeEqual } from "node:crypto";
import type { DashboardRole } from "../config/types";

export interface Session {
  readonly id: string;
  readonly user: string;
  readonly role: DashboardRole;
  readonly csrf: string;
  /** Milliseconds since the epoch. */
  readonly expires: number;
}

export const PER_USER = 10;

/** 32 random bytes, base64url (no padding). */
export function randomToken(): string {
  return Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64url");
}

/** Compare two tokens in time that does not depend on where they differ. */
export function sameToken(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export class Sessions {
  /** In creation order: the first is the oldest. */
  private readonly byId = new Map<string, Session>();

  constructor(
    private readonly ttlMs: number,
    private readonly perUser = PER_USER,
    private readonly token: () => string = randomToken,
  ) {}

  get size(): number {
    return this.byId.size;
  }

  /** A new session; with it, the user's own sessions dropped to make room (oldest first), if any. */
  create(user: string, role: DashboardRole, now: number): { session: Session; dropped: number } {
    this.sweep(now);
    const own = [...this.byId.values()].filter((s) => s.user === user);
    const dropped = Math.max(0, own.length - this.perUser + 1);
    for (const s of own.slice(0, dropped)) this.byId.delete(s.id);
    const s: Session = { id: this.token(), user, role, csrf: this.token(), expires: now + this.ttlMs };
    this.byId.set(s.id, s);
    return { session: s, dropped };
  }

  /** The live session of this id, or null (unknown, or expired: then dropped). */
  get(id: string, now: number): Session | null {
    const s = this.byId.get(id);
    if (s === undefined) return null;
    if (s.expires <= now) {
      this.byId.delete(id);
      return null;
    }
    return s;
  }

  drop(id: string): void {
    this.byId.delete(id);
  }

  /** Drop every expired session. */
  sweep(now: number): void {
    for (const [id, s] of this.byId) if (s.expires <= now) this.byId.delete(id);
  }
}
