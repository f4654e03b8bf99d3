import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { ipv6PrefixKey, parseAddressOrCidr, parseCidrRule, parseIpRule } from "../../src/firewall/address";
import { normaliseIp } from "../../src/net/ip";
import { CountryDatabase } from "../../src/firewall/country_database";
import { Firewall } from "../../src/firewall/firewall";
import { DEFAULT_ENTRIES, IPV4_TAG, RateLimiter } from "../../src/firewall/rate_limiter";
import { writeMmdb } from "../helpers/mmdb_writer";
import { tempDir } from "../helpers/proxy";

describe("address normalisation and rule parsing", () => {
  test("::ffff:a.b.c.d is IPv4", () => {
    expect(normaliseIp("::ffff:192.0.2.1")).toBe("192.0.2.1");
    expect(normaliseIp("::FFFF:10.0.0.1")).toBe("10.0.0.1");
    expect(normaliseIp("2001:db8::1")).toBe("2001:db8::1");
    expect(normaliseIp("127.0.0.1")).toBe("127.0.0.1");
    // NAT64 and IPv4-compatible forms are not IPv4.
    expect(normaliseIp("64:ff9b::10.0.0.1")).toBe("64:ff9b::10.0.0.1");
    expect(normaliseIp("::10.0.0.1")).toBe("::10.0.0.1");
  });
  test("IP rules", () => {
    expect(parseIpRule("::ffff:1.2.3.4")).toEqual({ ok: true, value: "1.2.3.4" });
    expect(parseIpRule("1.2.3")).toEqual({ ok: false, error: expect.stringContaining("1.2.3") });
  });
  test("CIDR rules must be canonical", () => {
    expect(parseCidrRule("10.0.0.0/8")).toEqual({
      ok: true,
      value: { address: "10.0.0.0", prefix: 8, family: "ipv4" },
    });
    expect(parseCidrRule("2001:db8::/32")).toEqual({
      ok: true,
      value: { address: "2001:db8::", prefix: 32, family: "ipv6" },
    });
    expect(parseCidrRule("0.0.0.0/0")).toEqual({ ok: true, value: { address: "0.0.0.0", prefix: 0, family: "ipv4" } });
    const bad = parseCidrRule("10.0.0.1/8");
    expect(!bad.ok && bad.error).toContain("10.0.0.0/8");
    const bad6 = parseCidrRule("2001:db8::1/32");
    expect(!bad6.ok && bad6.error).toContain("2001:db8::/32");
    for (const t of ["10.0.0.0", "10.0.0.0/33", "10.0.0.0/-1", "10.0.0.0/x", "300.0.0.0/8", "::/129"]) {
      expect(parseCidrRule(t).ok).toBe(false);
    }
  });

  // The cases where ip-cidr 4.0.2 goes wrong, each with the behaviour chosen here.
  test("NAT64 with an embedded IPv4 address is a valid IPv6 block (ip-cidr rejects it)", () => {
    expect(parseCidrRule("64:ff9b::1.2.3.4/128")).toEqual({
      ok: true,
      value: { address: "64:ff9b::102:304", prefix: 128, family: "ipv6" },
    });
    expect(parseCidrRule("64:ff9b::/96")).toEqual({
      ok: true,
      value: { address: "64:ff9b::", prefix: 96, family: "ipv6" },
    });
    expect(parseIpRule("64:ff9b::10.0.0.1")).toEqual({ ok: true, value: "64:ff9b::a00:1" });
  });
  test("a prefix with a leading zero is refused (ip-cidr accepts 10.0.0.0/08)", () => {
    expect(parseCidrRule("10.0.0.0/08")).toEqual({ ok: false, error: expect.stringContaining("leading zero") });
    expect(parseCidrRule("2001:db8::/032")).toEqual({ ok: false, error: expect.stringContaining("leading zero") });
  });
  test("an IPv4-mapped block is the IPv4 block it maps, since clients are matched as IPv4 (ip-cidr does this silently; here it is the rule)", () => {
    expect(parseCidrRule("::ffff:10.0.0.0/104")).toEqual({
      ok: true,
      value: { address: "10.0.0.0", prefix: 8, family: "ipv4" },
    });
    expect(parseCidrRule("::ffff:10.0.0.0/64")).toEqual({ ok: false, error: expect.stringContaining("96 or more") });
    expect(parseCidrRule("::ffff:10.0.0.1/104")).toEqual({ ok: false, error: expect.stringContaining("10.0.0.0/8") });
  });
  test("host bits, prefix bounds, zone ids, leading zeros in IPv4, canonical IPv6 text", () => {
    expect(parseCidrRule("2001:db8::1/32")).toEqual({ ok: false, error: expect.stringContaining("2001:db8::/32") });
    expect(parseCidrRule("0.0.0.0/0")).toEqual({ ok: true, value: { address: "0.0.0.0", prefix: 0, family: "ipv4" } });
    expect(parseCidrRule("::/0")).toEqual({ ok: true, value: { address: "::", prefix: 0, family: "ipv6" } });
    expect(parseCidrRule("10.0.0.0/33")).toEqual({ ok: false, error: expect.stringContaining("0-32") });
    expect(parseCidrRule("::/129")).toEqual({ ok: false, error: expect.stringContaining("0-128") });
    expect(parseIpRule("fe80::1%eth0")).toEqual({ ok: false, error: expect.stringContaining("zone") });
    expect(parseCidrRule("fe80::%eth0/64")).toEqual({ ok: false, error: expect.stringContaining("zone") });
    expect(parseIpRule("010.0.0.1")).toEqual({ ok: false, error: expect.any(String) });
    expect(parseIpRule("0x0a.0.0.1")).toEqual({ ok: false, error: expect.any(String) });
    expect(parseIpRule("2001:0DB8:0000::0001")).toEqual({ ok: true, value: "2001:db8::1" });
    expect(parseCidrRule("2001:DB8:0::/48")).toEqual({
      ok: true,
      value: { address: "2001:db8::", prefix: 48, family: "ipv6" },
    });
    expect(parseAddressOrCidr("192.0.2.7")).toEqual({ ok: true, value: "192.0.2.7/32" });
    expect(parseAddressOrCidr("::ffff:192.0.2.7")).toEqual({ ok: true, value: "192.0.2.7/32" });
    expect(parseAddressOrCidr("2001:db8::/32")).toEqual({ ok: true, value: "2001:db8::/32" });
  });
});

describe("Firewall verdicts", () => {
  const dir = tempDir();
  const geo = join(dir, "g.mmdb");
  writeFileSync(geo, writeMmdb([{ cidr: "203.0.113.0/24", record: { country: { iso_code: "KP" } } }]));
  const fw = new Firewall({
    rules: {
      blockedIps: ["192.0.2.1", "2001:db8::1"],
      blockedCidrs: ["198.51.100.0/24", "2001:db8:ff::/48"],
      blockedCountries: ["KP"],
      blockedJa4: [],
    },
    geoipDb: geo,
    rateLimit: 0,
    rateWindowMs: 1000,
  });
  test("in order: ip, cidr, country; others pass", () => {
    expect(fw.check("192.0.2.1", 0)).toBe("blocked_ip");
    expect(fw.check("2001:db8::1", 0)).toBe("blocked_ip");
    expect(fw.check("2001:0db8:0000::0001", 0)).toBe("blocked_ip");
    expect(fw.check("198.51.100.77", 0)).toBe("blocked_cidr");
    expect(fw.check("2001:db8:ff:1::5", 0)).toBe("blocked_cidr");
    expect(fw.check("203.0.113.9", 0)).toBe("blocked_country");
    expect(fw.check("192.0.2.2", 0)).toBeNull();
    expect(fw.check("2001:db8:fe::1", 0)).toBeNull();
  });
  test("a mapped address is checked as the IPv4 address once normalised", () => {
    expect(fw.check(normaliseIp("::ffff:198.51.100.1"), 0)).toBe("blocked_cidr");
  });
  test("replaceRules swaps the whole rule set", () => {
    const f2 = new Firewall({
      rules: { blockedIps: [], blockedCidrs: [], blockedCountries: [], blockedJa4: [] },
      geoipDb: null,
      rateLimit: 0,
      rateWindowMs: 1000,
    });
    expect(f2.check("10.1.1.1", 0)).toBeNull();
    f2.replaceRules({ blockedIps: ["10.1.1.1"], blockedCidrs: [], blockedCountries: [], blockedJa4: [] });
    expect(f2.check("10.1.1.1", 0)).toBe("blocked_ip");
  });
  test("a broken GeoIP file is refused before it replaces the database in use (the control plane reads and checks, then hands over the bytes)", () => {
    writeFileSync(geo, "broken");
    expect(() => CountryDatabase.fromBytes(CountryDatabase.read(geo), geo)).toThrow();
    expect(fw.check("203.0.113.9", 0)).toBe("blocked_country");
  });
});

describe("RateLimiter", () => {
  const a = [1, IPV4_TAG] as const;
  const b = [2, IPV4_TAG] as const;
  test("the (N+1)th in a window is refused; a later window allows again", () => {
    const r = new RateLimiter(3, 1000);
    const t0 = 10_000;
    expect([r.allow(...a, t0), r.allow(...a, t0 + 1), r.allow(...a, t0 + 2)]).toEqual([true, true, true]);
    expect(r.allow(...a, t0 + 3)).toBe(false);
    expect(r.allow(...b, t0 + 3)).toBe(true);
    // Sliding: halfway through the next window, half of the previous 3 still count.
    expect(r.allow(...a, t0 + 1500)).toBe(true);
    expect(r.allow(...a, t0 + 1501)).toBe(false);
    // Two windows later, nothing counts.
    expect(r.allow(...a, t0 + 3000)).toBe(true);
  });
  test("memory is a fixed table: many distinct clients never grow it; old ones age out", () => {
    const r = new RateLimiter(5, 1000, 4096);
    const bytes = r.bytes;
    for (let i = 0; i < 200_000; i++) r.allow(i, IPV4_TAG, 5000);
    expect(r.bytes).toBe(bytes);
    expect(r.tracked(5000)).toBeLessThanOrEqual(4096);
    expect(r.tracked(9000)).toBe(0);
  });
  test("two limiters over one shared table (two workers) count one client together", () => {
    const r1 = new RateLimiter(5, 10_000);
    const r2 = new RateLimiter(5, 10_000, undefined, r1.buffer);
    const verdicts = Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? r1 : r2).allow(...a, 1000 + i));
    expect(verdicts.filter(Boolean).length).toBe(5);
  });
  test("the default table is 2^18 clients in about 5.25 MiB", () => {
    const r = new RateLimiter(5, 1000);
    expect(r.bytes).toBe((1 << 16) * 4 + (1 << 18) * 5 * 4);
  });
});

describe("AddressTable", () => {
  test("agrees with node's BlockList on random IPv4 rules and addresses", () => {
    const { BlockList } = require("node:net") as typeof import("node:net");
    const { AddressTable } =
      require("../../src/firewall/address_table") as typeof import("../../src/firewall/address_table");
    const { prng, randInt } = require("../helpers/prng") as typeof import("../helpers/prng");
    const rand = prng(42);
    const quad = (n: number) => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
    const rules: string[] = [];
    const bl = new BlockList();
    for (let i = 0; i < 500; i++) {
      const prefix = randInt(rand, 0, 32) === 0 ? 0 : randInt(rand, 8, 32);
      const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
      const net = (Math.floor(rand() * 2 ** 32) & mask) >>> 0;
      if (prefix === 0) continue;
      rules.push(`${quad(net)}/${prefix}`);
      bl.addSubnet(quad(net), prefix, "ipv4");
    }
    const t = new AddressTable(rules);
    let hits = 0;
    for (let i = 0; i < 20_000; i++) {
      // Half the probes near a rule, half anywhere.
      const base =
        rand() < 0.5 ? rules[randInt(rand, 0, rules.length - 1)]!.split("/")[0]! : quad(Math.floor(rand() * 2 ** 32));
      const n = (base.split(".").reduce((a, o) => a * 256 + Number(o), 0) + randInt(rand, 0, 300)) % 2 ** 32;
      const ip = quad(n);
      const want = bl.check(ip, "ipv4");
      expect(t.has(ip)).toBe(want);
      if (want) hits++;
    }
    expect(hits).toBeGreaterThan(1000);
  });
  test("bare addresses, /0, IPv6, and strings that are not IPv4", () => {
    const { AddressTable, ipv4ToUint32 } =
      require("../../src/firewall/address_table") as typeof import("../../src/firewall/address_table");
    const t = new AddressTable(["192.0.2.1", "2001:db8::/32", "2001:db8:1::5"]);
    expect(t.has("192.0.2.1")).toBe(true);
    expect(t.has("192.0.2.2")).toBe(false);
    expect(t.has("2001:db8:ffff::1")).toBe(true);
    expect(t.has("2001:db9::1")).toBe(false);
    expect(new AddressTable(["0.0.0.0/0"]).has("8.8.8.8")).toBe(true);
    for (const bad of ["1.2.3", "1.2.3.4.5", "256.1.1.1", "1..2.3", "a.b.c.d", "", "1.2.3.4 "])
      expect(ipv4ToUint32(bad)).toBe(-1);
    expect(ipv4ToUint32("255.255.255.255")).toBe(2 ** 32 - 1);
  });
});

describe("IPv6 rate limiting per prefix (rate_limit_ipv6_prefix)", () => {
  const none = { blockedIps: [], blockedCidrs: [], blockedCountries: [], blockedJa4: [] };
  const hex = (n: number) => n.toString(16);

  test("the key is the /prefix network", () => {
    expect(ipv6PrefixKey("2001:db8:1:2:aaaa::1", 64)).toBe("20010db800010002/64");
    expect(ipv6PrefixKey("2001:db8:1:2:ffff:ffff:ffff:ffff", 64)).toBe("20010db800010002/64");
    expect(ipv6PrefixKey("2001:db8:1:2::1", 48)).toBe("20010db80001/48");
    expect(ipv6PrefixKey("2001:db8:1:ff::1", 56)).toBe("20010db8000100/56");
    expect(ipv6PrefixKey("2001:db8:1:2::1", 60)).toBe("20010db800010000/60");
    expect(ipv6PrefixKey("2001:db8::1", 128)).toBe("20010db8000000000000000000000001/128");
    expect(ipv6PrefixKey("not an address", 64)).toBe("not an address");
  });

  test("50 addresses of one /64 are one client; another /64 is another", () => {
    const fw = new Firewall({ rules: none, geoipDb: null, rateLimit: 5, rateWindowMs: 10_000 });
    const verdicts = Array.from({ length: 50 }, (_, i) =>
      fw.check(`2001:db8:0:1:${hex(i + 1)}::${hex(i * 7 + 1)}`, 1000),
    );
    expect(verdicts.filter((v) => v === null).length).toBe(5);
    expect(verdicts.filter((v) => v === "rate_limited").length).toBe(45);
    expect(fw.check("2001:db8:0:2::1", 1000)).toBeNull();
    expect(fw.rateTracked).toBe(2);
  });

  test("with prefix 128 every address is its own client", () => {
    const fw = new Firewall({
      rules: none,
      geoipDb: null,
      rateLimit: 5,
      rateWindowMs: 10_000,
      rateLimitIpv6Prefix: 128,
    });
    const verdicts = Array.from({ length: 50 }, (_, i) => fw.check(`2001:db8:0:1::${hex(i + 1)}`, 1000));
    expect(verdicts.every((v) => v === null)).toBe(true);
  });

  test("memory stays bounded under 1,000,000 distinct IPv6 clients", () => {
    const fw = new Firewall({ rules: none, geoipDb: null, rateLimit: 5, rateWindowMs: 60_000 });
    Bun.gc(true);
    const heap0 = process.memoryUsage().heapUsed;
    for (let i = 0; i < 1_000_000; i++) fw.check(`2001:${hex(i >>> 16)}:${hex(i & 0xffff)}:1::1`, 1000);
    expect(fw.rateTracked).toBeLessThanOrEqual(DEFAULT_ENTRIES);
    Bun.gc(true);
    const grown = process.memoryUsage().heapUsed - heap0;
    // docs/SECURITY.md "Rate limiting": a fixed shared table (5.25 MiB, outside the JS heap);
    // the heap does not grow with clients.
    expect(grown).toBeLessThan(8 * 1024 * 1024);
    console.log(
      `rate limiter: ${fw.rateTracked} entries after 1,000,000 IPv6 clients, heap +${(grown / 1048576).toFixed(1)} MiB (${Math.round(grown / fw.rateTracked)} bytes/entry)`,
    );
  });
});
