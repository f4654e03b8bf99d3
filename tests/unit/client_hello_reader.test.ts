import { describe, expect, test } from "bun:test";
import { MORE } from "../../src/net/reader";
import { ClientHelloReader } from "../../src/sni/client_hello_reader";
import type { HelloResult } from "../../src/sni/hello_result";
import { helloFixtures } from "../helpers/fixtures";
import {
  alpnExtension,
  clientHelloBody,
  concat,
  handshake,
  helloFor,
  paddingExtension,
  records,
  sniExtension,
  u16,
} from "../helpers/hello_builder";
import { prng, randInt } from "../helpers/prng";

function readWhole(bytes: Uint8Array, max?: number): HelloResult {
  return new ClientHelloReader(max).feed(bytes);
}

function readInChunks(bytes: Uint8Array, sizes: () => number, max?: number): HelloResult {
  const r = new ClientHelloReader(max);
  let out: HelloResult = MORE;
  for (let o = 0; o < bytes.length; ) {
    const n = Math.max(1, sizes());
    out = r.feed(bytes.subarray(o, o + n));
    o += n;
    if (out.kind !== "more") break;
  }
  return out;
}

function sniOf(r: HelloResult): string | null | undefined {
  if (r.kind === "more") return undefined;
  if (r.kind === "done") return r.value.hostname;
  // Every refusal says why, for the debug log.
  expect(r.reason.length).toBeGreaterThan(0);
  return `reject:${r.outcome}`;
}

describe("real ClientHellos from ../shared/testdata/hellos", () => {
  const fixtures = helloFixtures();
  for (const f of fixtures) {
    test(`${f.file} → ${f.sni ?? "no SNI"}`, () => {
      expect(sniOf(readWhole(f.bytes))).toBe(f.sni);
      expect(sniOf(ClientHelloReader.readWhole(f.bytes))).toBe(f.sni);
      expect(sniOf(readInChunks(f.bytes, () => 1))).toBe(f.sni);
      const rand = prng(f.bytes.length);
      for (let i = 0; i < 200; i++) {
        expect(sniOf(readInChunks(f.bytes, () => randInt(rand, 1, 64)))).toBe(f.sni);
      }
    });
  }
  test("the fixtures include real ALPN lists", () => {
    const curl = fixtures.find((f) => f.file === "curl.bin");
    if (curl === undefined) return;
    const r = readWhole(curl.bytes);
    expect(r.kind).toBe("done");
    if (r.kind === "done") expect(r.value.alpn).toContain("http/1.1");
  });
});

describe("synthetic hellos that must be accepted", () => {
  test("single record, ALPN extracted", () => {
    const r = readWhole(helloFor("alpha.example.com", ["h2", "http/1.1"]));
    expect(r).toMatchObject({
      kind: "done",
      value: { hostname: "alpha.example.com", alpn: ["h2", "http/1.1"], start: 9 },
    });
  });
  test("split over 3 records", () => {
    const hs = handshake(clientHelloBody([sniExtension("three.example.com"), paddingExtension(100)]));
    const bytes = records(hs, Math.ceil(hs.length / 3));
    expect(bytes[0]).toBe(22);
    expect(sniOf(readWhole(bytes))).toBe("three.example.com");
  });
  test("1-byte records, fed whole and byte by byte", () => {
    const hs = handshake(clientHelloBody([sniExtension("tiny.example.com")]));
    const bytes = records(hs, 1);
    expect(bytes.length).toBe(hs.length * 6);
    expect(sniOf(readWhole(bytes))).toBe("tiny.example.com");
    expect(sniOf(readInChunks(bytes, () => 1))).toBe("tiny.example.com");
  });
  test("a 20 KB hello over 2 records", () => {
    const hs = handshake(clientHelloBody([paddingExtension(20000), sniExtension("big.example.com")]));
    expect(hs.length).toBeGreaterThan(20000);
    const bytes = records(hs, 16384);
    expect(sniOf(readWhole(bytes))).toBe("big.example.com");
    expect(sniOf(readInChunks(bytes, () => 1000))).toBe("big.example.com");
  });
  test("SNI after a 9 KB extension", () => {
    const bytes = helloForExts([paddingExtension(9 * 1024), sniExtension("late.example.com")]);
    expect(sniOf(readWhole(bytes))).toBe("late.example.com");
    expect(sniOf(readInChunks(bytes, () => 7))).toBe("late.example.com");
  });
  test("trailing dot is stripped once", () => {
    expect(sniOf(readWhole(helloFor("dot.example.com.")))).toBe("dot.example.com");
    expect(sniOf(readWhole(helloFor("dot.example.com..")))).toBe("reject:malformed");
  });
  test("upper case is folded", () => {
    expect(sniOf(readWhole(helloFor("MiXeD.Example.COM")))).toBe("mixed.example.com");
  });
  test("no server_name extension → no_sni, still with ALPN", () => {
    const r = readWhole(helloForExts([alpnExtension("h2")]));
    expect(r).toMatchObject({ kind: "done", value: { hostname: null, alpn: ["h2"], start: 9 } });
  });
  test("a TLS 1.2 hello with no extensions at all → no_sni", () => {
    expect(sniOf(readWhole(records(handshake(clientHelloBody(null)))))).toBeNull();
  });
  test("bytes after the hello do not change the outcome", () => {
    const bytes = concat(helloFor("after.example.com"), [20, 3, 3, 0, 1, 1], new Uint8Array(100).fill(0x17));
    expect(sniOf(readWhole(bytes))).toBe("after.example.com");
  });
  test("unknown name types are skipped; a 253-byte name is accepted", () => {
    const other = concat([1], u16(3), [0x61, 0x62, 0x63]);
    const hostEntry = concat([0], u16(11), new TextEncoder().encode("x.example.c"));
    const list = concat(other, hostEntry);
    const ext = { type: 0, data: concat(u16(list.length), list) };
    expect(sniOf(readWhole(helloForExts([ext])))).toBe("x.example.c");
    const long = `${"a".repeat(63)}.`.repeat(3) + "a".repeat(61);
    expect(long.length).toBe(253);
    expect(sniOf(readWhole(helloFor(long)))).toBe(long);
  });
  test("a hello exactly at the cap is read; one byte over is too_large", () => {
    const bytes = helloForExts([sniExtension("cap.example.com"), paddingExtension(1000)]);
    const hsLen = bytes.length - 5;
    expect(sniOf(readWhole(bytes, hsLen))).toBe("cap.example.com");
    expect(sniOf(readWhole(bytes, hsLen - 1))).toBe("reject:too_large");
  });
});

function helloForExts(exts: ReturnType<typeof sniExtension>[]): Uint8Array {
  return records(handshake(clientHelloBody(exts)));
}

describe("each reject class", () => {
  const enc = new TextEncoder();
  const cases: [string, Uint8Array, string][] = [
    ["HTTP request", enc.encode("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"), "reject:not_tls"],
    ["SSLv2 hello", new Uint8Array([0x80, 0x2e, 0x01, 0x00, 0x02, 0x00, 0x15, 0x00, 0x00]), "reject:not_tls"],
    ["garbage", new Uint8Array([0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3]), "reject:not_tls"],
    ["record version not 3.x", new Uint8Array([22, 2, 0, 0, 10]), "reject:not_tls"],
    ["non-handshake first record (alert)", records(handshake(clientHelloBody([])), 16384, 21), "reject:not_tls"],
    [
      "non-handshake second record",
      concat(records(handshake(clientHelloBody([sniExtension("a.b")])).subarray(0, 10), 16384), [23, 3, 3, 0, 1, 0]),
      "reject:malformed",
    ],
    ["ServerHello type", records(handshake(clientHelloBody([sniExtension("a.example")]), 2)), "reject:malformed"],
    ["zero-length record", new Uint8Array([22, 3, 1, 0, 0]), "reject:malformed"],
    ["record over 18432 bytes", new Uint8Array([22, 3, 1, 0x48, 0x01]), "reject:malformed"],
    ["session id over 32", records(handshake(clientHelloBody([], { sessionId: 33 }))), "reject:malformed"],
    ["truncated extensions vector", truncatedExtensions(), "reject:malformed"],
    ["extension length past the end", extensionPastEnd(), "reject:malformed"],
    ["truncated server_name list", badSni(concat(u16(10), [0], u16(3), [0x61])), "reject:malformed"],
    [
      "duplicate extension",
      helloForExts([paddingExtension(4, 99), paddingExtension(4, 99), sniExtension("dup.example")]),
      "reject:malformed",
    ],
    ["two host_names", helloForExts([sniExtension("one.example", "two.example")]), "reject:malformed"],
    ["empty name", helloForExts([sniExtension("")]), "reject:malformed"],
    ["only a dot", helloForExts([sniExtension(".")]), "reject:malformed"],
    ["NUL in name", helloForExts([sniExtension(new Uint8Array([0x61, 0x00, 0x62]))]), "reject:malformed"],
    ["space in name", helloForExts([sniExtension("a b.example")]), "reject:malformed"],
    ["name over 253 bytes", helloForExts([sniExtension("a".repeat(254))]), "reject:malformed"],
    ["empty server_name extension", helloForExts([{ type: 0, data: new Uint8Array(0) }]), "reject:malformed"],
    ["empty ALPN protocol", helloForExts([{ type: 16, data: concat(u16(1), [0]) }]), "reject:malformed"],
    ["declared size over the cap", concat([22, 3, 1], u16(4), [1, 0x01, 0x00, 0x01]), "reject:too_large"],
  ];
  for (const [name, bytes, want] of cases) {
    test(name, () => {
      expect(sniOf(readWhole(bytes))).toBe(want);
      expect(sniOf(readInChunks(bytes, () => 1))).toBe(want);
    });
  }
  test("too_large is decided from the header alone, before the body arrives", () => {
    const r = new ClientHelloReader(65536);
    expect(r.feed(new Uint8Array([22, 3, 1, 0x40, 0x00, 1, 0x01, 0x00, 0x01]))).toEqual({
      kind: "reject",
      outcome: "too_large",
      reason: "a ClientHello over max_hello_bytes",
    });
  });
  test("an incomplete hello yields more, the one shared value, and no outcome yet", () => {
    const bytes = helloFor("wait.example.com");
    const r = new ClientHelloReader();
    expect(r.feed(bytes.subarray(0, bytes.length - 2))).toBe(MORE);
    expect(r.feed(bytes.subarray(bytes.length - 2, bytes.length - 1))).toBe(MORE);
    expect(sniOf(r.feed(bytes.subarray(bytes.length - 1)))).toBe("wait.example.com");
    // The outcome is sticky.
    expect(sniOf(r.feed(new Uint8Array([0xff])))).toBe("wait.example.com");
  });
});

describe("the reader contract (net/reader.ts)", () => {
  test("a refusal whose reason is fixed is one shared value, not made per connection", () => {
    const http = new TextEncoder().encode("GET / HTTP/1.1\r\n");
    const a = readWhole(http);
    expect(a).toEqual({ kind: "reject", outcome: "not_tls", reason: "the first bytes are not a TLS handshake record" });
    expect(readWhole(http)).toBe(a);
    const dup = helloForExts([paddingExtension(4, 99), paddingExtension(4, 99)]);
    expect(readWhole(dup)).toMatchObject({
      kind: "reject",
      outcome: "malformed",
      reason: "an extension type appears twice",
    });
    expect(readWhole(dup)).toBe(ClientHelloReader.readWhole(dup));
  });
  test("readWhole answers more when its chunk alone does not settle it; the reader then gives the answer", () => {
    const bytes = helloFor("later.example.com");
    expect(ClientHelloReader.readWhole(bytes.subarray(0, 20))).toBe(MORE);
    expect(ClientHelloReader.readWhole(new Uint8Array([0x47, 0x45, 0x54, 0x20, 0x2f, 0x20, 0x48, 0x54, 0x54]))).toBe(
      MORE,
    );
    expect(sniOf(readInChunks(bytes, () => 20))).toBe("later.example.com");
  });
});

function truncatedExtensions(): Uint8Array {
  const body = clientHelloBody([sniExtension("t.example")]);
  // Claim 3 more bytes of extensions than are present.
  const cut = body.slice();
  const extOff = 2 + 32 + 1 + 32 + 2 + 4 + 2;
  const declared = (cut[extOff]! << 8) | cut[extOff + 1]!;
  cut[extOff] = ((declared + 3) >> 8) & 0xff;
  cut[extOff + 1] = (declared + 3) & 0xff;
  return records(handshake(cut));
}

function extensionPastEnd(): Uint8Array {
  // One extension whose own length runs past the vector.
  const ext = concat(u16(0), u16(200), [0, 5, 0, 0, 2, 0x61, 0x62]);
  const body = concat(clientHelloBody(null), u16(ext.length), ext);
  return records(handshake(body));
}

function badSni(data: Uint8Array): Uint8Array {
  return helloForExts([{ type: 0, data }]);
}

describe("empty labels", () => {
  for (const name of [".lead.example", "a..b.example", "x.example.."]) {
    test(JSON.stringify(name), () => expect(sniOf(readWhole(helloFor(name)))).toBe("reject:malformed"));
  }
});

describe("the ClientHello's end in the stream (what a retry may replay)", () => {
  test("split at every offset, with data after it: the end is the hello record's end", () => {
    const hello = records(handshake(clientHelloBody([sniExtension("app.example.com")])), 100);
    const data = new Uint8Array([23, 3, 3, 0, 5, 1, 2, 3, 4, 5]);
    const stream = concat(hello, data);
    for (let cut = 1; cut < stream.length; cut++) {
      const r = new ClientHelloReader();
      let out = r.feed(stream.subarray(0, cut));
      if (out.kind === "more") out = r.feed(stream.subarray(cut));
      expect(out).toMatchObject({ kind: "done", value: { hostname: "app.example.com" } });
      expect(r.helloEnd).toBe(hello.length);
    }
    const whole = helloFor("app.example.com");
    expect(ClientHelloReader.wholeEnd(concat(whole, data))).toBe(whole.length);
  });
});
