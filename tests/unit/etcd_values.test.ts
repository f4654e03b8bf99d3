// etcd values pass the same validation as the config file and the admin API
// (routing/route.ts): one validator for every source.
import { describe, expect, test } from "bun:test";
import { PLAIN } from "../../src/routing/route";
import { parseEntry } from "../../src/store/etcd_layout";
import { encodeRoute as routeValue } from "../../src/store/route_codec";
import { v1RouteValue } from "../helpers/etcd";

const P = "/mc/";
const route = (over: Record<string, unknown>) => v1RouteValue("127.0.0.1:9001", over);

describe("etcd values pass the same validation as the config file and the admin API", () => {
  const bad: [string, string, string | null, RegExp][] = [
    ["an IP rule that is no address", `${P}rules/ip/zz%3Azz`, '{"version":1}', /not an IPv4 or IPv6 address/],
    ["a rule value not in canonical form", `${P}rules/ip/2001%3A0DB8%3A%3A1`, '{"version":1}', /canonical/],
    ["a country rule in lower case", `${P}rules/country/kp`, '{"version":1}', /country code/],
    [
      "weight 0",
      `${P}routes/public/app.example.com`,
      route({ backends: [{ addr: "127.0.0.1:1", weight: 0, backup: false }] }),
      /weight: 0 must be 1-256/,
    ],
    [
      'balance "random"',
      `${P}routes/public/app.example.com`,
      route({ balance: "random" }),
      /balance: "random" must be one of/,
    ],
    ["no backends", `${P}routes/public/app.example.com`, route({ backends: [] }), /at least one backend/],
    [
      "backends as a string",
      `${P}routes/public/app.example.com`,
      route({ backends: "127.0.0.1:1" }),
      /must be a list of backends/,
    ],
    [
      "40 backends",
      `${P}routes/public/app.example.com`,
      route({
        backends: Array.from({ length: 40 }, (_, i) => ({ addr: `127.0.0.1:${1000 + i}`, weight: 1, backup: false })),
      }),
      /40 backends; at most 31/,
    ],
    ["a value that is not JSON", `${P}routes/public/app.example.com`, "{not json", /not JSON/],
    [
      "a health-check timeout past 2^31 ms",
      `${P}routes/public/app.example.com`,
      route({ check: { timeoutMs: 2_160_000_000 } }),
      /health_check_timeout: 2160000000 ms is out of range/,
    ],
    [
      "retries 99",
      `${P}routes/public/app.example.com`,
      route({ retries: 99 }),
      /retries: 99 must be a whole number from 0 to 30/,
    ],
    ["a bad hostname in the key", `${P}routes/public/bad%20host`, route({}), /not a valid host name/],
    ["a key that is not URI-encoded", `${P}routes/public/%E0%A4%A`, route({}), /not URI-encoded/],
    [
      "max_connections 4294967301",
      `${P}listeners/public`,
      '{"version":1,"max_connections":4294967301}',
      /max_connections: 4294967301 must be 0 \(unlimited\) to 2147483647/,
    ],
    ["max_connections as a string", `${P}listeners/public`, '{"version":1,"max_connections":"5"}', /max_connections/],
    ["version 2", `${P}listeners/public`, '{"version":2,"max_connections":5}', /version 2/],
  ];
  for (const [what, key, value, why] of bad) {
    test(`refused: ${what}`, () => {
      const e = parseEntry(P, key, value);
      expect(e?.kind).toBe("invalid");
      expect((e as { reason: string }).reason).toMatch(why);
    });
  }

  test("good values still parse, and a deletion needs no value", () => {
    const r = {
      hostname: "app.example.com",
      ...PLAIN,
      backends: [{ addr: "127.0.0.1:9001", weight: 2, backup: false, state: "drain" as const }],
      balance: "least_connections" as const,
      healthCheck: "tcp" as const,
      check: { timeoutMs: 1500 },
      retries: 3,
      connectTimeoutMs: 250,
      sendProxyProtocol: "v2" as const,
    };
    const e = parseEntry(P, `${P}routes/public/app.example.com`, routeValue(r));
    expect(e).toEqual({
      kind: "route",
      listener: "public",
      route: { ...r, check: { intervalMs: undefined, timeoutMs: 1500, rise: undefined, fall: undefined } },
    });
    expect(parseEntry(P, `${P}rules/cidr/10.0.0.0%2F8`, '{"version":1}')).toEqual({
      kind: "rule",
      rule: { type: "cidr", value: "10.0.0.0/8" },
      keep: false,
    });
    expect(parseEntry(P, `${P}rules/ip/zz%3Azz`, null)?.kind).toBe("rule");
    expect(parseEntry(P, `${P}listeners/public`, '{"version":1,"max_connections":2147483647}')).toEqual({
      kind: "listener",
      name: "public",
      maxConnections: 2147483647,
    });
  });
});
