// JA4 known answers, derived from FoxIO's specification (technical_details/JA4.md)
// by hand: each part of each fingerprint is worked out below from the hello's
// bytes, then the hashes are the spec's own worked example.
import { describe, expect, test } from "bun:test";
import { parseClientHelloBody } from "../../src/sni/client_hello_body";
import { alpnChars, hash12, isGrease, ja4 } from "../../src/sni/ja4";
import { type Extension, alpnExtension, concat, sniExtension, u16 } from "../helpers/hello_builder";
import { prng } from "../helpers/prng";

const ext = (type: number, data: number[] | Uint8Array = []): Extension => ({
  type,
  data: data instanceof Uint8Array ? data : new Uint8Array(data),
});
const list16 = (vs: number[]) => concat(u16(vs.length * 2), ...vs.map(u16));

/** A ClientHello body with exactly these ciphers and extensions, in this order. */
function body(ciphers: number[], extensions: Extension[] | null, legacyVersion = 0x0303): Uint8Array {
  const parts: (Uint8Array | number[])[] = [
    u16(legacyVersion),
    new Uint8Array(32).fill(9),
    [32],
    new Uint8Array(32).fill(1),
    list16(ciphers),
    [1, 0],
  ];
  if (extensions !== null) {
    const exts = concat(...extensions.map((e) => concat(u16(e.type), u16(e.data.length), e.data)));
    parts.push(u16(exts.length), exts);
  }
  return concat(...parts);
}
const of = (b: Uint8Array) => ja4(b, 0, b.length);

// The spec's example hello: 15 ciphers, 16 extensions, ALPN h2, these signature algorithms.
const CIPHERS = [
  0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c, 0x009d, 0x002f,
  0x0035,
];
const SIGALGS = [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601];
const EXT_ORDER = [
  0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023, 0x0012, 0x002b, 0xff01, 0x000b,
  0x000a, 0x0015,
];

function exampleExtensions(opts: { grease?: boolean; alpn?: Extension | null; sni?: boolean } = {}): Extension[] {
  const out: Extension[] = [];
  if (opts.grease) out.push(ext(0x0a0a));
  for (const t of EXT_ORDER) {
    if (t === 0x0000) {
      if (opts.sni !== false) out.push(sniExtension("example.com"));
    } else if (t === 0x0010) {
      if (opts.alpn !== null) out.push(opts.alpn ?? alpnExtension("h2", "http/1.1"));
    } else if (t === 0x000d) out.push(ext(t, list16(opts.grease ? [0x1a1a, ...SIGALGS] : SIGALGS)));
    else if (t === 0x002b)
      out.push(
        ext(t, concat([opts.grease ? 6 : 4], ...(opts.grease ? [0x2a2a, 0x0304, 0x0303] : [0x0304, 0x0303]).map(u16))),
      );
    else out.push(ext(t, [0]));
  }
  if (opts.grease) out.push(ext(0xfafa, [0]));
  return out;
}

describe("JA4 (FoxIO JA4.md)", () => {
  test("the spec's worked hashes", () => {
    // "002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9 = 8daaf6152771"
    expect(hash12("002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9")).toBe("8daaf6152771");
    expect(
      hash12(
        "0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_0403,0804,0401,0503,0805,0501,0806,0601",
      ),
    ).toBe("e5627efa2ab1");
    expect(hash12("0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01")).toBe("6d807ffa2a79");
  });

  test("derivation 1: the spec's example hello → t13d1516h2_8daaf6152771_e5627efa2ab1", () => {
    // a: t (TCP), 13 (supported_versions holds 0x0304, the highest),
    //    d (server_name present), 15 ciphers, 16 extensions (SNI and ALPN counted),
    //    h2 (first ALPN value "h2": first "h", last "2").
    // b: the 15 ciphers sorted = the spec's list → 8daaf6152771.
    // c: the 14 extensions without 0000 and 0010, sorted, "_", the
    //    signature algorithms in order → e5627efa2ab1.
    expect(of(body(CIPHERS, exampleExtensions()))).toBe("t13d1516h2_8daaf6152771_e5627efa2ab1");
  });

  test("derivation 2: GREASE everywhere changes nothing", () => {
    // GREASE added as a cipher (0x0a0a, 0xdada), as two extensions (0x0a0a
    // first, 0xfafa last), in signature_algorithms (0x1a1a) and in
    // supported_versions (0x2a2a): every count, list and hash skips them.
    const b = body([0x0a0a, ...CIPHERS, 0xdada], exampleExtensions({ grease: true }));
    expect(of(b)).toBe("t13d1516h2_8daaf6152771_e5627efa2ab1");
    expect([0x0a0a, 0x1a1a, 0xfafa].every(isGrease)).toBe(true);
    expect([0x0a0b, 0x1a2a, 0x0000, 0x1301].some(isGrease)).toBe(false);
  });

  test("no SNI → i; no ALPN → 00; the c hash is the same (SNI and ALPN are left out of it)", () => {
    // 15 extensions without server_name, 14 without ALPN as well.
    expect(of(body(CIPHERS, exampleExtensions({ sni: false })))).toBe("t13i1515h2_8daaf6152771_e5627efa2ab1");
    expect(of(body(CIPHERS, exampleExtensions({ sni: false, alpn: null })))).toBe(
      "t13i151400_8daaf6152771_e5627efa2ab1",
    );
  });

  test("ALPN values: http/1.1 → h1; non-alphanumeric bytes → the hex form's first and last characters", () => {
    const enc = (s: string) => new TextEncoder().encode(s);
    const a = (bytes: number[]) => alpnChars(new Uint8Array(bytes), 0, bytes.length);
    expect(alpnChars(enc("http/1.1"), 0, 8)).toBe("h1");
    expect(alpnChars(enc("x"), 0, 1)).toBe("xx");
    // The spec's own examples.
    expect(a([0xab])).toBe("ab");
    expect(a([0xab, 0xcd])).toBe("ad");
    expect(a([0x30, 0xab])).toBe("3b");
    expect(a([0x30, 0x31, 0xab, 0xcd])).toBe("3d");
    expect(a([0x30, 0xab, 0xcd, 0x31])).toBe("01");
    // A non-ASCII first ALPN value in a hello (UTF-8 "é2": 0xc3 0xa9 0x32).
    const alpnBytes = concat(u16(4), [3, 0xc3, 0xa9, 0x32]);
    expect(of(body(CIPHERS, exampleExtensions({ alpn: ext(0x0010, alpnBytes) })))).toBe(
      "t13d1516c2_8daaf6152771_e5627efa2ab1",
    );
  });

  test("TLS 1.2 only: no supported_versions → the legacy version; no extensions at all → 000000000000", () => {
    const exts = exampleExtensions().filter((e) => e.type !== 0x002b);
    // 15 extensions; c loses 002b from the list.
    const c = hash12(
      "0005,000a,000b,000d,0012,0015,0017,001b,0023,002d,0033,4469,ff01_0403,0804,0401,0503,0805,0501,0806,0601",
    );
    expect(of(body(CIPHERS, exts))).toBe(`t12d1515h2_8daaf6152771_${c}`);
    expect(of(body([0xc02f, 0x009c], null))).toBe(`t12i020000_${hash12("009c,c02f")}_000000000000`);
    expect(of(body([0x0035], null, 0x0301))).toBe(`t10i010000_${hash12("0035")}_000000000000`);
    // Only SNI and ALPN: counted in a, nothing left for c.
    expect(of(body([0x1301], [sniExtension("a.example"), alpnExtension("h2")]))).toBe(
      `t12d0102h2_${hash12("1301")}_000000000000`,
    );
  });

  test("counts are capped at 99; QUIC is q", () => {
    const many = Array.from({ length: 120 }, (_, i) => 0x0100 + i);
    expect(of(body(many, null)).slice(0, 11)).toBe("t12i990000_");
    const b = body(CIPHERS, exampleExtensions());
    expect(ja4(b, 0, b.length, "q").startsWith("q13d1516h2_")).toBe(true);
  });

  test("the real hellos in ../shared/testdata: a fingerprint for each, the same for every parse, distinct per client library", async () => {
    const { helloFixtures } = await import("../helpers/fixtures");
    const seen = new Map<string, string>();
    const fixtures = helloFixtures();
    // helloFixtures() has said SKIP, naming what is missing.
    if (fixtures.length === 0) return;
    for (const f of fixtures) {
      // The record header (5) and handshake header (4) precede the body.
      const len = (f.bytes[6]! << 16) | (f.bytes[7]! << 8) | f.bytes[8]!;
      expect(parseClientHelloBody(f.bytes, 9, len).kind).not.toBe("reject");
      const fp = ja4(f.bytes, 9, len);
      expect(fp).toMatch(/^t(13|12)[di]\d{4}[0-9a-z]{2}_[0-9a-f]{12}_[0-9a-f]{12}$/);
      expect(ja4(f.bytes, 9, len)).toBe(fp);
      seen.set(f.file, fp);
    }
    expect(seen.get("openssl3-nosni.bin")?.[3]).toBe("i");
    expect(seen.get("openssl3-tls12.bin")?.slice(1, 3)).toBe("12");
    // curl's two hellos differ only in ALPN (h2 + http/1.1 against http/1.1): same b and c.
    const [curl, curl1] = [seen.get("curl.bin")!, seen.get("curl-http1.bin")!];
    expect(curl.slice(10)).toBe(curl1.slice(10));
    expect(curl.slice(8, 10)).toBe("h2");
    expect(curl1.slice(8, 10)).toBe("h1");
  });

  test("never throws on cut or garbage bodies", () => {
    const b = body([0x0a0a, ...CIPHERS], exampleExtensions({ grease: true }));
    for (let n = 0; n < b.length; n++) expect(typeof ja4(b, 0, n)).toBe("string");
    let x = 12345;
    for (let i = 0; i < 2000; i++) {
      const r = new Uint8Array(64 + (i % 400)).map(() => ((x = (x * 1103515245 + 12345) >>> 0) >>> 24) & 0xff);
      expect(typeof ja4(r, 0, r.length)).toBe("string");
    }
  });
});

test("50,000 random and truncated bodies: ja4 never throws, and gives a fingerprint or nothing", () => {
  const rnd = prng(99);
  for (let i = 0; i < 50_000; i++) {
    const b = Uint8Array.from({ length: Math.floor(rnd() * 600) }, () => Math.floor(rnd() * 256));
    const start = Math.floor(rnd() * 4);
    const fp = ja4(b, start, Math.max(0, b.length - start - Math.floor(rnd() * 3)), i % 2 === 0 ? "t" : "q");
    if (fp !== "") expect(fp).toMatch(/^[tq](?:1[0-3]|s[23]|d[1-3]|00)[di]\d{4}[0-9a-z]{2}_[0-9a-f]{12}_[0-9a-f]{12}$/);
  }
});
