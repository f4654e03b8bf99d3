// The destination guard (src/dns/destination_guard.ts, docs/SECURITY.md "Destination guard"):
// the built-in refusals of a templated pool, IPv4-mapped and NAT64 forms, the proxy's own
// listeners, allow/deny precedence, and the explicit lists alone for a fixed name.
import { describe, expect, test } from "bun:test";
import { DestinationGuard, type GuardSpec } from "../../src/dns/destination_guard";

function guard(spec: Partial<GuardSpec> = {}): DestinationGuard {
  return new DestinationGuard({ allow: [], deny: [], defaults: true, own: [], localIps: [], ...spec });
}

const REFUSED = [
  "127.0.0.1",
  "127.255.255.254",
  "::1",
  "0.0.0.0",
  "0.1.2.3",
  "::",
  "169.254.169.254",
  "169.254.0.1",
  "fe80::1",
  "febf::1",
  "224.0.0.1",
  "239.255.255.250",
  "ff02::1",
  "255.255.255.255",
  "240.0.0.1",
  "10.1.2.3",
  "172.16.0.1",
  "172.31.255.255",
  "192.168.1.1",
  "100.64.0.1",
  // Special-purpose blocks and IPv6 forms that carry or reach an IPv4 address or a retired scope.
  "192.0.0.1",
  "198.18.0.1",
  "198.19.255.255",
  "::7f00:1",
  "::127.0.0.1",
  "::ffff:0:7f00:1",
  "64:ff9b:1::7f00:1",
  "2002:7f00:1::",
  "2001:0:4136:e378::1",
  "fec0::1",
  "100::1",
  "100.127.255.255",
  "fc00::1",
  "fd12:3456::1",
];
const MAPPED = ["::ffff:127.0.0.1", "::ffff:7f00:1", "::ffff:169.254.169.254", "::ffff:a01:203", "64:ff9b::a9fe:a9fe"];
const PUBLIC = [
  "192.0.2.1",
  "203.0.113.1",
  "198.20.0.1",
  "8.8.8.8",
  "172.32.0.1",
  "100.128.0.1",
  "2001:db8::1",
  "::ffff:8.8.8.8",
];

describe("templated pool (built-in refusals)", () => {
  test("every default range is refused", () => {
    const g = guard();
    for (const ip of REFUSED) expect({ ip, ok: g.permits(ip, 443) }).toEqual({ ip, ok: false });
  });
  test("IPv4-mapped and NAT64 forms are refused as the address they map", () => {
    const g = guard();
    for (const ip of MAPPED) expect({ ip, ok: g.permits(ip, 443) }).toEqual({ ip, ok: false });
  });
  test("public addresses pass", () => {
    const g = guard();
    for (const ip of PUBLIC) expect({ ip, ok: g.permits(ip, 443) }).toEqual({ ip, ok: true });
  });
  test("text that is not an address is refused", () => {
    expect(guard().permits("svc.test", 443)).toBe(false);
    expect(guard({ defaults: false }).permits("svc.test", 443)).toBe(false);
  });
  test("allow_destinations lifts a built-in refusal, for what it lists only", () => {
    const g = guard({ allow: ["10.0.0.0/8", "127.0.0.1/32", "::1/128", "169.254.169.254/32"] });
    for (const ip of ["10.1.2.3", "127.0.0.1", "::1", "::ffff:10.9.9.9", "169.254.169.254"])
      expect({ ip, ok: g.permits(ip, 443) }).toEqual({ ip, ok: true });
    for (const ip of ["127.0.0.2", "192.168.1.1", "169.254.169.253"])
      expect({ ip, ok: g.permits(ip, 443) }).toEqual({ ip, ok: false });
  });
  test("deny_destinations wins over allow_destinations and over a public address", () => {
    const g = guard({ allow: ["10.0.0.0/8"], deny: ["10.1.0.0/16", "198.51.100.0/24"] });
    expect(g.permits("10.2.0.1", 443)).toBe(true);
    expect(g.permits("10.1.2.3", 443)).toBe(false);
    expect(g.permits("198.51.100.7", 443)).toBe(false);
    expect(g.permits("::ffff:198.51.100.7", 443)).toBe(false);
  });
  test("the proxy's own listeners are refused even when allowed, on their port only", () => {
    const g = guard({ allow: ["127.0.0.0/8", "10.0.0.0/8"], own: [{ ip: "127.0.0.1", port: 8443 }] });
    expect(g.permits("127.0.0.1", 8443)).toBe(false);
    expect(g.permits("::ffff:127.0.0.1", 8443)).toBe(false);
    expect(g.permits("127.0.0.1", 9443)).toBe(true);
  });
  test("a wildcard listener covers every local address on its port", () => {
    const localIps = ["127.0.0.1", "10.0.0.5", "2001:db8::5"];
    const v4 = guard({ allow: ["10.0.0.0/8"], own: [{ ip: "0.0.0.0", port: 443 }], localIps });
    expect(v4.permits("10.0.0.5", 443)).toBe(false);
    expect(v4.permits("10.0.0.6", 443)).toBe(true);
    expect(v4.permits("10.0.0.5", 444)).toBe(true);
    expect(v4.permits("2001:db8::5", 443)).toBe(true);
    const v6 = guard({ own: [{ ip: "::", port: 443 }], localIps });
    expect(v6.permits("2001:db8::5", 443)).toBe(false);
    expect(v6.permits("2001:db8::6", 443)).toBe(true);
  });
  test("a wildcard listener also answers on every loopback address and the unspecified one, even where allowed", () => {
    // Linux routes all of 127.0.0.0/8 to the host: a wildcard listener on :443 is reached through 127.0.0.5 too.
    const localIps = ["127.0.0.1", "10.0.0.5"];
    const allowAll = ["127.0.0.0/8", "::1/128", "0.0.0.0/8", "::/128"];
    for (const wild of ["0.0.0.0", "::"]) {
      const g = guard({ allow: allowAll, own: [{ ip: wild, port: 443 }], localIps });
      for (const ip of ["127.0.0.5", "127.255.0.1", "::ffff:127.0.0.9", "::1", "0.0.0.0", "::"])
        expect({ wild, ip, ok: g.permits(ip, 443) }).toEqual({ wild, ip, ok: false });
      expect(g.permits("127.0.0.5", 444)).toBe(true);
    }
    // A listener on one address is reached on that address only.
    const one = guard({ allow: allowAll, own: [{ ip: "127.0.0.1", port: 443 }], localIps });
    expect(one.permits("127.0.0.5", 443)).toBe(true);
  });
});

describe("fixed name (only the explicit lists)", () => {
  test("nothing built in: loopback, metadata, private and own listeners pass", () => {
    const g = guard({ defaults: false, own: [{ ip: "127.0.0.1", port: 8443 }] });
    for (const ip of ["127.0.0.1", "169.254.169.254", "::1", "10.1.2.3"]) expect(g.permits(ip, 8443)).toBe(true);
    expect(g.active).toBe(false);
  });
  test("deny_destinations applies", () => {
    const g = guard({ defaults: false, deny: ["127.0.0.0/8", "::1/128"] });
    expect(g.active).toBe(true);
    expect(g.permits("127.0.0.1", 443)).toBe(false);
    expect(g.permits("::ffff:127.0.0.9", 443)).toBe(false);
    expect(g.permits("::1", 443)).toBe(false);
    expect(g.permits("10.1.2.3", 443)).toBe(true);
  });
});
