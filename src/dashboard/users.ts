// The dashboard's users (docs/DASHBOARD.md "Set-up"): names, roles and
// argon2id password hashes from [[dashboard.users]], and the password check.
// A name that is no user costs the same check (against a hash of nothing
// anyone knows), so the answer's time does not tell names apart.

import type { DashboardUser } from "../config/types";

/** Longest password checked (a form body is at most 4 KiB anyway). */
export const MAX_PASSWORD_BYTES = 1024;

export class Users {
  private readonly byName: ReadonlyMap<string, DashboardUser>;
  /** Verified against for an unknown name: argon2id of random bytes, made once. */
  private decoy: Promise<string> | null = null;

  constructor(users: readonly DashboardUser[]) {
    this.byName = new Map(users.map((u) => [u.name, u]));
  }

  /** The user whose password this is, or null (an unknown name, a wrong or oversized password). */
  async verify(name: string, password: string): Promise<DashboardUser | null> {
    const user = this.byName.get(name);
    if (password === "" || Buffer.byteLength(password) > MAX_PASSWORD_BYTES) return null;
    if (user === undefined) {
      this.decoy ??= Bun.password.hash(crypto.getRandomValues(new Uint8Array(16)).join(","), "argon2id");
      await Bun.password.verify(password, await this.decoy).catch(() => false);
      return null;
    }
    const ok = await Bun.password.verify(password, user.passwordHash, "argon2id").catch(() => false);
    return ok ? user : null;
  }
}
