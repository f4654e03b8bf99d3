// A firewall rule added at runtime reaches the sessions already open
// (docs/SECURITY.md "Rules reach established connections"): what the new
// rules block that the old did not (Firewall.newlyBlocked, rule_set.ts
// passedRules), and one event loop closing them with RST (EventLoop's
// "rules" command) — fake sockets, no binding.
import { describe, expect, test } from "bun:test";
import { Firewall, type FirewallRules } from "../../src/firewall/firewall";
import { passedRules, ruleSet } from "../../src/firewall/rule_set";
import { BackendTable } from "../../src/routing/backend_table";
import { bindRoutes } from "../../src/routing/pool";
import { defaultRouteOf } from "../../src/routing/route";
import { parseRoutedConfig } from "../../src/routing/route_config";
import type { Connection } from "../../src/server/connection";
import { EventLoop } from "../../src/server/event_loop";
import { SharedCounters } from "../../src/server/shared_counters";
import { keptRules, keys, parseEntry, ruleValue } from "../../src/store/etcd_layout";
import { FakeSocket, capturingLogger, fakeConnector } from "../helpers/fake_sockets";
import { helloFor } from "../helpers/hello_builder";

const NONE: FirewallRules = { blockedIps: [], blockedCidrs: [], blockedCountries: [], blockedJa4: [] };
const rules = (r: Partial<FirewallRules>): FirewallRules => ({ ...NONE, ...r });
const FP = "t13d1516h2_8daaf6152771_e5627efa2ab1";

function firewall(r: FirewallRules): Firewall {
  return new Firewall({ rules: r, geoipDb: null, rateLimit: 0, rateWindowMs: 1000 });
}

describe("what the new rules block that the old did not", () => {
  test("the admission's verdicts, in its order: ip, cidr, then ja4", () => {
    const fw = firewall(NONE);
    fw.replaceRules(rules({ blockedIps: ["192.0.2.1"], blockedCidrs: ["192.0.2.0/24"], blockedJa4: ["t13d*_*_*"] }));
    const blocked = fw.newlyBlocked(NONE);
    expect(blocked("192.0.2.1", FP)).toBe("blocked_ip");
    expect(blocked("192.0.2.2", "")).toBe("blocked_cidr");
    expect(blocked("198.51.100.1", FP)).toBe("blocked_ja4");
    expect(blocked("198.51.100.1", "q13d1516h2_8daaf6152771_e5627efa2ab1")).toBeNull();
    // An address no rule judges (a PROXY LOCAL header), a fingerprint not computed.
    expect(blocked("", "")).toBeNull();
    expect(blocked("", FP)).toBe("blocked_ja4");
  });

  test("what the rules it was admitted under already blocked stays (kept earlier)", () => {
    const fw = firewall(NONE);
    const before = rules({ blockedIps: ["192.0.2.1"] });
    fw.replaceRules(rules({ blockedIps: ["192.0.2.1"], blockedCidrs: ["192.0.2.0/24"] }));
    const blocked = fw.newlyBlocked(before);
    expect(blocked("192.0.2.1", "")).toBeNull();
    expect(blocked("192.0.2.9", "")).toBe("blocked_cidr");
    // IPv6, and a rule rate limit never enters (the rate limit judges new connections only).
    fw.replaceRules(rules({ blockedCidrs: ["2001:db8::/32"] }));
    expect(fw.newlyBlocked(NONE)("2001:db8::7", "")).toBe("blocked_cidr");
  });

  test("passedRules: null when nothing is added beyond what is kept", () => {
    const prev = rules({ blockedIps: ["192.0.2.1"] });
    const next = rules({ blockedIps: ["192.0.2.1", "192.0.2.2"] });
    expect(passedRules(prev, next, [])).toEqual(prev);
    expect(passedRules(prev, next, [{ type: "ip", value: "192.0.2.2" }])).toBeNull();
    // A removal adds nothing.
    expect(passedRules(next, prev, [])).toBeNull();
    // Two added, one kept: the kept one joins what the sessions passed.
    const both = rules({ blockedIps: ["192.0.2.1", "192.0.2.2"], blockedJa4: [FP] });
    expect(passedRules(prev, both, [{ type: "ja4", value: FP }])).toEqual(
      ruleSet([
        { type: "ip", value: "192.0.2.1" },
        { type: "ja4", value: FP },
      ]),
    );
  });
});

/** One loop over one listener with one route, never started (as tests/unit/event_loop.test.ts builds it). */
function loop(listenerExtra = "") {
  const config = parseRoutedConfig(
    `[[listeners]]
addr = "127.0.0.1:8443"
${listenerExtra}
  [[listeners.routes]]
  hostname = "app.example.com"
  backend = "10.0.0.1:443"
`,
    "/tmp/firewall-established-test.toml",
  );
  const counters = new SharedCounters(1, 1);
  const backends = new BackendTable(16, 1);
  const tables = config.listeners.map((l, i) => bindRoutes(backends, i, l.routes, defaultRouteOf(l)));
  const log = capturingLogger();
  const fake = fakeConnector(log.logger);
  const el = new EventLoop(
    {
      id: 0,
      workers: 1,
      config,
      counters: counters.buffer,
      backends: backends.buffer,
      backendSlots: 16,
      tables,
      rateBuffer: null,
      geoipData: null,
      histograms: false,
      connectionCap: 0,
      generation: 1,
      takeover: false,
    },
    log.logger,
    fake.connect,
  );
  const h = el.clientHandlers(el.listeners[0]!);
  return {
    el,
    counters,
    attempts: fake.attempts,
    records: () => log.records().filter((r) => r.msg === "access"),
    /** A client accepted, its hello sent; its backend connect opened when `relay`. */
    client(ip: string, relay = true): FakeSocket<Connection> {
      const s = new FakeSocket<Connection>(ip);
      void h.open!(s.as<Connection>());
      void h.data!(s.as<Connection>(), helloFor("app.example.com") as Buffer);
      if (relay) fake.attempts.at(-1)!.open();
      return s;
    },
  };
}

describe("an event loop applying rules", () => {
  test("the sessions an added rule blocks are reset, closed_by firewall, with the admission's outcome", () => {
    const l = loop();
    const a = l.client("192.0.2.1");
    const b = l.client("192.0.2.2");
    const c = l.client("198.51.100.1", false);
    const fpA = a.data.ja4;
    expect(fpA).toMatch(/^t1/);
    const next = rules({ blockedIps: ["192.0.2.1"], blockedCidrs: ["198.51.100.0/24"] });
    expect(l.el.apply({ type: "rules", rules: next, passed: NONE })).toBe(2);
    expect(a.terminated).toBe(true);
    expect(l.attempts[0]!.socket.terminated).toBe(true);
    expect(b.terminated).toBe(false);
    // Still connecting: refused as at its hello.
    expect(c.terminated).toBe(true);
    const recs = l.records();
    expect(recs.map((r) => [r.client?.toString().split(":")[0], r.outcome, r.closed_by])).toEqual([
      ["192.0.2.1", "blocked_ip", "firewall"],
      ["198.51.100.1", "blocked_cidr", "firewall"],
    ]);
    expect(l.counters.total()).toBe(1);
    // The fingerprint: every session of that hello.
    expect(l.el.apply({ type: "rules", rules: { ...next, blockedJa4: [fpA] }, passed: next })).toBe(1);
    expect(b.terminated).toBe(true);
    expect(l.records().at(-1)).toMatchObject({ outcome: "blocked_ja4", closed_by: "firewall" });
    expect(l.counters.total()).toBe(0);
  });

  test("passed null (kept, or a removal): nothing closes, and new clients are refused", () => {
    const l = loop();
    const a = l.client("192.0.2.1");
    expect(l.el.apply({ type: "rules", rules: rules({ blockedIps: ["192.0.2.1"] }), passed: null })).toBe(0);
    expect(a.terminated).toBe(false);
    expect(l.client("192.0.2.1", false).terminated).toBe(true);
  });

  test("a proxy_protocol listener: the balancer is never judged by the rules, only the client its header names", () => {
    const l = loop(`proxy_protocol = true\ntrusted_proxies = ["192.0.2.100"]`);
    const s = new FakeSocket<Connection>("192.0.2.100");
    const h = l.el.clientHandlers(l.el.listeners[0]!);
    void h.open!(s.as<Connection>());
    // Waiting for its header: not judged.
    expect(l.el.apply({ type: "rules", rules: rules({ blockedIps: ["192.0.2.100"] }), passed: NONE })).toBe(0);
    expect(s.terminated).toBe(false);
    void h.data!(s.as<Connection>(), Buffer.from("PROXY TCP4 203.0.113.5 192.0.2.100 40000 443\r\n"));
    expect(s.data.judgedIp).toBe("203.0.113.5");
    expect(
      l.el.apply({
        type: "rules",
        rules: rules({ blockedIps: ["192.0.2.100", "203.0.113.5"] }),
        passed: rules({ blockedIps: ["192.0.2.100"] }),
      }),
    ).toBe(1);
    expect(s.terminated).toBe(true);
  });
});

describe("through etcd: keep_established in the rule's value", () => {
  const P = "/mc/";
  test("written only when set; read back; a release reading version 1 ignores it", () => {
    expect(ruleValue(false)).toBe('{"version":1}');
    expect(ruleValue(true)).toBe('{"version":1,"keep_established":true}');
    const key = keys.rule(P, { type: "ip", value: "192.0.2.1" });
    expect(parseEntry(P, key, ruleValue(true))).toEqual({
      kind: "rule",
      rule: { type: "ip", value: "192.0.2.1" },
      keep: true,
    });
    expect(parseEntry(P, key, ruleValue(false))).toMatchObject({ keep: false });
    expect(parseEntry(P, key, null)).toMatchObject({ keep: false });
    expect(
      keptRules(P, [
        { key, value: ruleValue(true) },
        { key: keys.rule(P, { type: "ip", value: "192.0.2.2" }), value: ruleValue(false) },
        { key: `${P}listeners/public`, value: '{"version":1,"max_connections":1}' },
      ]),
    ).toEqual([{ type: "ip", value: "192.0.2.1" }]);
  });
});
