// End to end (compiled binary, two workers, Debian's dnsmasq as the resolver): the resolver's
// counters on /metrics (docs/METRICS_AND_LOGS.md "Resolver") — queries, cache hits, resolver
// failures and stale answers served, every worker's cache summed into the one scrape.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Dnsmasq, haveDnsmasq } from "../helpers/dnsmasq";
import { helloFor } from "../helpers/hello_builder";
import { firstReply, freePort, sleep } from "../helpers/net";
import { type RunningProxy, startProxy } from "../helpers/proxy";

const CONNECTIONS = 8;

describe.skipIf(!haveDnsmasq())("resolver metrics (binary)", () => {
  // TTL 1 s: c-ares keeps a query cache of its own for the record's TTL (docs/BUN-NOTES.md); past it, it asks.
  const dns = new Dnsmasq(1, { "svc.test": ["127.0.0.1"] });
  const port = freePort();
  const metricsPort = freePort();
  const backendPort = freePort();
  const backend = Bun.listen({
    hostname: "127.0.0.1",
    port: backendPort,
    socket: { data: (s) => void s.write("SVC") },
  });
  let proxy: RunningProxy;

  beforeAll(async () => {
    await dns.start();
    proxy = await startProxy(
      "binary",
      `
[proxy]
workers = 2

[dns]
servers = ["${dns.server}"]
min_ttl = "1s"
max_ttl = "1s"
stale_ttl = "60s"
timeout = "300ms"

[metrics]
addr = "127.0.0.1:${metricsPort}"

[[listeners]]
addr = "127.0.0.1:${port}"
  [[listeners.routes]]
  hostname = "svc.example"
  backend = "svc.test:${backendPort}"
  [[listeners.routes]]
  hostname = "nx.example"
  backend = "nx.test:${backendPort}"
`,
    );
  }, 30_000);

  afterAll(async () => {
    await proxy?.stop();
    await dns.stop();
    backend.stop(true);
  });

  /** The four counters from one scrape. */
  async function scrape(): Promise<Record<"queries" | "failures" | "cache_hits" | "stale_answers", number>> {
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const out = { queries: 0, failures: 0, cache_hits: 0, stale_answers: 0 };
    for (const name of ["queries", "failures", "cache_hits", "stale_answers"] as const) {
      const m = new RegExp(`^mc_proxy_dns_${name}_total (\\d+)$`, "m").exec(text);
      expect({ name, found: m !== null }).toEqual({ name, found: true });
      out[name] = Number(m![1]);
    }
    return out;
  }

  test("at start every counter is exported at 0", async () => {
    expect(await scrape()).toEqual({ queries: 0, failures: 0, cache_hits: 0, stale_answers: 0 });
  }, 30_000);

  test("queries and cache hits: each worker asks once per TTL, the rest are hits; no such name is no failure", async () => {
    for (let i = 0; i < CONNECTIONS; i++) expect(await firstReply(port, helloFor("svc.example"))).toBe("SVC");
    expect(await firstReply(port, helloFor("nx.example"))).toBe("");
    const m = await scrape();
    // One query per worker that served a connection (1 or 2), within the 1 s TTL; the nx name's one query.
    expect(m.queries).toBeGreaterThanOrEqual(2);
    expect(m.queries).toBeLessThanOrEqual(3 + CONNECTIONS);
    expect(m.queries + m.cache_hits).toBe(CONNECTIONS + 1);
    expect(m.cache_hits).toBeGreaterThanOrEqual(1);
    expect({ failures: m.failures, stale: m.stale_answers }).toEqual({ failures: 0, stale: 0 });
  }, 30_000);

  test("resolver down: failures counted, and the expired answer served counted as stale", async () => {
    await dns.stop();
    await sleep(1500); // past the 1 s TTL: every cached answer has expired
    let served = 0;
    for (let i = 0; i < 40 && served === 0; i++)
      if ((await firstReply(port, helloFor("svc.example"))) === "SVC") served++;
    expect(served).toBe(1);
    const m = await scrape();
    expect(m.failures).toBeGreaterThanOrEqual(1);
    expect(m.stale_answers).toBeGreaterThanOrEqual(1);
  }, 60_000);
});
