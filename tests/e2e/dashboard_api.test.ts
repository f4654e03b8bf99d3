// The dashboard's HTTP API against the compiled binary (docs/DASHBOARD.md
// "The HTTP API"): `mc-proxy passwd` makes the hashes the config holds; a
// request without a session gets 401; an operator's login sees the routes,
// drains a backend through /api/action (new connections avoid it, the audit
// line names dashboard:<user>); a reader is refused and nothing changes; a
// client the firewall blocks appears among the recent refusals (two workers:
// the loops' rings merged); the event stream sends the state at once.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { named } from "../helpers/backends";
import { helloFor } from "../helpers/hello_builder";
import { firstReply, freePort, sleep } from "../helpers/net";
import { type RunningProxy, ensureBinary, runCli, startProxy } from "../helpers/proxy";
import { dirname } from "node:path";

// biome-ignore lint/suspicious/noExplicitAny: the JSON documents the tests read
type Json = any;
/** A response's JSON body. */
const json = (r: Response): Promise<Json> => r.json();

const hello = helloFor("app.example.com");
const a = named("a");
const b = named("b");
const port = freePort();
const dash = freePort();
const base = `http://127.0.0.1:${dash}`;
let proxy: RunningProxy;

function passwd(password: string): string {
  const r = Bun.spawnSync([ensureBinary(), "passwd"], {
    stdin: Buffer.from(`${password}\n`),
    stdout: "pipe",
    stderr: "pipe",
  });
  expect(r.exitCode).toBe(0);
  return r.stdout.toString().trim();
}

/** Log in; the Cookie header and the CSRF token. */
async function login(name: string, password: string): Promise<{ cookie: string; csrf: string }> {
  const r = await fetch(`${base}/login`, {
    method: "POST",
    redirect: "manual",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ name, password }).toString(),
  });
  expect(r.status).toBe(303);
  expect(r.headers.get("location")).toBe("/");
  const cookie = r.headers.get("set-cookie")!.split(";")[0]!;
  const state = await json(await fetch(`${base}/api/state`, { headers: { cookie } }));
  return { cookie, csrf: state.me.csrf };
}

const drain = {
  action: "set_backend_state",
  listener: `127.0.0.1:${port}`,
  hostname: "app.example.com",
  alpn: [],
  backend: `127.0.0.1:${b.port}`,
  state: "BACKEND_STATE_DRAIN",
};

function act(s: { cookie: string; csrf: string }, body: unknown): Promise<Response> {
  return fetch(`${base}/api/action`, {
    method: "POST",
    headers: { cookie: s.cookie, "x-csrf-token": s.csrf, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

beforeAll(async () => {
  const aliceHash = passwd("alice's password");
  const ritaHash = passwd("rita reads");
  expect(aliceHash).toStartWith("$argon2id$");
  expect(await Bun.password.verify("alice's password", aliceHash)).toBe(true);
  proxy = await startProxy(
    "binary",
    `[[listeners]]
addr = "127.0.0.1:${port}"
  [[listeners.routes]]
  hostname = "app.example.com"
  backends = [{ addr = "127.0.0.1:${a.port}" }, { addr = "127.0.0.1:${b.port}" }]
  health_check = "off"
[proxy]
workers = 2
[firewall]
blocked_ips = ["127.0.0.2"]
[dashboard]
addr = "127.0.0.1:${dash}"
[[dashboard.users]]
name = "alice"
role = "operator"
password_hash = "${aliceHash}"
[[dashboard.users]]
name = "rita"
role = "reader"
password_hash = "${ritaHash}"
`,
  );
}, 30_000);

afterAll(async () => {
  await proxy?.stop();
  a.stop();
  b.stop();
});

describe("dashboard HTTP API (binary)", () => {
  test("without a session: 401 and nothing of the routes; the page sends to the login form", async () => {
    const r = await fetch(`${base}/api/state`);
    expect(r.status).toBe(401);
    const text = await r.text();
    expect(text).toBe('{"error":"log in"}');
    expect(r.headers.get("content-security-policy")).toContain("default-src 'none'");
    const root = await fetch(`${base}/`, { redirect: "manual" });
    expect(root.status).toBe(303);
    expect(root.headers.get("location")).toBe("/login");
    expect((await fetch(`${base}/login`)).status).toBe(200);
    const wrong = await fetch(`${base}/login`, {
      method: "POST",
      redirect: "manual",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: "name=alice&password=nope",
    });
    expect(wrong.headers.get("location")).toBe("/login?failed=1");
  });

  test("an operator sees the routes, drains a backend: new connections avoid it, the audit line names the user", async () => {
    const alice = await login("alice", "alice's password");
    const state = await json(await fetch(`${base}/api/state`, { headers: { cookie: alice.cookie } }));
    expect(state.me).toMatchObject({ user: "alice", role: "operator" });
    const route = state.routes.listeners[0].routes[0];
    expect(route.hostname).toBe("app.example.com");
    expect(route.backends.map((x: { addr: string }) => x.addr)).toEqual([`127.0.0.1:${a.port}`, `127.0.0.1:${b.port}`]);
    const before = await Promise.all(Array.from({ length: 10 }, () => firstReply(port, hello)));
    expect(new Set(before)).toEqual(new Set(["a", "b"]));

    const r = await act(alice, drain);
    expect(r.status).toBe(200);
    expect((await json(r)).result.backend.state).toBe("BACKEND_STATE_DRAIN");
    const after = await Promise.all(Array.from({ length: 20 }, () => firstReply(port, hello)));
    expect(after.every((x) => x === "a")).toBe(true);
    const audit = proxy.records().filter((x) => x.msg === "admin");
    expect(audit).toHaveLength(1);
    expect(audit[0]).toMatchObject({ method: "SetBackendState", identity: "dashboard:alice", code: "OK" });
  });

  test("a reader is refused (403) and nothing changes; a missing CSRF token is refused too", async () => {
    const rita = await login("rita", "rita reads");
    const r = await act(rita, { ...drain, state: "BACKEND_STATE_ENABLED" });
    expect(r.status).toBe(403);
    expect(await json(r)).toEqual({ error: "reader may not set_backend_state" });
    const alice = await login("alice", "alice's password");
    const forged = await act({ cookie: alice.cookie, csrf: "" }, { ...drain, state: "BACKEND_STATE_ENABLED" });
    expect(forged.status).toBe(403);
    const state = await json(await fetch(`${base}/api/state`, { headers: { cookie: rita.cookie } }));
    expect(state.routes.listeners[0].routes[0].backends[1].state).toBe("BACKEND_STATE_DRAIN");
    const after = await Promise.all(Array.from({ length: 10 }, () => firstReply(port, hello)));
    expect(after.every((x) => x === "a")).toBe(true);
  });

  test("a client the firewall blocks appears among the recent refusals; the event stream sends the state at once", async () => {
    const alice = await login("alice", "alice's password");
    expect(await firstReply(port, hello, "127.0.0.2")).toBe("");
    let refusals: { client: string; outcome: string; listener: string; time: string }[] = [];
    const end = Date.now() + 10_000;
    while (!refusals.some((x) => x.client === "127.0.0.2") && Date.now() < end) {
      await sleep(100);
      refusals = (await json(await fetch(`${base}/api/state`, { headers: { cookie: alice.cookie } }))).refusals;
    }
    const r = refusals.find((x) => x.client === "127.0.0.2");
    expect(r).toMatchObject({ outcome: "blocked_ip", listener: `127.0.0.1:${port}` });
    expect(Number.isNaN(Date.parse(r!.time))).toBe(false);

    const ac = new AbortController();
    const ev = await fetch(`${base}/api/events`, { headers: { cookie: alice.cookie }, signal: ac.signal });
    expect(ev.headers.get("content-type")).toStartWith("text/event-stream");
    const reader = ev.body!.getReader();
    const { value } = await reader.read();
    expect(new TextDecoder().decode(value)).toStartWith("event: state\ndata: {");
    ac.abort();
  });

  test("a reload hands the dashboard over: the new process serves it (generation 2); sessions were the old process's", async () => {
    const old = await login("alice", "alice's password");
    const r = runCli(["reload", "-c", proxy.configFile], { cwd: dirname(proxy.configFile) });
    expect({ code: r.code, err: r.err }).toEqual({ code: 0, err: expect.any(String) });
    let generation = 0;
    const end = Date.now() + 15_000;
    while (generation !== 2 && Date.now() < end) {
      await sleep(100);
      try {
        const s = await login("alice", "alice's password");
        generation = (await json(await fetch(`${base}/api/state`, { headers: { cookie: s.cookie } }))).status
          .generation;
      } catch {}
    }
    expect(generation).toBe(2);
    expect((await fetch(`${base}/api/state`, { headers: { cookie: old.cookie } })).status).toBe(401);
    expect(proxy.records().filter((x) => x.msg === "dashboard listening")).toHaveLength(2);
  }, 30_000);
});
