// `bun run demo` (scripts/demo.ts, README "Quick start"), run as an operator
// would: on ports of its own (DEMO_PORT), its readiness not a client of the
// proxy (one access record: the demo's own request), no takeover warning
// (a plain start cannot be taken over by anything it did), and SIGINT — a
// terminal's Ctrl-C — a graceful drain: the proxy says it drains, stops with
// exit code 0, and so does the demo.
import { expect, test } from "bun:test";
import { join } from "node:path";
import { freePort, waitFor } from "../helpers/net";
import { ROOT, cleanEnv } from "../helpers/proxy";

/** A proxy port under 31768 whose backend port (+1000) is free too. */
function demoPort(): number {
  for (let i = 0; i < 100; i++) {
    const p = freePort();
    if (p > 31_000) continue;
    try {
      Bun.listen({ hostname: "127.0.0.1", port: p + 1000, socket: { data() {} } }).stop(true);
      return p;
    } catch {}
  }
  throw new Error("no pair of free ports");
}

test("the demo: DEMO_PORT moves it, its probe is no client, SIGINT drains and exits 0", async () => {
  if (Bun.which("openssl") === null) return void console.warn("SKIP: the demo needs openssl, which is not installed");
  const port = demoPort();
  let out = "";
  let err = "";
  const demo = Bun.spawn([process.execPath, "run", join(ROOT, "scripts/demo.ts")], {
    cwd: ROOT,
    env: cleanEnv({ DEMO_PORT: String(port) }),
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const read = async (s: ReadableStream<Uint8Array>, into: (t: string) => void) => {
    const d = new TextDecoder();
    for await (const c of s) into(d.decode(c, { stream: true }));
  };
  const reading = Promise.all([read(demo.stdout, (t) => (out += t)), read(demo.stderr, (t) => (err += t))]);
  try {
    await waitFor(() => out.includes("demo: try it yourself"), 30_000, `the demo's request (stdout: ${out})`);
    expect(out).toContain(`through 127.0.0.1:${port} got: hello from the mc-proxy demo backend`);
    expect(out).toContain(`curl --cacert`);
    expect(out).toContain(`https://alpha.example.com:${port}/`);
    await waitFor(() => err.includes("msg=access"), 10_000, "the access record of the demo's request");
    demo.kill("SIGINT");
    expect(await demo.exited).toBe(0);
    await reading;
    const access = err.split("\n").filter((l) => l.includes("msg=access"));
    expect(access).toHaveLength(1);
    expect(access[0]).toContain("outcome=ok");
    expect(access[0]).toContain(`listener=127.0.0.1:${port}`);
    expect(err).not.toContain("tcp_migrate_req");
    expect(out).toContain("demo: SIGINT: the proxy drains");
    expect(err).toMatch(/msg="signal received" signal=SIGINT/);
    expect(err).not.toContain("second signal");
    expect(err).toMatch(/msg=stopped connections_total=1 exit_code=0/);
    expect(out).toContain("demo: the proxy stopped (exit code 0)");
  } finally {
    demo.kill("SIGKILL");
  }
}, 60_000);
