// Dashboard sessions (src/dashboard/sessions.ts) and the failed-login limit
// per source (src/dashboard/login_limiter.ts): random ids and CSRF tokens,
// expiry, the bound on sessions and sources, 5 failures a minute.
import { describe, expect, test } from "bun:test";
import { LoginLimiter, MAX_FAILURES, WINDOW_MS } from "../../src/dashboard/login_limiter";
import { PER_USER, Sessions, randomToken, sameToken } from "../../src/dashboard/sessions";

describe("Sessions", () => {
  test("a session: 32 random bytes base64url as id and as CSRF token, distinct; found until it expires, then gone", () => {
    const s = new Sessions(1000);
    const { session: a } = s.create("alice", "operator", 10_000);
    expect(a.id).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(a.csrf).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(a.id).not.toBe(a.csrf);
    expect(a).toMatchObject({ user: "alice", role: "operator", expires: 11_000 });
    expect(s.get(a.id, 10_999)).toBe(a);
    expect(s.get(a.id, 11_000)).toBeNull();
    expect(s.size).toBe(0);
    expect(s.get("nope", 0)).toBeNull();
  });

  test("drop; sweep drops the expired", () => {
    const s = new Sessions(1000);
    const a = s.create("a", "reader", 0).session;
    const b = s.create("b", "reader", 500).session;
    s.drop(a.id);
    expect(s.get(a.id, 1)).toBeNull();
    s.sweep(1600);
    expect(s.size).toBe(0);
    expect(s.get(b.id, 1)).toBeNull();
  });

  test(`bounded per user: at most ${PER_USER} each; a user's new one drops their own oldest, never another user's`, () => {
    const s = new Sessions(60_000, 3);
    const admin = s.create("ada", "admin", 0).session;
    const own = [1, 2, 3].map((i) => s.create("rita", "reader", i).session.id);
    // A reader logging in again and again: only their own sessions give way.
    for (let i = 0; i < 1000; i++) s.create("rita", "reader", 10 + i);
    expect(s.get(admin.id, 2000)?.user).toBe("ada");
    expect(own.every((id) => s.get(id, 2000) === null)).toBe(true);
    expect(s.size).toBe(4);
    const fourth = s.create("rita", "reader", 3000);
    expect(fourth.dropped).toBe(1);
    // The expired go first.
    const ttl = new Sessions(100, 2);
    const old = ttl.create("u", "reader", 0).session;
    const live = ttl.create("u", "reader", 150).session;
    expect(ttl.create("u", "reader", 200).dropped).toBe(0);
    expect(ttl.get(old.id, 200)).toBeNull();
    expect(ttl.get(live.id, 200)?.user).toBe("u");
    const full = new Sessions(60_000);
    for (let i = 0; i < PER_USER + 5; i++) full.create("u", "reader", i);
    expect(full.size).toBe(PER_USER);
  });

  test("tokens: random, compared in full", () => {
    expect(new Set(Array.from({ length: 100 }, randomToken)).size).toBe(100);
    expect(sameToken("abc", "abc")).toBe(true);
    expect(sameToken("abc", "abd")).toBe(false);
    expect(sameToken("abc", "ab")).toBe(false);
    expect(sameToken("", "abc")).toBe(false);
  });
});

describe("LoginLimiter", () => {
  test(`${MAX_FAILURES} failures within a minute from one source: refused until the first is a minute old; others unaffected`, () => {
    const l = new LoginLimiter();
    for (let i = 0; i < MAX_FAILURES - 1; i++) l.fail("192.0.2.1", 1000 + i);
    expect(l.retryAfter("192.0.2.1", 2000)).toBe(0);
    l.fail("192.0.2.1", 2000);
    expect(l.retryAfter("192.0.2.1", 2000)).toBe(1000 + WINDOW_MS - 2000);
    expect(l.retryAfter("192.0.2.2", 2000)).toBe(0);
    // The first failure a window old: one more try allowed.
    expect(l.retryAfter("192.0.2.1", 1000 + WINDOW_MS)).toBe(0);
  });

  test("failures spread wider than the window never limit", () => {
    const l = new LoginLimiter();
    for (let i = 0; i < 20; i++) {
      expect(l.retryAfter("a", i * 15_000)).toBe(0);
      l.fail("a", i * 15_000);
    }
  });

  test("a success forgets the source's failures", () => {
    const l = new LoginLimiter();
    for (let i = 0; i < MAX_FAILURES; i++) l.fail("a", 0);
    expect(l.retryAfter("a", 1)).toBeGreaterThan(0);
    l.succeed("a");
    expect(l.retryAfter("a", 1)).toBe(0);
  });

  test("bounded: past the source bound the least recently failed is forgotten", () => {
    const l = new LoginLimiter(2, 60_000, 3);
    for (const s of ["a", "b", "c", "d"]) {
      l.fail(s, 0);
      l.fail(s, 0);
    }
    expect(l.sources).toBe(3);
    expect(l.retryAfter("a", 1)).toBe(0);
    expect(l.retryAfter("d", 1)).toBeGreaterThan(0);
  });
});
