// The web dashboard end to end (docs/DASHBOARD.md), against the compiled
// binary and a real browser (Debian's Chromium driven by puppeteer-core):
// nothing without a login, logins limited per source, the live figures, the
// operator's actions through the proxy (drain, block a JA4) with their audit
// line, a reader who can see and not act, forged actions refused, and
// screenshots of the views at a laptop's and a phone's width.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import { mkdirSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { join } from "node:path";
import type { Page } from "puppeteer-core";
import { AdminClient } from "../../src/cli/admin_client";
import type { ListRoutesReply } from "../../src/admin/messages";
import { unixGrpcConfig } from "../helpers/admin";
import { named } from "../helpers/backends";
import { launchBrowser, type TestBrowser } from "../helpers/browser";
import { testCert } from "../helpers/certs";
import { helloFor } from "../helpers/hello_builder";
import { firstReply, freePort, rawExchange, sleep, waitFor } from "../helpers/net";
import { ensureCommands } from "../helpers/packages";
import { ROOT, type RunningProxy, startProxy, tempDir } from "../helpers/proxy";
import { tlsBackend } from "../helpers/tls";

const OUT = join(ROOT, "test-output/dashboard");
const USERS = { alice: "correct horse battery", bob: "reader's own secret" };
const POOL = "app.example.com";
const TLS_HOST = "alpha.example.com";
const ACME = "acme.example.com";
/** Text that must never reach a client without a session: route names, the blocked address. */
const SECRETS = [POOL, TLS_HOST, ACME, "127.0.0.2", "127.0.0.66"];

const a = named("a");
const b = named("b");
const c = named("c");
const be = tlsBackend("be", testCert());
/** Backend addresses as the routes name them (also secrets). */
const A = `127.0.0.1:${a.port}`;
const B = `127.0.0.1:${b.port}`;
const C = `127.0.0.1:${c.port}`;
const port = freePort();
/** Chromium refuses to load "unsafe" ports; 10080 is the only one freePort's range holds. */
let dashPort = freePort();
while (dashPort === 10080) dashPort = freePort();
const base = `http://127.0.0.1:${dashPort}`;
const dir = tempDir();
let proxy: RunningProxy;
let admin: AdminClient;
let browser: TestBrowser | string = "not launched";
/** The operator's page (logged in once, used by the tests that follow). */
let op: Page | null = null;

const noSecrets = (body: string) => {
  for (const s of [...SECRETS, A, B, C])
    expect({ leaked: s, found: body.includes(s) }).toEqual({ leaked: s, found: false });
};

/** An HTTP request from a chosen loopback source (the login limiter counts per source address). */
function httpFrom(
  source: string,
  method: string,
  path: string,
  body = "",
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: "127.0.0.1", port: dashPort, localAddress: source, method, path, headers, timeout: 10_000 },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (d: string) => (text += d));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
      },
    );
    req.on("error", reject);
    req.on("timeout", () => req.destroy(new Error(`${method} ${path} timed out`)));
    req.end(body);
  });
}

const form = (name: string, password: string) => new URLSearchParams({ name, password }).toString();
const FORM = { "Content-Type": "application/x-www-form-urlencoded" };

/** Log in over HTTP from the test itself: the session cookie ("mcp_session=…") and the session's CSRF token. */
async function loginHttp(name: keyof typeof USERS): Promise<{ cookie: string; csrf: string }> {
  const r = await fetch(`${base}/login`, {
    method: "POST",
    redirect: "manual",
    headers: FORM,
    body: form(name, USERS[name]),
  });
  expect(r.status).toBe(303);
  const set = r.headers.getSetCookie().find((x) => x.startsWith("mcp_session="));
  expect(set).toBeDefined();
  const cookie = set!.split(";")[0]!;
  const state = (await (await fetch(`${base}/api/state`, { headers: { Cookie: cookie } })).json()) as {
    me: { user: string; role: string; csrf: string };
  };
  expect(state.me.user).toBe(name);
  return { cookie, csrf: state.me.csrf };
}

/** The pool's backends and their operator state, from the admin API (not from the dashboard). */
async function poolStates(): Promise<Record<string, string>> {
  const r = await admin.call<ListRoutesReply>("ListRoutes", { listener: "" });
  const route = r.listeners.flatMap((l) => l.routes).find((x) => x.hostname === POOL)!;
  return Object.fromEntries(route.backends.map((x) => [x.addr, x.state]));
}

const audits = () => proxy.records().filter((r) => r.msg === "admin");
const who = (localAddress?: string) => firstReply(port, helloFor(POOL), localAddress);

/** Log a browser page in through the login form; resolves once the dashboard has its first state. */
async function loginPage(p: Page, name: keyof typeof USERS, password = USERS[name]): Promise<void> {
  await p.goto(`${base}/login`, { waitUntil: "load" });
  await p.type('input[name="name"]', name);
  await p.type('input[name="password"]', password);
  await Promise.all([p.waitForNavigation({ waitUntil: "load" }), p.$eval("form", (f) => f.requestSubmit())]);
}

/** The first number in `#open-connections` (NaN before the first state). */
const openFigure = (p: Page) =>
  p.$eval("#open-connections", (e) => Number((e.textContent ?? "").replace(/,/g, "").match(/\d+/)?.[0] ?? Number.NaN));

/** Poll an asynchronous condition (a page's DOM) every 50 ms until it holds or `ms` passes. */
async function until(cond: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond().catch(() => false))) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(50);
  }
}

/** Show a view the way a user does: its nav link. */
async function show(p: Page, view: string): Promise<void> {
  await p.click(`a[href="#${view}"]`);
  await p.waitForSelector(`#view-${view}`, { visible: true });
}

const skipBrowser = (what: string) => {
  if (typeof browser !== "string") return false;
  console.warn(`SKIP ${what}: ${browser}`);
  return true;
};

beforeAll(async () => {
  const hash = async (pw: string) => Bun.password.hash(pw, "argon2id");
  proxy = await startProxy(
    "binary",
    `[[listeners]]
addr = "127.0.0.1:${port}"
name = "public"
  [[listeners.routes]]
  hostname = "${POOL}"
  backends = ["${A}", "${B}"]
  health_check = "off"
  [[listeners.routes]]
  hostname = "${TLS_HOST}"
  backend = "127.0.0.1:${be.port}"
  [[listeners.routes]]
  hostname = "${ACME}"
  alpn = ["acme-tls/1"]
  allow = ["127.0.0.0/8"]
  deny = ["127.0.0.66"]
  max_connections = 50
  backend = "${C}"
[grpc]
addr = "unix:admin.sock"
[firewall]
blocked_ips = ["127.0.0.2"]
[proxy]
workers = 2
[dashboard]
addr = "127.0.0.1:${dashPort}"
session_ttl = "1h"
  [[dashboard.users]]
  name = "alice"
  role = "operator"
  password_hash = "${await hash(USERS.alice)}"
  [[dashboard.users]]
  name = "bob"
  role = "reader"
  password_hash = "${await hash(USERS.bob)}"
`,
    { dir },
  );
  admin = new AdminClient(unixGrpcConfig(join(dir, "admin.sock")));
  browser = await launchBrowser();
}, 45_000);

afterAll(async () => {
  if (typeof browser !== "string") await browser.close();
  admin?.close();
  await proxy?.stop();
  for (const x of [a, b, c, be]) x.stop();
});

describe("dashboard (binary, Chromium)", () => {
  test("without a session: every page and data endpoint answers 401 or the login page, and nothing about routes, backends or addresses", async () => {
    const headers = (r: Response) => {
      expect(r.headers.get("content-security-policy")).toContain("default-src 'none'");
      expect(r.headers.get("x-content-type-options")).toBe("nosniff");
    };
    const root = await fetch(`${base}/`, { redirect: "manual" });
    headers(root);
    expect(root.status).toBe(303);
    expect(new URL(root.headers.get("location")!, base).pathname).toBe("/login");
    noSecrets(await root.text());
    const login = await fetch(`${base}/login`);
    headers(login);
    expect(login.status).toBe(200);
    const loginBody = await login.text();
    expect(loginBody).toContain('name="password"');
    noSecrets(loginBody);
    for (const cookie of [undefined, "mcp_session=not-a-session"]) {
      const h: Record<string, string> = cookie === undefined ? {} : { Cookie: cookie };
      for (const [method, path] of [
        ["GET", "/api/state"],
        ["GET", "/api/events"],
        ["POST", "/api/action"],
      ] as const) {
        const r = await fetch(`${base}${path}`, {
          method,
          headers: { ...h, "Content-Type": "application/json", "X-CSRF-Token": "x" },
          body:
            method === "POST"
              ? JSON.stringify({
                  action: "set_backend_state",
                  listener: "public",
                  hostname: POOL,
                  backend: B,
                  state: "BACKEND_STATE_DRAIN",
                })
              : undefined,
        });
        headers(r);
        expect({ path, cookie, status: r.status }).toEqual({ path, cookie, status: 401 });
        const body = await r.text();
        expect(JSON.parse(body)).toEqual({ error: "log in" });
        noSecrets(body);
      }
    }
    expect(await poolStates()).toEqual({ [A]: "BACKEND_STATE_ENABLED", [B]: "BACKEND_STATE_ENABLED" });
    // The browser, too, lands on the login form.
    if (skipBrowser("the browser's redirect to the login page")) return;
    const p = await (browser as TestBrowser).page(1280, 800);
    await p.goto(`${base}/`, { waitUntil: "load" });
    expect(new URL(p.url()).pathname).toBe("/login");
    noSecrets(await p.content());
    await p.browserContext().close();
  }, 30_000);

  test("a wrong password is refused (the form says so, no session); 5 failures from one source → 429 from it, even with the right password; other sources unaffected", async () => {
    const wrong = await fetch(`${base}/login`, {
      method: "POST",
      redirect: "manual",
      headers: FORM,
      body: form("alice", "not her password"),
    });
    expect(wrong.status).toBe(303);
    expect(wrong.headers.get("location")).toContain("/login?failed=1");
    expect(wrong.headers.getSetCookie().some((x) => /^mcp_session=[^;]+/.test(x))).toBe(false);
    if (!skipBrowser("the login form's refusal")) {
      const p = await (browser as TestBrowser).page(1280, 800);
      await loginPage(p, "alice", "still not her password");
      expect(new URL(p.url()).pathname).toBe("/login");
      // Shown, not only present in the page.
      expect(
        await p.waitForSelector("::-p-text(wrong name or password)", { visible: true, timeout: 5000 }),
      ).not.toBeNull();
      expect(await p.$("#open-connections")).toBeNull();
      await p.browserContext().close();
    }
    // Another source, so the logins from 127.0.0.1 below are not limited.
    const src = "127.0.0.3";
    for (let i = 0; i < 5; i++) {
      const r = await httpFrom(src, "POST", "/login", form("alice", `guess ${i}`), FORM);
      expect({ i, status: r.status }).toEqual({ i, status: 303 });
      expect(String(r.headers.location)).toContain("failed=1");
    }
    const limited = await httpFrom(src, "POST", "/login", form("alice", USERS.alice), FORM);
    expect(limited.status).toBe(429);
    expect(limited.body).toMatch(/too many failed logins from your address; try again in \d+ s/);
    expect(limited.headers["set-cookie"]).toBeUndefined();
    // Per source: 127.0.0.4 still logs in.
    const other = await httpFrom("127.0.0.4", "POST", "/login", form("alice", USERS.alice), FORM);
    expect(other.status).toBe(303);
    expect(String(other.headers["set-cookie"])).toContain("mcp_session=");
    // Logged (user, source, outcome), never the password.
    const lines = proxy.records().filter((r) => r.msg === "dashboard login");
    expect(lines.some((r) => r.user === "alice" && String(r.source).includes(src))).toBe(true);
    for (const pw of ["not her password", "guess 0", USERS.alice]) expect(proxy.output.includes(pw)).toBe(false);
  }, 30_000);

  test("operator logs in: a strict session cookie; routes with ALPN and policy, backends in the pools", async () => {
    if (skipBrowser("the operator's page")) return;
    op = await (browser as TestBrowser).page(1280, 800);
    await loginPage(op, "alice");
    expect(new URL(op.url()).pathname).toBe("/");
    const cookie = (await op.browserContext().cookies()).find((x) => x.name === "mcp_session")!;
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: "Strict", path: "/" });
    await show(op, "routes");
    await op.waitForSelector("#view-routes tr[data-route]");
    const routeText = () =>
      op!.$$eval("#view-routes tr[data-route]", (rs) => rs.map((r) => r.textContent ?? "").join("\n"));
    await until(
      async () => {
        const text = await routeText();
        return [POOL, TLS_HOST, ACME].every((h) => text.includes(h));
      },
      10_000,
      "the three routes",
    );
    const rows = await op.$$eval("#view-routes tr[data-route]", (rs) =>
      rs.map((r) => ({ key: r.getAttribute("data-route") ?? "", text: r.textContent ?? "" })),
    );
    for (const r of rows) expect(r.key.startsWith("public/")).toBe(true);
    const acme = rows.find((r) => r.text.includes(ACME))!;
    for (const s of ["acme-tls/1", "127.0.0.0/8", "127.0.0.66", C])
      expect({ shown: s, in: acme.text.includes(s) }).toEqual({ shown: s, in: true });
    const pool = rows.find((r) => r.text.includes(POOL))!;
    // The routes view names the pool's backends (in the row or the rows under it).
    const routesText = await op.$eval("#view-routes", (e) => e.textContent ?? "");
    for (const s of [A, B, `127.0.0.1:${be.port}`])
      expect({ backend: s, in: routesText.includes(s) }).toEqual({ backend: s, in: true });
    expect(pool.key.startsWith("public/")).toBe(true);
    await show(op, "pools");
    for (const addr of [A, B, C]) {
      const row = await op.waitForSelector(`#view-pools tr[data-backend="${addr}"]`, { timeout: 10_000 });
      for (const s of ["drain", "enable", "disable"]) expect(await row!.$(`button[data-state="${s}"]`)).not.toBeNull();
    }
    // The firewall's add form is there for an operator (and must not be for a reader, below).
    expect(await op.$("#view-firewall form")).not.toBeNull();
  }, 30_000);

  test("20 connections held open through the proxy: the open-connections figure reaches 20 within 2 s and falls back after they close", async () => {
    if (op === null) return void console.warn("SKIP the open-connections figure: no operator page");
    await show(op, "overview");
    await until(async () => !Number.isNaN(await openFigure(op!)), 10_000, "a first open-connections figure");
    const held: Socket<undefined>[] = [];
    try {
      const hello = helloFor(POOL);
      for (let i = 0; i < 20; i++) {
        const s = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } });
        s.write(hello);
        held.push(s);
      }
      await waitFor(() => a.open + b.open === 20, 10_000, "20 connections open at the backends");
      const t0 = Date.now();
      await until(async () => (await openFigure(op!)) === 20, 10_000, "20 open connections on the page");
      const took = Date.now() - t0;
      console.log(`open-connections showed 20 after ${took} ms`);
      expect(took).toBeLessThanOrEqual(2000);
    } finally {
      for (const s of held) s.end();
    }
    await waitFor(() => a.open + b.open === 0, 10_000, "the backends' connections closed");
    await until(async () => (await openFigure(op!)) === 0, 10_000, "0 open connections on the page");
  }, 40_000);

  test("a client the firewall blocks (blocked_ips) gets RST and appears in recent refusals", async () => {
    const r = await rawExchange(port, helloFor(POOL), { localAddress: "127.0.0.2" });
    expect(r.end).toBe("reset");
    await proxy.waitAccess((x) => x.outcome === "blocked_ip" && String(x.client).startsWith("127.0.0.2:"));
    if (op === null) return void console.warn("SKIP recent refusals in the page: no operator page");
    await show(op, "refusals");
    const row = await op.waitForSelector('#view-refusals tr[data-client="127.0.0.2"]', { timeout: 10_000 });
    expect(await row!.evaluate((e) => e.textContent ?? "")).toContain("blocked_ip");
    // An operator can act on it from there ("block address / block fingerprint").
    expect((await row!.$$("button")).length).toBeGreaterThan(0);
  }, 30_000);

  test('click "drain" on a backend: new connections through the proxy avoid it; the audit line names the user', async () => {
    if (op === null) return void console.warn('SKIP "drain": no operator page');
    const before = new Set<string>();
    for (let i = 0; i < 8; i++) before.add(await who());
    expect(before).toEqual(new Set(["a", "b"]));
    await show(op, "pools");
    const button = await op.waitForSelector(`#view-pools tr[data-backend="${A}"] button[data-state="drain"]`);
    await button!.click();
    await waitFor(
      () => audits().some((r) => r.method === "SetBackendState" && r.identity === "dashboard:alice"),
      10_000,
      "the drain's audit line",
    );
    const line = audits().find((r) => r.method === "SetBackendState")!;
    expect(line).toMatchObject({
      code: "OK",
      identity: "dashboard:alice",
      hostname: POOL,
      state: "BACKEND_STATE_DRAIN",
    });
    // The gRPC request's field is addr (the action's backend): the same audit line as `mc-proxy backends drain`.
    expect(line.addr ?? line.backend).toBe(A);
    expect(await poolStates()).toEqual({ [A]: "BACKEND_STATE_DRAIN", [B]: "BACKEND_STATE_ENABLED" });
    const got: string[] = [];
    for (let i = 0; i < 10; i++) got.push(await who());
    expect(got).toEqual(Array(10).fill("b"));
    // The page shows it too: the status line and the backend's row.
    await until(
      async () => /drain/i.test(await op!.$eval(`#view-pools tr[data-backend="${A}"]`, (e) => e.textContent ?? "")),
      10_000,
      "the drained backend's row",
    );
    expect((await op.$eval("#status-line", (e) => e.textContent ?? "")).trim()).not.toBe("");
  }, 30_000);

  test('click "block" on curl\'s JA4 in the top fingerprints: curl gets RST, openssl still routes', async () => {
    if (op === null) return void console.warn('SKIP "block" a JA4: no operator page');
    const missing = ensureCommands(["curl", "openssl"], ["curl", "openssl"]);
    if (missing !== null) return void console.warn(`SKIP "block" a JA4: ${missing}`);
    const curl = async () => {
      const p = Bun.spawn(
        [
          "curl",
          "-sSk",
          "--max-time",
          "3",
          "--resolve",
          `${TLS_HOST}:${port}:127.0.0.1`,
          `https://${TLS_HOST}:${port}/`,
        ],
        { stdout: "pipe", stderr: "pipe" },
      );
      const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
      return { code: await p.exited, out, err };
    };
    const openssl = async (notJa4: string) => {
      const before = proxy.access().length;
      await Bun.spawn(["openssl", "s_client", "-connect", `127.0.0.1:${port}`, "-servername", TLS_HOST, "-tls1_3"], {
        stdin: "ignore",
        stdout: "ignore",
        stderr: "ignore",
        timeout: 5000,
      }).exited;
      const mine = () =>
        proxy
          .access()
          .slice(before)
          .find((r) => r.sni === TLS_HOST && r.ja4 !== notJa4);
      await waitFor(() => mine() !== undefined, 5000, "openssl's access record");
      return mine()!;
    };
    const first = proxy.access().length;
    expect((await curl()).out).toBe("hello from be\n");
    await waitFor(
      () =>
        proxy
          .access()
          .slice(first)
          .some((r) => r.sni === TLS_HOST),
      5000,
      "curl's access record",
    );
    const fp = String(
      proxy
        .access()
        .slice(first)
        .find((r) => r.sni === TLS_HOST)!.ja4,
    );
    expect(fp).toMatch(/^t1[23]d/);
    expect((await openssl(fp)).outcome).toBe("ok");
    await show(op, "fingerprints");
    const button = await op.waitForSelector(`#view-fingerprints tr[data-ja4="${fp}"] button[data-block-ja4]`, {
      timeout: 15_000,
    });
    await button!.click();
    await waitFor(
      () => audits().some((r) => r.method === "AddFirewallRule" && r.identity === "dashboard:alice"),
      10_000,
      "the block's audit line",
    );
    expect(audits().find((r) => r.method === "AddFirewallRule")).toMatchObject({
      code: "OK",
      "rule.type": "FIREWALL_RULE_TYPE_JA4",
      "rule.value": fp,
    });
    const blockedFrom = proxy.access().length;
    const refused = await curl();
    expect(refused.out).toBe("");
    expect(refused.err.toLowerCase()).toContain("reset");
    await waitFor(
      () =>
        proxy
          .access()
          .slice(blockedFrom)
          .some((r) => r.outcome === "blocked_ja4" && r.ja4 === fp),
      5000,
      "curl's blocked_ja4 record",
    );
    const still = await openssl(fp);
    expect(still.outcome).toBe("ok");
    expect(still.backend).toBe(`127.0.0.1:${be.port}`);
  }, 40_000);

  test("a reader: the views, no action control in the DOM; forged actions (no CSRF token, a wrong one, a reader's) are refused and change nothing", async () => {
    const auditsBefore = audits().length;
    const statesBefore = await poolStates();
    const action = JSON.stringify({
      action: "set_backend_state",
      listener: "public",
      hostname: POOL,
      alpn: [],
      backend: B,
      state: "BACKEND_STATE_DISABLED",
    });
    const opSession = await loginHttp("alice");
    for (const [why, token] of [
      ["no token", undefined],
      ["a wrong token", `${opSession.csrf.slice(0, -2)}xx`],
      ["an empty token", ""],
    ] as const) {
      const h: Record<string, string> = { Cookie: opSession.cookie, "Content-Type": "application/json" };
      if (token !== undefined) h["X-CSRF-Token"] = token;
      const r = await fetch(`${base}/api/action`, { method: "POST", headers: h, body: action });
      expect({ why, status: r.status }).toEqual({ why, status: 403 });
      expect(await r.json()).toEqual({ error: "bad CSRF token" });
    }
    // The reader's own session and token, over HTTP.
    const reader = await loginHttp("bob");
    const r = await fetch(`${base}/api/action`, {
      method: "POST",
      headers: { Cookie: reader.cookie, "Content-Type": "application/json", "X-CSRF-Token": reader.csrf },
      body: action,
    });
    expect(r.status).toBe(403);
    expect(await r.json()).toEqual({ error: "reader may not set_backend_state" });
    if (!skipBrowser("the reader's page")) {
      const p = await (browser as TestBrowser).page(1280, 800);
      try {
        await loginPage(p, "bob");
        await show(p, "pools");
        await p.waitForSelector(`#view-pools tr[data-backend="${B}"]`, { timeout: 10_000 });
        await show(p, "fingerprints");
        await p.waitForSelector("#view-fingerprints tr[data-ja4]", { timeout: 10_000 });
        await show(p, "refusals");
        await p.waitForSelector('#view-refusals tr[data-client="127.0.0.2"]', { timeout: 10_000 });
        const controls = await p.$$eval(
          '[data-action], button[data-state], button[data-block-ja4], section[id^="view-"] button, section[id^="view-"] form',
          (es) => es.map((e) => e.outerHTML.slice(0, 120)),
        );
        expect(controls).toEqual([]);
        // Forged from the reader's own page, with its own CSRF token: refused.
        const forged = await p.evaluate(async (body: string) => {
          const s = (await (await fetch("/api/state")).json()) as { me: { role: string; csrf: string } };
          const res = await fetch("/api/action", {
            method: "POST",
            headers: { "X-CSRF-Token": s.me.csrf, "Content-Type": "application/json" },
            body,
          });
          return { role: s.me.role, status: res.status, body: await res.text() };
        }, action);
        expect(forged.role).toBe("reader");
        expect(forged.status).toBe(403);
        expect(JSON.parse(forged.body)).toEqual({ error: "reader may not set_backend_state" });
      } finally {
        await p.browserContext().close();
      }
    }
    // Nothing changed. The reader's attempts reached the one admin wrapper and are audited as refused (as a read-only
    // gRPC caller's are); the requests without a good CSRF token never reached it.
    expect(await poolStates()).toEqual(statesBefore);
    expect(statesBefore[B]).toBe("BACKEND_STATE_ENABLED");
    const refusedLines = audits().slice(auditsBefore);
    expect(refusedLines.length).toBe(typeof browser === "string" ? 1 : 2);
    for (const line of refusedLines)
      expect(line).toMatchObject({ method: "SetBackendState", code: "PERMISSION_DENIED", identity: "dashboard:bob" });
  }, 40_000);

  test("screenshots: overview, routes, pools and fingerprints at 1280×800 and 390×844", async () => {
    if (op === null) return void console.warn("SKIP screenshots: no operator page");
    mkdirSync(OUT, { recursive: true });
    const saved: string[] = [];
    for (const [w, h] of [
      [1280, 800],
      [390, 844],
    ] as const) {
      await op.setViewport({ width: w, height: h });
      for (const view of ["overview", "routes", "pools", "fingerprints"]) {
        await show(op, view);
        await op.$eval("html", (e) => e.scrollTo(0, 0)); // the header and the tabs in the picture
        await sleep(300); // a chart's resize and a frame's paint
        const file = join(OUT, `${view}-${w}x${h}.png`);
        await op.screenshot({ path: file as `${string}.png` });
        saved.push(file);
      }
    }
    console.log(`dashboard screenshots:\n${saved.join("\n")}`);
    expect(saved.length).toBe(8);
  }, 40_000);
});
