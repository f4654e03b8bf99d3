// The three-way comparison of store/file_applied.ts: what the file last
// applied, the file now, the store now (docs/CONFIGURATION.md "The file and
// the API").
import { describe, expect, test } from "bun:test";
import type { Rule } from "../../src/firewall/rule_set";
import { type Route, routeName } from "../../src/routing/route";
import { emptyDraft } from "../../src/routing/route_fields";
import {
  type AppliedState,
  decodeApplied,
  differences,
  encodeApplied,
  fileState,
  isEmpty,
  planApply,
  summarize,
} from "../../src/store/file_applied";

function route(hostname: string, ...addrs: string[]): Route {
  return {
    ...emptyDraft(),
    hostname,
    alpn: [],
    backends: addrs.map((addr) => ({ addr, weight: 1, backup: false })),
  } as unknown as Route;
}

type L = { name: string; maxConnections: number; routes: Route[] };
const web = (routes: Route[], maxConnections = 0): L => ({ name: "web", maxConnections, routes });
const state = (ls: L[], rules: Rule[] = []) => fileState(ls, rules);
const routesOf = (ls: L[]) => new Map(ls.map((l) => [l.name, new Map(l.routes.map((r) => [routeName(r), r]))]));

function plan(last: L[], file: L[], store: L[], rules: { last?: Rule[]; file?: Rule[]; store?: Rule[] } = {}) {
  return planApply(state(last, rules.last), state(file, rules.file), routesOf(file), state(store, rules.store));
}

describe("planApply", () => {
  const a = route("a.test", "127.0.0.1:1");
  const b = route("b.test", "127.0.0.1:2");
  const b2 = route("b.test", "127.0.0.1:4");
  const c = route("c.test", "127.0.0.1:3");
  const d = route("d.test", "127.0.0.1:4");
  const x = route("x.test", "127.0.0.1:9");

  test("an unchanged file changes nothing, whatever the API did", () => {
    const p = plan([web([a, b])], [web([a, b])], [web([a, x])], {
      last: [],
      file: [],
      store: [{ type: "ip", value: "192.0.2.7" }],
    });
    expect(isEmpty(p)).toBe(true);
    expect(summarize(p)).toBe("routes: none; firewall: none; limits: none; conflicts: none");
  });

  test("added, changed and removed routes and a new rule, with the API's own route left alone", () => {
    const cidr: Rule = { type: "cidr", value: "198.51.100.0/24" };
    const p = plan([web([a, b, c])], [web([a, b2, d])], [web([a, b, c, x])], { file: [cidr] });
    expect(p.routes.map((s) => `${s.op} ${s.name}`)).toEqual(["change b.test", "add d.test", "remove c.test"]);
    expect(p.rulesAdded).toEqual([cidr]);
    expect(p.conflicts).toEqual([]);
    expect(summarize(p)).toBe(
      "routes: ~b.test (backends) +d.test -c.test; firewall: +1 cidr; limits: none; conflicts: none",
    );
    // What is kept as last applied is the file, not the store: x.test stays the API's.
    expect([...p.next.listeners.get("web")!.routes.keys()].sort()).toEqual(["a.test", "b.test", "d.test"]);
  });

  test("a key changed over the API and in the file: the file's value applies, and the conflict is named", () => {
    const aApi = route("a.test", "127.0.0.1:7");
    const aFile = route("a.test", "127.0.0.1:8");
    const p = plan([web([a])], [web([aFile])], [web([aApi])]);
    expect(p.routes).toHaveLength(1);
    expect(p.routes[0]!.op).toBe("change");
    expect(p.conflicts).toHaveLength(1);
    expect(p.conflicts[0]).toContain("a.test on web");
    // Removed over the API, changed in the file: also a conflict, and the file's route comes back.
    const q = plan([web([a])], [web([aFile])], [web([])]);
    expect(q.routes[0]!.op).toBe("change");
    expect(q.conflicts[0]).toContain("removed over the API");
  });

  test("a limit the file changes applies; one the API changed too is a conflict", () => {
    const p = plan([web([a], 100)], [web([a], 200)], [web([a], 150)]);
    expect(p.limits).toEqual([{ listener: "web", from: 150, to: 200 }]);
    expect(p.conflicts[0]).toContain("max_connections");
  });

  test("a rule removed from the file is removed; the API's rules are not the file's to remove", () => {
    const r1: Rule = { type: "ip", value: "192.0.2.1" };
    const r2: Rule = { type: "ip", value: "192.0.2.2" };
    const p = plan([web([])], [web([])], [web([])], { last: [r1], file: [], store: [r1, r2] });
    expect(p.rulesRemoved).toEqual([r1]);
    expect(p.rulesAdded).toEqual([]);
  });

  test("a listener the file no longer names keeps its last-applied entry and its routes", () => {
    const other: L = { name: "other", maxConnections: 0, routes: [c] };
    const p = plan([web([a]), other], [web([a])], [web([a]), other]);
    expect(isEmpty(p)).toBe(true);
    expect(p.next.listeners.has("other")).toBe(true);
  });

  test("operator states (drain, disabled) are not the file's: a drained backend is no change", () => {
    const drained: Route = { ...a, backends: [{ ...a.backends[0]!, state: "drain" }] };
    expect(differences(state([web([a])]), state([web([drained])]))).toEqual([]);
  });
});

describe("the last-applied document", () => {
  test("round-trips, and every value in it passes the route and rule validators", () => {
    const s: AppliedState = fileState(
      [
        web([
          route("a.test", "127.0.0.1:1"),
          route("", "127.0.0.1:2"),
          { ...route("b.test", "127.0.0.1:3"), alpn: ["h2"] },
        ]),
      ],
      [{ type: "cidr", value: "10.0.0.0/8" }],
    );
    const text = encodeApplied(s);
    const back = decodeApplied(text);
    expect(back.ok).toBe(true);
    if (back.ok) expect(encodeApplied(back.value)).toBe(text);
    // Routes are kept as digests (a 10,000-route table fits in one etcd value).
    expect(text.length).toBeLessThan(400);
    const bad = JSON.parse(text);
    bad.listeners.web.routes["a.test"] = "not a digest";
    expect(decodeApplied(JSON.stringify(bad)).ok).toBe(false);
    const badName = JSON.parse(text);
    badName.listeners.web.routes["bad name!"] = badName.listeners.web.routes["a.test"];
    expect(decodeApplied(JSON.stringify(badName)).ok).toBe(false);
    expect(decodeApplied(JSON.stringify({ ...JSON.parse(text), rules: ["cidr 10.0.0.0/33"] })).ok).toBe(false);
    expect(decodeApplied("[]").ok).toBe(false);
    expect(decodeApplied("{").ok).toBe(false);
  });

  test("10,000 routes: the document fits in one etcd value (1.5 MiB request limit)", () => {
    const many = Array.from({ length: 10_000 }, (_, i) =>
      route(`host-${i}.example.com`, `127.0.0.1:${1 + (i % 60000)}`),
    );
    const t0 = performance.now();
    const text = encodeApplied(fileState([web(many)], []));
    const ms = performance.now() - t0;
    console.log(`last-applied document, 10,000 routes: ${text.length} bytes, built in ${ms.toFixed(0)} ms`);
    expect(text.length).toBeLessThan(1.5 * 1024 * 1024);
    expect(decodeApplied(text).ok).toBe(true);
  });

  test("a summary names at most 20 routes, then how many more", () => {
    const many = Array.from({ length: 25 }, (_, i) => route(`h${i}.test`, "127.0.0.1:1"));
    const p = plan([web([])], [web(many)], [web([])]);
    expect(summarize(p)).toContain("(and 5 more)");
  });
});
