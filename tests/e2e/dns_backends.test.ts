// End to end (compiled binary, Debian's dnsmasq as the resolver): backends named by a host
// name are resolved at connect time (docs/DNS.md) and every address is checked by the
// destination guard before it is connected to (docs/SECURITY.md "Destination guard").
// - a record change is followed once its TTL has passed;
// - the resolver stopped: the cached answer is served for stale_ttl, then dns_failed (RST);
// - deny_destinations on a fixed name refuses (destination_denied), nothing reaches the backend;
// - a templated route refuses loopback, metadata, ::1 and private answers by default, lets them
//   through when allow_destinations lists them;
// - a TTL-0 name whose answer flips between a public-looking address and 127.0.0.1 never
//   reaches the loopback backend.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Dnsmasq, haveDnsmasq } from "../helpers/dnsmasq";
import { helloFor } from "../helpers/hello_builder";
import { firstReply, freePort, rawExchange, sleep, waitFor } from "../helpers/net";
import { type LogRecord, type RunningProxy, startProxy } from "../helpers/proxy";

/** A backend on `host:port` that answers its name to the first bytes and counts its connections. */
function backendOn(name: string, host: string, port: number) {
  const state = { conns: 0, stop: () => {} };
  const l = Bun.listen({
    hostname: host,
    port,
    socket: {
      open: () => void state.conns++,
      data: (s) => void s.write(name),
    },
  });
  state.stop = () => l.stop(true);
  return state;
}

const STALE_MS = 3000;
const TTL_SEC = 2;

/** The proxy's config: dnsmasq as the resolver, one loop (its cache is the one that answers). */
function config(dns: Dnsmasq, port: number, port2: number): string {
  return `
[proxy]
workers = 1

[dns]
servers = ["${dns.server}"]
min_ttl = "0s"
stale_ttl = "${STALE_MS / 1000}s"
timeout = "300ms"

[[listeners]]
addr = "127.0.0.1:${port}"
  [[listeners.routes]]
  hostname = "svc.example"
  backend = "svc.test:${port2}"
  [[listeners.routes]]
  hostname = "denied.example"
  backend = "bad.test:${port2}"
  deny_destinations = ["127.0.0.0/8"]
  [[listeners.routes]]
  hostname_pattern = '^(?<n>[a-z0-9-]{1,63})\\.tpl\\.example$'
  backend = "{n}.svc.test:${port2}"
  connect_timeout = "300ms"
  [[listeners.routes]]
  hostname_pattern = '^(?<n>[a-z0-9-]{1,63})\\.open\\.example$'
  backend = "{n}.svc.test:${port2}"
  connect_timeout = "300ms"
  allow_destinations = ["127.0.0.0/8", "::1", "169.254.169.254", "10.0.0.0/8"]
`;
}

describe.skipIf(!haveDnsmasq())("backends named by a host name (binary)", () => {
  const dns = new Dnsmasq(TTL_SEC, {});
  let proxy: RunningProxy;
  let port = 0;
  const port2 = freePort();
  const a = backendOn("A", "127.0.0.21", port2);
  const b = backendOn("B", "127.0.0.22", port2);
  const lo = backendOn("LO", "127.0.0.1", port2);
  const v6 = backendOn("V6", "::1", port2);
  const current: Record<string, string[]> = {
    "svc.test": ["127.0.0.21"],
    "bad.test": ["127.0.0.21"],
    "lo.svc.test": ["127.0.0.1"],
    "meta.svc.test": ["169.254.169.254"],
    "v6.svc.test": ["::1"],
    "priv.svc.test": ["10.1.2.3"],
  };

  beforeAll(async () => {
    await dns.set(current);
    await dns.start();
    port = freePort();
    proxy = await startProxy("binary", config(dns, port, port2));
  }, 30_000);

  afterAll(async () => {
    await proxy?.stop();
    await dns.stop();
    for (const s of [a, b, lo, v6]) s.stop();
  });

  /** The backend's name as the first reply ("" when reset or nothing within 2 s). */
  const reply = (name: string) => firstReply(port, helloFor(name));
  const recordsFor = (sni: string) => proxy.access().filter((r) => r.sni === sni);
  const lastFor = (sni: string, n: number) =>
    waitFor(() => recordsFor(sni).length >= n, 5000, `${n} records of ${sni}`);

  test("a fixed backend name reaches the address it resolves to, logged as resolved", async () => {
    expect(await reply("svc.example")).toBe("A");
    await lastFor("svc.example", 1);
    expect(recordsFor("svc.example")[0]).toMatchObject({ backend: `svc.test:${port2}`, resolved: "127.0.0.21" });
  }, 30_000);

  test("a record change is followed after its TTL", async () => {
    expect(await reply("svc.example")).toBe("A");
    const cached = Date.now();
    current["svc.test"] = ["127.0.0.22"];
    await dns.set(current);
    // Within the TTL the cached answer is used (dnsmasq already answers the new one).
    if (Date.now() - cached < TTL_SEC * 1000 - 500) expect(await reply("svc.example")).toBe("A");
    let got = "";
    for (let i = 0; i < 50 && got !== "B"; i++) {
      got = await reply("svc.example");
      if (got !== "B") await sleep(100);
    }
    expect(got).toBe("B");
    // Followed once the TTL has passed, not served longer.
    expect(Date.now() - cached).toBeLessThan(TTL_SEC * 1000 + 2000);
  }, 30_000);

  test("deny_destinations on a fixed name: RST, destination_denied, nothing reaches the backend", async () => {
    const before = a.conns;
    const r = await rawExchange(port, helloFor("denied.example"), { timeoutMs: 5000 });
    expect(r.received.length).toBe(0);
    expect(r.end).toBe("reset");
    await lastFor("denied.example", 1);
    expect(recordsFor("denied.example")[0]).toMatchObject({ outcome: "destination_denied", resolved: "127.0.0.21" });
    expect(a.conns).toBe(before);
  }, 30_000);

  test("a templated route refuses loopback, metadata, ::1 and private answers by default", async () => {
    for (const n of ["lo", "meta", "v6", "priv"]) {
      const sni = `${n}.tpl.example`;
      const r = await rawExchange(port, helloFor(sni), { timeoutMs: 5000 });
      expect({ sni, end: r.end, bytes: r.received.length }).toEqual({ sni, end: "reset", bytes: 0 });
      await lastFor(sni, 1);
      expect({ sni, outcome: recordsFor(sni)[0]!.outcome }).toEqual({ sni, outcome: "destination_denied" });
    }
    expect(lo.conns + v6.conns).toBe(0);
  }, 30_000);

  test("allowed when listed: loopback and ::1 reached, metadata and private tried (not refused)", async () => {
    expect(await reply("lo.open.example")).toBe("LO");
    expect(await reply("v6.open.example")).toBe("V6");
    for (const n of ["meta", "priv"]) {
      const sni = `${n}.open.example`;
      await rawExchange(port, helloFor(sni), { timeoutMs: 5000 });
      await lastFor(sni, 1);
      expect({ sni, outcome: recordsFor(sni)[0]!.outcome }).not.toEqual({ sni, outcome: "destination_denied" });
    }
    const resolvedOf = (sni: string) => (recordsFor(sni)[0] as LogRecord).resolved;
    expect(resolvedOf("meta.open.example")).toBe("169.254.169.254");
    expect(resolvedOf("v6.open.example")).toBe("::1");
  }, 30_000);

  // Last: it stops the resolver.
  test("resolver down: the cached answer is served for stale_ttl, then dns_failed with RST", async () => {
    expect(await reply("svc.example")).toBe("B");
    await dns.stop();
    const stopped = Date.now();
    // Within the stale window every connection is served from the expired answer.
    expect(await reply("svc.example")).toBe("B");
    await sleep(1500);
    expect(await reply("svc.example")).toBe("B");
    let r = await rawExchange(port, helloFor("svc.example"), { timeoutMs: 5000 });
    for (let i = 0; i < 100 && r.end !== "reset"; i++) {
      await sleep(100);
      r = await rawExchange(port, helloFor("svc.example"), { timeoutMs: 5000 });
    }
    const after = Date.now() - stopped;
    expect(r.end).toBe("reset");
    // TTL 1 s + stale 3 s (+ one query's timeout and a worker's other cache): not before the window ends.
    expect(after).toBeGreaterThanOrEqual(STALE_MS);
    expect(after).toBeLessThan(STALE_MS + 5000);
    await waitFor(() => recordsFor("svc.example").some((x) => x.outcome === "dns_failed"), 5000, "a dns_failed record");
  }, 30_000);
});

describe.skipIf(!haveDnsmasq())("a TTL-0 name that flips (binary)", () => {
  const dns0 = new Dnsmasq(0, {});
  let proxy0: RunningProxy;
  const port0 = freePort();
  const port2 = freePort();
  const lo0 = backendOn("LO", "127.0.0.1", port2);
  const flipRecords = (sni: string) => proxy0.access().filter((r) => r.sni === sni);

  beforeAll(async () => {
    await dns0.start();
    proxy0 = await startProxy("binary", config(dns0, port0, port2));
  }, 30_000);

  afterAll(async () => {
    await proxy0?.stop();
    await dns0.stop();
    lo0.stop();
  });

  test("a TTL-0 name flipping between a public-looking address and 127.0.0.1 never reaches loopback", async () => {
    const loBefore = lo0.conns;
    for (let i = 0; i < 8; i++) {
      await dns0.set({ "flip.svc.test": [i % 2 === 0 ? "192.0.2.1" : "127.0.0.1"] });
      await Promise.all([0, 1, 2].map(() => rawExchange(port0, helloFor("flip.tpl.example"), { timeoutMs: 5000 })));
    }
    await waitFor(() => flipRecords("flip.tpl.example").length >= 24, 10_000, "24 records");
    const outcomes = new Set(flipRecords("flip.tpl.example").map((r) => `${r.resolved} ${r.outcome}`));
    expect(outcomes.has("127.0.0.1 destination_denied")).toBe(true);
    for (const o of outcomes) expect(o).not.toBe("127.0.0.1 ok");
    expect(lo0.conns).toBe(loBefore);
  }, 30_000);
});
