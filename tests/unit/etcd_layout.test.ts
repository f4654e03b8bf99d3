// The etcd key layout (src/store/etcd_layout.ts): one canonical key per
// listener, route and rule — each part as encodeURIComponent writes it, as
// every release has written it (keys.*) — and every other spelling, or a key
// with too many parts, refused as invalid (logged by key), never applied.
import { describe, expect, test } from "bun:test";
import { routeName } from "../../src/routing/route";
import { keys, listenerValue, parseEntry, stateFrom } from "../../src/store/etcd_layout";
import { encodeRoute as routeValue } from "../../src/store/route_codec";
import { route } from "../helpers/routes";

const P = "/mc/";
const plain = route("h.test", "127.0.0.1:9");
const alpnAB = { ...plain, alpn: ["a", "b"] };
const v = routeValue(plain);

describe("etcd keys: the canonical form", () => {
  test("the keys every release writes (encodeURIComponent of each part) are read, puts and deletes", () => {
    const written = [
      keys.route(P, "public", plain),
      keys.route(P, "public", alpnAB),
      keys.route(P, "127.0.0.1:443", { ...plain, alpn: ["acme-tls/1", "h2"] }),
      keys.route(P, "public", { ...plain, hostname: "*.h.test" }),
    ];
    expect(written).toEqual([
      "/mc/routes/public/h.test",
      "/mc/routes/public/h.test/a%2Cb",
      "/mc/routes/127.0.0.1%3A443/h.test/acme-tls%2F1%2Ch2",
      "/mc/routes/public/*.h.test",
    ]);
    for (const k of written) {
      expect([k, parseEntry(P, k, v)?.kind]).toEqual([k, "route"]);
      expect([k, parseEntry(P, k, null)?.kind]).toEqual([k, "route"]);
    }
    expect(parseEntry(P, keys.listener(P, "127.0.0.1:443"), listenerValue(5))).toEqual({
      kind: "listener",
      name: "127.0.0.1:443",
      maxConnections: 5,
    });
    expect(keys.rule(P, { type: "cidr", value: "10.0.0.0/8" })).toBe("/mc/rules/cidr/10.0.0.0%2F8");
    expect(parseEntry(P, "/mc/rules/cidr/10.0.0.0%2F8", '{"version":1}')).toEqual({
      kind: "rule",
      rule: { type: "cidr", value: "10.0.0.0/8" },
      keep: false,
    });
    expect(parseEntry(P, "/mc/rules/ip/2001%3Adb8%3A%3A1", '{"version":1}')).toEqual({
      kind: "rule",
      rule: { type: "ip", value: "2001:db8::1" },
      keep: false,
    });
  });

  const aliases: [string, string, string][] = [
    ["a raw ',' in the ALPN list", "/mc/routes/public/h.test/a,b", "/mc/routes/public/h.test/a%2Cb"],
    ["lower-case hex", "/mc/routes/public/h.test/a%2cb", "/mc/routes/public/h.test/a%2Cb"],
    ["an encoded '.' in the hostname", "/mc/routes/public/h%2Etest", "/mc/routes/public/h.test"],
    ["an encoded letter in the listener", "/mc/routes/p%75blic/h.test", "/mc/routes/public/h.test"],
    ["a raw ':' in the listener", "/mc/routes/127.0.0.1:443/h.test", "/mc/routes/127.0.0.1%3A443/h.test"],
    ["a raw ':' in a listener key", "/mc/listeners/127.0.0.1:443", "/mc/listeners/127.0.0.1%3A443"],
    ["a raw ':' in an ip rule", "/mc/rules/ip/2001:db8::1", "/mc/rules/ip/2001%3Adb8%3A%3A1"],
  ];
  for (const [what, key, canonical] of aliases) {
    test(`${what}: another spelling of a key is invalid (put or delete), naming the canonical key`, () => {
      const value = key.includes("/listeners/") ? listenerValue(5) : key.includes("/rules/") ? '{"version":1}' : v;
      for (const val of [value, null]) {
        const e = parseEntry(P, key, val);
        expect(e).toMatchObject({ kind: "invalid", key });
        expect(e?.kind === "invalid" && e.reason).toContain(canonical.slice(P.length));
      }
    });
  }

  test("a route key of five parts or more, a listener or rule key with extra parts: invalid, not ignored", () => {
    for (const k of [
      "/mc/routes/public/h.test/a/b",
      "/mc/routes/public/h.test/acme-tls/1",
      "/mc/routes/public/h.test/a%2Cb/x/y",
      "/mc/routes/public",
    ]) {
      const e = parseEntry(P, k, v);
      expect([k, e?.kind]).toEqual([k, "invalid"]);
      expect(e?.kind === "invalid" && e.reason).toContain("routes/{listener}/{hostname}");
      expect([k, parseEntry(P, k, null)?.kind]).toEqual([k, "invalid"]);
    }
    expect(parseEntry(P, "/mc/listeners/a/b", listenerValue(1))).toMatchObject({ kind: "invalid" });
    expect(parseEntry(P, "/mc/rules/cidr/10.0.0.0/8", '{"version":1}')).toMatchObject({
      kind: "invalid",
      reason: expect.stringContaining("%2F"),
    });
    // What a newer release may add stays ignored: another top-level folder, another rule type.
    expect(parseEntry(P, "/mc/quotas/x", "{}")).toBeNull();
    expect(parseEntry(P, "/mc/rules/asn/64500", '{"version":1}')).toBeNull();
  });

  test("a prefix holding both spellings serves one route, from the canonical key, and reports the other", () => {
    const bad: [string, string][] = [];
    const s = stateFrom(
      P,
      [
        { key: "/mc/routes/public/h.test/a%2Cb", value: routeValue(alpnAB) },
        {
          key: "/mc/routes/public/h.test/a,b",
          value: routeValue({ ...alpnAB, backends: [{ addr: "127.0.0.1:8", weight: 1, backup: false }] }),
        },
      ],
      (k, why) => bad.push([k, why]),
    );
    const routes = s.listeners.get("public")!.routes;
    expect(routes.map((r) => [routeName(r), r.backends[0]!.addr])).toEqual([["h.test+a,b", "127.0.0.1:9"]]);
    expect(bad.map(([k]) => k)).toEqual(["/mc/routes/public/h.test/a,b"]);
  });
});
