// Dashboard sessions (docs/DASHBOARD.md "Security model"): an id of 32 random
// bytes (the cookie) → the user, their role, a CSRF token of 32 random bytes
// (sent back in the X-CSRF-Token header of every action) and the expiry.
// Bounded: at most MAX_SESSIONS, the oldest dropped for a new one.

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

export const MAX_SESSIONS = 1000;

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
    private readonly max = MAX_SESSIONS,
    private readonly token: () => string = randomToken,
  ) {}

  get size(): number {
    return this.byId.size;
  }

  create(user: string, role: DashboardRole, now: number): Session {
    if (this.byId.size >= this.max) this.sweep(now);
    while (this.byId.size >= this.max) this.byId.delete(this.byId.keys().next().value!);
    const s: Session = { id: this.token(), user, role, csrf: this.token(), expires: now + this.ttlMs };
    this.byId.set(s.id, s);
    return s;
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

  /** Drop every expired session (a full table does, before it drops the oldest live one). */
  sweep(now: number): void {
    for (const [id, s] of this.byId) if (s.expires <= now) this.byId.delete(id);
  }
}
