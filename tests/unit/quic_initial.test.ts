// The QUIC Initial reader: the RFCs' published packets, hellos split across
// datagrams, coalesced, reordered and repeated, and fuzzed datagrams.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { CryptoStream } from "../../src/quic/crypto_stream";
import { QuicHelloReader } from "../../src/quic/hello_reader";
import { QUIC_V1, QUIC_V2, clientInitialKeys } from "../../src/quic/initial_keys";
import { readPacket } from "../../src/quic/packet";
import { alpnExtension, clientHelloBody, handshake, paddingExtension, sniExtension } from "../helpers/hello_builder";
import { cryptoFrame, padDatagram, sealInitial } from "../helpers/quic";
import { prng } from "../helpers/prng";

const FIX = join(import.meta.dir, "../fixtures/quic");
const hex = (name: string) => Uint8Array.from(Buffer.from(readFileSync(join(FIX, name), "utf8").trim(), "hex"));
const h = (b: Uint8Array) => Buffer.from(b).toString("hex");
const DCID = Uint8Array.from(Buffer.from("8394c8f03e515708", "hex"));

describe("Initial keys (RFC 9001 Appendix A.1, RFC 9369 Appendix A.1)", () => {
  test("QUIC v1", () => {
    const k = clientInitialKeys(QUIC_V1, DCID)!;
    expect(h(k.secret)).toBe("c00cf151ca5be075ed0ebfb5c80323c42d6b7db67881289af4008f1f6c357aea");
    expect(h(k.key)).toBe("1f369613dd76d5467730efcbe3b1a22d");
    expect(h(k.iv)).toBe("fa044b2f42a3fd3b46fb255c");
    expect(h(k.hp)).toBe("9f50449e04a0e810283a1e9933adedd2");
  });
  test("QUIC v2", () => {
    const k = clientInitialKeys(QUIC_V2, DCID)!;
    expect(h(k.secret)).toBe("14ec9d6eb9fd7af83bf5a668bc17a7e283766aade7ecd0891f70f9ff7f4bf47b");
    expect(h(k.key)).toBe("8b1a0bc121284290a29e0971b5cd045d");
    expect(h(k.iv)).toBe("91f73e2351d8fa91660e909f");
    expect(h(k.hp)).toBe("45b95e15235d6f45a6b19cbcb0294ba9");
  });
  test("another version has no keys here", () => {
    expect(clientInitialKeys(0xff00001d, DCID)).toBeNull();
  });
});

describe("the published client Initial packets (RFC 9001 A.2, RFC 9369 A.2)", () => {
  for (const [name, version] of [
    ["rfc9001-a2-client-initial.hex", QUIC_V1],
    ["rfc9369-a2-client-initial.hex", QUIC_V2],
  ] as const) {
    test(`${name}: decrypts to the published CRYPTO frame plus PADDING, and reads as example.com`, () => {
      const d = hex(name);
      const before = h(d);
      const p = readPacket(d, 0);
      expect(p.kind).toBe("initial");
      if (p.kind !== "initial") return;
      expect(p.version).toBe(version);
      expect(h(p.dcid)).toBe("8394c8f03e515708");
      expect(p.payload.length).toBe(1162);
      const frame = hex("rfc9001-a2-crypto-frame.hex");
      expect(h(p.payload.subarray(0, frame.length))).toBe(h(frame));
      expect(p.payload.subarray(frame.length).every((b) => b === 0)).toBe(true);
      expect(h(d)).toBe(before); // the datagram is never changed
      const r = new QuicHelloReader(65536).feed(d);
      expect(r.kind).toBe("hello");
      if (r.kind !== "hello") return;
      expect(r.hello).toMatchObject({ kind: "hostname", hostname: "example.com", alpn: ["alpn"] });
      expect(r.version).toBe(version);
    });
  }
  test("one flipped ciphertext bit: the Initial does not authenticate", () => {
    const d = hex("rfc9001-a2-client-initial.hex");
    d[100]! ^= 1;
    expect(readPacket(d, 0)).toMatchObject({ kind: "bad", reason: "Initial does not decrypt" });
    expect(new QuicHelloReader(65536).feed(d)).toMatchObject({ kind: "reject", outcome: "not_quic" });
  });
});

/** A ClientHello handshake message of about `size` bytes (a post-quantum key share makes ~1.8 KB). */
function bigHello(name: string, size: number): Uint8Array {
  const exts = [sniExtension(name), alpnExtension("h3"), paddingExtension(size)];
  return handshake(clientHelloBody(exts));
}

describe("a hello over several Initial packets", () => {
  const dcid = Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]);
  const hello = bigHello("app.example.com", 2400);
  const cut = 1000;
  const parts = [hello.subarray(0, cut), hello.subarray(cut)];
  const dgram = (pn: number, off: number, data: Uint8Array, version = QUIC_V1) => padDatagram(sealInitial({ version, dcid, pn, frames: cryptoFrame(off, data) }));

  for (const version of [QUIC_V1, QUIC_V2]) {
    test(`two datagrams, in order and reversed (v${version === QUIC_V1 ? 1 : 2})`, () => {
      for (const order of [
        [0, 1],
        [1, 0],
      ]) {
        const r = new QuicHelloReader(65536);
        const ds = [dgram(0, 0, parts[0]!, version), dgram(1, cut, parts[1]!, version)];
        // Either half alone decrypts and leaves the hello incomplete.
        expect(r.feed(ds[order[0]!]!).kind).toBe("more");
        const second = r.feed(ds[order[1]!]!);
        expect(second).toMatchObject({ kind: "hello", hello: { kind: "hostname", hostname: "app.example.com", alpn: ["h3"] } });
      }
    });
  }

  test("repeated and overlapping CRYPTO data, and junk datagrams after the first, change nothing", () => {
    const r = new QuicHelloReader(65536);
    expect(r.feed(dgram(0, 0, parts[0]!)).kind).toBe("more");
    expect(r.feed(dgram(1, 0, parts[0]!)).kind).toBe("more");
    expect(r.feed(new Uint8Array(1200).fill(0x41)).kind).toBe("more");
    expect(r.feed(dgram(2, cut - 100, hello.subarray(cut - 100, cut + 50))).kind).toBe("more");
    expect(r.feed(dgram(3, cut, parts[1]!)).kind).toBe("hello");
  });

  test("two Initials coalesced in one datagram (RFC 9000 §12.2)", () => {
    const a = sealInitial({ dcid, pn: 0, frames: cryptoFrame(0, hello.subarray(0, 600)) });
    const b = sealInitial({ dcid, pn: 1, frames: cryptoFrame(600, hello.subarray(600, 1200)) });
    const c = sealInitial({ dcid, pn: 2, frames: cryptoFrame(1200, hello.subarray(1200)) });
    const one = new Uint8Array(a.length + b.length);
    one.set(a);
    one.set(b, a.length);
    const r = new QuicHelloReader(65536);
    expect(r.feed(padDatagram(one)).kind).toBe("more");
    expect(r.feed(padDatagram(c)).kind).toBe("hello");
  });

  test("bounds: a first datagram under 1200 bytes, too many datagrams, a hello over the cap, not QUIC, another version", () => {
    expect(new QuicHelloReader(65536).feed(sealInitial({ dcid, pn: 0, frames: cryptoFrame(0, parts[0]!) }))).toMatchObject({ kind: "reject", outcome: "not_quic" });
    const r = new QuicHelloReader(65536, 3);
    for (let i = 0; i < 3; i++) expect(r.feed(dgram(i, 0, parts[0]!)).kind).toBe("more");
    expect(r.feed(dgram(3, 0, parts[0]!))).toMatchObject({ kind: "reject", outcome: "too_large" });
    expect(new QuicHelloReader(2000).feed(dgram(0, 0, parts[0]!))).toMatchObject({ kind: "reject", outcome: "too_large" });
    expect(new QuicHelloReader(65536).feed(new Uint8Array(1200).fill(0x16))).toMatchObject({ kind: "reject", outcome: "not_quic" });
    const v = dgram(0, 0, parts[0]!);
    v.set([0xff, 0x00, 0x00, 0x1d], 1);
    expect(new QuicHelloReader(65536).feed(v)).toMatchObject({ kind: "reject", outcome: "quic_version" });
  });
});

describe("CryptoStream", () => {
  test("ranges merge in any order; the contiguous prefix grows only without a gap", () => {
    const s = new CryptoStream(100);
    expect(s.add(10, new Uint8Array(5).fill(2))).toBe(true);
    expect(s.contiguous).toBe(0);
    expect(s.add(0, new Uint8Array(10).fill(1))).toBe(true);
    expect(s.contiguous).toBe(15);
    expect(s.add(12, new Uint8Array(10).fill(3))).toBe(true);
    expect(s.contiguous).toBe(22);
    expect(s.add(95, new Uint8Array(6))).toBe(false);
  });
});

test("100,000 fuzzed datagrams (mutated real Initials, random bytes, every truncation) never throw", () => {
  const base = [hex("rfc9001-a2-client-initial.hex"), hex("rfc9369-a2-client-initial.hex")];
  const rnd = prng(12345);
  const outcomes = new Map<string, number>();
  for (let i = 0; i < 100_000; i++) {
    let d: Uint8Array;
    const mode = i % 4;
    if (mode === 0) d = Uint8Array.from({ length: Math.floor(rnd() * 1500) }, () => Math.floor(rnd() * 256));
    else if (mode === 1) d = base[i % 2]!.slice(0, Math.floor(rnd() * 1201));
    else {
      d = base[i % 2]!.slice();
      const flips = 1 + Math.floor(rnd() * 4);
      // Mostly the header, where lengths live.
      for (let f = 0; f < flips; f++) d[Math.floor(rnd() * (mode === 2 ? 30 : d.length))] = Math.floor(rnd() * 256);
    }
    const r = new QuicHelloReader(65536, 4);
    let last = r.feed(d);
    if (last.kind === "more") last = r.feed(d);
    const key = last.kind === "reject" ? last.outcome : last.kind;
    outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
  }
  console.log("fuzzed QUIC datagrams:", Object.fromEntries(outcomes));
  expect([...outcomes.values()].reduce((a, b) => a + b, 0)).toBe(100_000);
}, 120_000);
