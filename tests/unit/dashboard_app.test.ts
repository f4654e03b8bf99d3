// The dashboard's HTTP handler (src/dashboard/dashboard_app.ts) fed Request
// objects, over a real control plane (one loop in this thread) and a real
// SQLite store: what a request without a session gets (401, the login page,
// nothing of the routes), the login and its limit, the cookie's flags, the
// CSRF token, the roles, the body bounds, the audit line of an action.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AdminService } from "../../src/admin/admin_service";
import {
  MAX_LOGINS_IN_FLIGHT,
  COOKIE,
  CSP,
  DashboardApp,
  MAX_STREAMS,
  MAX_STREAMS_PER_SESSION,
  cookieOf,
} from "../../src/dashboard/dashboard_app";
import { LoginLimiter } from "../../src/dashboard/login_limiter";
import { Sessions } from "../../src/dashboard/sessions";
import { RULES_SHOWN, DashboardState } from "../../src/dashboard/state";
import { Users } from "../../src/dashboard/users";
import { Logger } from "../../src/log/logger";
import { parseRoutedConfig } from "../../src/routing/route_config";
import { ControlPlane } from "../../src/server/control_plane";
import { SqliteConfigStore } from "../../src/store/sqlite_config_store";
import { SqliteDatabase } from "../../src/store/sqlite_database";
import { freePort } from "../helpers/net";

// biome-ignore lint/suspicious/noExplicitAny: the JSON documents the tests read
type Json = any;
/** A response's JSON body. */
const json = (r: Response): Promise<Json> => r.json();

const lines: string[] = [];
const logger = new Logger("info", "text", { write: (t) => lines.push(...t.split("\n").filter(Boolean)), flush() {} });
const listener = `127.0.0.1:${freePort()}`;
const HOST = "pool.example.com";
let plane: ControlPlane;
let db: SqliteDatabase;
let service: AdminService;
let app: DashboardApp;
let httpsApp: DashboardApp;
let appDeps: () => ConstructorParameters<typeof DashboardApp>[0];

const base = "http://127.0.0.1:9443";
const get = (path: string, cookie?: string) =>
  new Request(`${base}${path}`, { headers: cookie === undefined ? {} : { cookie } });
const form = (name: string, password: string) =>
  new Request(`${base}/login`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ name, password }).toString(),
  });
const action = (cookie: string, csrf: string | null, body: unknown, type = "application/json") =>
  new Request(`${base}/api/action`, {
    method: "POST",
    headers: { cookie, "content-type": type, ...(csrf === null ? {} : { "x-csrf-token": csrf }) },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });

/** Log in; the cookie header to send and the session's CSRF token. */
async function login(a: DashboardApp, name: string, source: string): Promise<{ cookie: string; csrf: string }> {
  const r = await a.fetch(form(name, `${name}-pw`), source);
  expect(r.status).toBe(303);
  const id = cookieOf(r.headers.get("set-cookie")!.split(";")[0]!, COOKIE)!;
  const cookie = `${COOKIE}=${id}`;
  const state = await json(await a.fetch(get("/api/state", cookie), source));
  return { cookie, csrf: state.me.csrf };
}

function expectSecurityHeaders(r: Response): void {
  expect(r.headers.get("content-security-policy")).toBe(CSP);
  expect(r.headers.get("x-content-type-options")).toBe("nosniff");
  expect(r.headers.get("referrer-policy")).toBe("no-referrer");
}

const drain = (state: string) => ({
  action: "set_backend_state",
  listener,
  hostname: HOST,
  alpn: [],
  backend: "127.0.0.1:1002",
  state,
});

beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), "mcproxy-dash-app-"));
  const cfg = parseRoutedConfig(
    `[[listeners]]\naddr = "${listener}"\n  [[listeners.routes]]\n  hostname = "${HOST}"\n  backends = [{ addr = "127.0.0.1:1001" }, { addr = "127.0.0.1:1002" }]\n  health_check = "off"\n`,
    join(dir, "t.toml"),
  );
  plane = await ControlPlane.start(cfg, logger, { loops: 1, histograms: false, connectionCap: 0 });
  db = SqliteDatabase.open(join(dir, "db.sqlite"));
  db.seed([{ addr: listener, maxConnections: 0, routes: cfg.listeners[0]!.routes }], []);
  service = new AdminService(plane, new SqliteConfigStore(db, plane), logger);
  const users = new Users(
    await Promise.all(
      (["alice:operator", "rita:reader", "root:admin"] as const).map(async (u) => {
        const [name, role] = u.split(":") as [string, "operator" | "reader" | "admin"];
        return { name, role, passwordHash: await Bun.password.hash(`${name}-pw`, "argon2id") };
      }),
    ),
  );
  appDeps = () => deps(false);
  const deps = (https: boolean) => ({
    service,
    state: new DashboardState(service, plane),
    users,
    sessions: new Sessions(3_600_000),
    limiter: new LoginLimiter(),
    logger,
    https,
  });
  app = new DashboardApp(deps(false));
  httpsApp = new DashboardApp(deps(true));
});

afterAll(async () => {
  app.closeAll();
  plane.shutdown();
  await plane.done;
  db.close();
});

describe("without a session", () => {
  test("every page and data endpoint: 401 or the way to the login page, and nothing of the routes", async () => {
    const root = await app.fetch(get("/"), "192.0.2.1");
    expect(root.status).toBe(303);
    expect(root.headers.get("location")).toBe("/login");
    expect(await root.text()).toBe("");
    expectSecurityHeaders(root);
    for (const path of ["/api/state", "/api/events"]) {
      const r = await app.fetch(get(path), "192.0.2.1");
      expect({ path, status: r.status }).toEqual({ path, status: 401 });
      expect(await json(r)).toEqual({ error: "log in" });
      expectSecurityHeaders(r);
      expect(r.headers.get("cache-control")).toBe("no-store");
    }
    const act = await app.fetch(action("", null, drain("BACKEND_STATE_DRAIN")), "192.0.2.1");
    expect(act.status).toBe(401);
    const bogus = await app.fetch(get("/api/state", `${COOKIE}=not-a-session`), "192.0.2.1");
    expect(bogus.status).toBe(401);
    const page = await app.fetch(get("/login"), "192.0.2.1");
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toStartWith("text/html");
    expectSecurityHeaders(page);
    for (const r of [root, act, bogus, page]) {
      const text = await r.clone().text();
      expect(text).not.toContain(HOST);
      expect(text).not.toContain("127.0.0.1:100");
    }
    const missing = await app.fetch(get("/nowhere"), "192.0.2.1");
    expect(missing.status).toBe(404);
  });

  test("the assets are public and may be cached; the page's are embedded", async () => {
    for (const path of [
      "/assets/app.js",
      "/assets/app.css",
      "/assets/uplot.js",
      "/assets/uplot.css",
      "/assets/login.css",
    ]) {
      const r = await app.fetch(get(path), "192.0.2.1");
      expect({ path, status: r.status }).toEqual({ path, status: 200 });
      expect(r.headers.get("cache-control")).not.toBe("no-store");
      expectSecurityHeaders(r);
    }
  });
});

describe("login", () => {
  test("a wrong password: back to the form with failed=1, logged; the 6th try within the minute: 429 saying when", async () => {
    const src = "198.51.100.7";
    for (let i = 0; i < 5; i++) {
      const r = await app.fetch(form("alice", "wrong"), src);
      expect(r.status).toBe(303);
      expect(r.headers.get("location")).toBe("/login?failed=1");
      expect(r.headers.get("set-cookie")).toBeNull();
    }
    expect(lines.filter((l) => l.includes('msg="dashboard login"') && l.includes(`source=${src}`))).toHaveLength(5);
    expect(
      lines.some(
        (l) => l.includes('msg="dashboard login"') && l.includes("outcome=failed") && l.includes("user=alice"),
      ),
    ).toBe(true);
    const limited = await app.fetch(form("alice", "alice-pw"), src);
    expect(limited.status).toBe(429);
    expect(await limited.text()).toMatch(/^too many failed logins from your address; try again in \d+ s/);
    // Another source is not slowed down.
    expect((await app.fetch(form("alice", "alice-pw"), "198.51.100.8")).status).toBe(303);
  });

  test("success: the session cookie HttpOnly, SameSite=Strict, Path=/ (Secure over HTTPS only); a redirect to /", async () => {
    const r = await app.fetch(form("alice", "alice-pw"), "192.0.2.10");
    expect(r.status).toBe(303);
    expect(r.headers.get("location")).toBe("/");
    const c = r.headers.get("set-cookie")!;
    expect(c).toMatch(new RegExp(`^${COOKIE}=[A-Za-z0-9_-]{43}; HttpOnly; SameSite=Strict; Path=/`));
    expect(c).not.toContain("Secure");
    const s = (await httpsApp.fetch(form("alice", "alice-pw"), "192.0.2.10")).headers.get("set-cookie")!;
    expect(s).toEndWith("; Secure");
    expect(
      lines.some((l) => l.includes('msg="dashboard login"') && l.includes("outcome=ok") && l.includes("user=alice")),
    ).toBe(true);
  });

  test("password checks are bounded: one at a time per source (429), at most MAX_LOGINS_IN_FLIGHT over all (503)", async () => {
    // Concurrent attempts from one source: the first is checked, the rest are refused before any hash runs.
    const same = await Promise.all(Array.from({ length: 6 }, () => app.fetch(form("alice", "wrong"), "203.0.113.1")));
    expect(same.filter((r) => r.status === 303)).toHaveLength(1);
    expect(same.filter((r) => r.status === 429)).toHaveLength(5);
    // Many sources at once: at most MAX_LOGINS_IN_FLIGHT checks run; the others are told to retry.
    const many = await Promise.all(
      Array.from({ length: MAX_LOGINS_IN_FLIGHT + 6 }, (_, i) =>
        app.fetch(form("alice", "wrong"), `203.0.113.${10 + i}`),
      ),
    );
    expect(many.filter((r) => r.status === 303)).toHaveLength(MAX_LOGINS_IN_FLIGHT);
    expect(many.filter((r) => r.status === 503)).toHaveLength(6);
  });

  test("a form over 4 KiB, or not a form: 400", async () => {
    const big = new Request(`${base}/login`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: `name=alice&password=${"x".repeat(5000)}`,
    });
    expect((await app.fetch(big, "192.0.2.11")).status).toBe(400);
    const json = new Request(`${base}/login`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    expect((await app.fetch(json, "192.0.2.11")).status).toBe(400);
  });
});

describe("with a session", () => {
  test("GET / is the page; /api/state: me, status, routes, firewall, fingerprints, refusals, history", async () => {
    const { cookie, csrf } = await login(app, "alice", "192.0.2.20");
    const page = await app.fetch(get("/", cookie), "192.0.2.20");
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toStartWith("text/html");
    const r = await app.fetch(get("/api/state", cookie), "192.0.2.20");
    expect(r.headers.get("cache-control")).toBe("no-store");
    const s = await json(r);
    expect(s.me).toEqual({ user: "alice", role: "operator", csrf });
    expect(Object.keys(s)).toEqual(["me", "status", "routes", "firewall", "fingerprints", "refusals", "history"]);
    expect(s.routes.listeners[0].routes[0].hostname).toBe(HOST);
    expect(s.routes.listeners[0].routes[0].backends.map((b: { addr: string }) => b.addr)).toEqual([
      "127.0.0.1:1001",
      "127.0.0.1:1002",
    ]);
    expect(s.status.version).toBeString();
    expect(s.firewall).toEqual({ rules: [], total: 0, counts: {}, blocked: { ip: 0, cidr: 0, country: 0, ja4: 0 } });
    expect(s.refusals).toEqual([]);
    expect(Object.keys(s.history)).toEqual([
      "t",
      "open",
      "newPerSec",
      "bytesInPerSec",
      "bytesOutPerSec",
      "refusedPerSec",
    ]);
  });

  test("/api/events: an event stream whose first event is the state, at once", async () => {
    const { cookie } = await login(app, "alice", "192.0.2.21");
    const r = await app.fetch(get("/api/events", cookie), "192.0.2.21");
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toStartWith("text/event-stream");
    const reader = r.body!.getReader();
    const { value } = await reader.read();
    const text = typeof value === "string" ? value : new TextDecoder().decode(value);
    expect(text).toStartWith("event: state\ndata: {");
    expect(JSON.parse(text.slice("event: state\ndata: ".length).trim()).me.user).toBe("alice");
    await reader.cancel();
  });

  test(`at most ${MAX_STREAMS_PER_SESSION} streams a session (429), ${MAX_STREAMS} at once over all (503)`, async () => {
    const open: { cancel(): Promise<void> }[] = [];
    let cookie = "";
    for (let i = app.openStreams; i < MAX_STREAMS; i++) {
      if (open.length % MAX_STREAMS_PER_SESSION === 0) {
        if (open.length > 0) expect((await app.fetch(get("/api/events", cookie), "192.0.2.22")).status).toBe(429);
        cookie = (await login(app, "alice", "192.0.2.22")).cookie;
      }
      const r = await app.fetch(get("/api/events", cookie), "192.0.2.22");
      expect(r.status).toBe(200);
      open.push(r.body!.getReader());
    }
    const fresh = (await login(app, "alice", "192.0.2.22")).cookie;
    expect((await app.fetch(get("/api/events", fresh), "192.0.2.22")).status).toBe(503);
    for (const r of open) await r.cancel();
    expect(app.openStreams).toBe(0);
  });
});

describe("actions", () => {
  test("without the CSRF token, or with a wrong one: 403, nothing changed", async () => {
    const { cookie, csrf } = await login(app, "alice", "192.0.2.30");
    for (const token of [null, "", `${csrf}x`, csrf.slice(1)]) {
      const r = await app.fetch(action(cookie, token, drain("BACKEND_STATE_DRAIN")), "192.0.2.30");
      expect(r.status).toBe(403);
      expect(await json(r)).toEqual({ error: "bad CSRF token" });
    }
    expect(service.listRoutes({ listener }).listeners[0]!.routes[0]!.backends[1]!.state).toBe("BACKEND_STATE_ENABLED");
  });

  test("a reader: 403 '<role> may not <action>', audited as refused, nothing changed", async () => {
    const { cookie, csrf } = await login(app, "rita", "192.0.2.31");
    const r = await app.fetch(action(cookie, csrf, drain("BACKEND_STATE_DRAIN")), "192.0.2.31");
    expect(r.status).toBe(403);
    expect(await json(r)).toEqual({ error: "reader may not set_backend_state" });
    const audit = lines.filter((l) => l.includes("msg=admin") && l.includes("identity=dashboard:rita"));
    expect(audit).toHaveLength(1);
    expect(audit[0]).toContain("code=PERMISSION_DENIED");
    expect(service.listRoutes({ listener }).listeners[0]!.routes[0]!.backends[1]!.state).toBe("BACKEND_STATE_ENABLED");
  });

  test("an operator drains a backend through the admin service; the audit line names dashboard:<user>", async () => {
    const { cookie, csrf } = await login(app, "alice", "192.0.2.32");
    const stateNow = async () => (await json(await app.fetch(get("/api/state", cookie), "192.0.2.32"))).routes;
    expect((await stateNow()).listeners[0].routes[0].backends[1].state).toBe("BACKEND_STATE_ENABLED");
    const r = await app.fetch(action(cookie, csrf, drain("BACKEND_STATE_DRAIN")), "192.0.2.32");
    expect(r.status).toBe(200);
    const body = await json(r);
    expect(body.ok).toBe(true);
    expect(body.result.backend).toMatchObject({ addr: "127.0.0.1:1002", state: "BACKEND_STATE_DRAIN" });
    expect(service.listRoutes({ listener }).listeners[0]!.routes[0]!.backends[1]!.state).toBe("BACKEND_STATE_DRAIN");
    // The state document read right after shows it (not the one built before the action).
    expect((await stateNow()).listeners[0].routes[0].backends[1].state).toBe("BACKEND_STATE_DRAIN");
    const audit = lines.filter((l) => l.includes("msg=admin") && l.includes("identity=dashboard:alice"));
    expect(audit.at(-1)).toContain("method=SetBackendState");
    expect(audit.at(-1)).toContain("code=OK");
    expect(audit.at(-1)).toContain("addr=127.0.0.1:1002");
    const back = await app.fetch(action(cookie, csrf, drain("BACKEND_STATE_ENABLED")), "192.0.2.32");
    expect(back.status).toBe(200);
  });

  test("firewall rules: an operator adds and removes; the admin API's refusals keep their meaning (400, 404)", async () => {
    const { cookie, csrf } = await login(app, "alice", "192.0.2.33");
    const rule = { type: "FIREWALL_RULE_TYPE_IP", value: "203.0.113.9" };
    const add = await app.fetch(action(cookie, csrf, { action: "add_firewall_rule", rule }), "192.0.2.33");
    expect(add.status).toBe(200);
    expect(service.getFirewallRules().rules).toEqual([rule]);
    const rm = await app.fetch(action(cookie, csrf, { action: "remove_firewall_rule", rule }), "192.0.2.33");
    expect(rm.status).toBe(200);
    const again = await app.fetch(action(cookie, csrf, { action: "remove_firewall_rule", rule }), "192.0.2.33");
    expect(again.status).toBe(404);
    const bad = { action: "add_firewall_rule", rule: { type: "FIREWALL_RULE_TYPE_IP", value: "not-an-ip" } };
    const invalid = await app.fetch(action(cookie, csrf, bad), "192.0.2.33");
    expect(invalid.status).toBe(400);
    expect((await json(invalid)).error).toContain("rule.value");
    const noRoute = await app.fetch(
      action(cookie, csrf, { ...drain("BACKEND_STATE_DRAIN"), hostname: "none.example.com" }),
      "192.0.2.33",
    );
    expect(noRoute.status).toBe(404);
  });

  test("malformed bodies: 400 — not JSON, not application/json, an unknown action, a wrong field type, over 16 KiB", async () => {
    const { cookie, csrf } = await login(app, "root", "192.0.2.34");
    const cases: [unknown, string?][] = [
      ["{nope"],
      [drain("BACKEND_STATE_DRAIN"), "text/plain"],
      [{ action: "add_route" }],
      [{ action: "__proto__" }],
      [[1, 2]],
      [{ ...drain("BACKEND_STATE_DRAIN"), listener: 7 }],
      [{ action: "add_firewall_rule", rule: "ip" }],
      [{ ...drain("BACKEND_STATE_DRAIN"), pad: "x".repeat(17 * 1024) }],
    ];
    for (const [body, type] of cases) {
      const r = await app.fetch(action(cookie, csrf, body, type), "192.0.2.34");
      expect({ body: JSON.stringify(body).slice(0, 60), status: r.status }).toEqual({
        body: JSON.stringify(body).slice(0, 60),
        status: 400,
      });
      expect(typeof (await json(r)).error).toBe("string");
    }
  });

  test("logout: needs the CSRF token; then the session is gone and the cookie cleared", async () => {
    const { cookie, csrf } = await login(app, "alice", "192.0.2.35");
    const post = (token: string | null) =>
      new Request(`${base}/logout`, {
        method: "POST",
        headers: { cookie, ...(token === null ? {} : { "x-csrf-token": token }) },
      });
    expect((await app.fetch(post(null), "192.0.2.35")).status).toBe(403);
    expect((await app.fetch(get("/api/state", cookie), "192.0.2.35")).status).toBe(200);
    const out = await app.fetch(post(csrf), "192.0.2.35");
    expect(out.status).toBe(303);
    expect(out.headers.get("location")).toBe("/login");
    expect(out.headers.get("set-cookie")).toMatch(
      new RegExp(`^${COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0`),
    );
    expect((await app.fetch(get("/api/state", cookie), "192.0.2.35")).status).toBe(401);
  });
});

describe("cross-site requests and DNS rebinding", () => {
  const withHeaders = (r: Request, h: Record<string, string>) => {
    const headers = new Headers(r.headers);
    for (const [k, v] of Object.entries(h)) headers.set(k, v);
    return new Request(r.url, { method: r.method, headers, body: r.method === "GET" ? undefined : r.body });
  };

  test("a POST from another site (Sec-Fetch-Site, Origin) is refused before anything is checked; the dashboard's own is not", async () => {
    const src = "198.51.100.77";
    const crossSite: Record<string, string>[] = [
      { "sec-fetch-site": "cross-site" },
      { "sec-fetch-site": "same-site" },
      { origin: "http://localhost:26081", host: "127.0.0.1:9443" },
      { origin: "null", host: "127.0.0.1:9443" },
    ];
    for (const h of crossSite) {
      const r = await app.fetch(withHeaders(form("alice", "wrong"), h), src);
      expect(r.status).toBe(403);
    }
    // Refused before the password check: no failure counted against the source, no login line.
    expect(lines.some((l) => l.includes(`source=${src}`))).toBe(false);
    // The dashboard's own form: Chromium sends Origin "null" under no-referrer, with Sec-Fetch-Site same-origin.
    const own = withHeaders(form("alice", "alice-pw"), { "sec-fetch-site": "same-origin", origin: "null" });
    expect((await app.fetch(own, src)).status).toBe(303);
    const byOrigin = withHeaders(form("alice", "alice-pw"), {
      origin: "http://127.0.0.1:9443",
      host: "127.0.0.1:9443",
    });
    expect((await app.fetch(byOrigin, "198.51.100.78")).status).toBe(303);
  });

  test("plain HTTP answers to loopback's names and its own address only (421 otherwise)", async () => {
    const local = new DashboardApp({ ...appDeps(), https: false });
    local.allowHosts(["127.0.0.1:9443", "localhost:9443", "[::1]:9443"]);
    expect((await local.fetch(withHeaders(get("/login"), { host: "attacker.example:9443" }), "127.0.0.1")).status).toBe(
      421,
    );
    expect((await local.fetch(withHeaders(get("/login"), { host: "LOCALHOST:9443" }), "127.0.0.1")).status).toBe(200);
    expect((await local.fetch(withHeaders(get("/login"), { host: "127.0.0.1:9443" }), "127.0.0.1")).status).toBe(200);
  });
});

describe("the state's size", () => {
  test(`the firewall: the first ${RULES_SHOWN} rules, the counts by kind and the total; fingerprints say whether a rule blocks them`, async () => {
    const added = Array.from({ length: RULES_SHOWN + 50 }, (_, i) => ({
      type: "FIREWALL_RULE_TYPE_CIDR",
      value: `10.${Math.floor(i / 256)}.${i % 256}.0/24`,
    }));
    for (const rule of added) await service.addFirewallRule({ rule });
    try {
      const fresh = new DashboardApp({ ...appDeps(), state: new DashboardState(service, plane) });
      const { cookie } = await login(fresh, "rita", "192.0.2.77");
      const s = (await (await fresh.fetch(get("/api/state", cookie), "192.0.2.77")).json()) as {
        firewall: { rules: unknown[]; total: number; counts: Record<string, number> };
        fingerprints: { fingerprints: { ruled: boolean }[] };
      };
      expect(s.firewall.rules).toHaveLength(RULES_SHOWN);
      expect(s.firewall.total).toBeGreaterThanOrEqual(added.length);
      expect(s.firewall.counts.FIREWALL_RULE_TYPE_CIDR).toBeGreaterThanOrEqual(added.length);
      expect(s.fingerprints.fingerprints.every((f) => typeof f.ruled === "boolean")).toBe(true);
    } finally {
      for (const rule of added) await service.removeFirewallRule({ rule });
    }
  });
});
