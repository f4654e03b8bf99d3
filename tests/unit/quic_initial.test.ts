// The QUIC Initial reader: the RFCs' published packets, hellos split across
// datagrams, coalesced, reordered and repeated, the bounds on the work one
// datagram costs (and that time, measured), and fuzzed datagrams.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { MAX_CRYPTO_RANGES, MAX_FRAMES_PER_DATAGRAM } from "../../src/quic/crypto_stream";
import { MAX_PACKETS_PER_DATAGRAM, QuicHelloReader } from "../../src/quic/hello_reader";
import { QUIC_V1, QUIC_V2, clientInitialKeys } from "../../src/quic/initial_keys";
import { readPacket } from "../../src/quic/packet";
import { alpnExtension, clientHelloBody, handshake, paddingExtension, sniExtension } from "../helpers/hello_builder";
import { cryptoFrame, padDatagram, sealInitial } from "../helpers/quic";
import { prng, randInt } from "../helpers/prng";

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
      expect(r.kind).toBe("done");
      if (r.kind !== "done") return;
      expect(r.value.hello).toMatchObject({ hostname: "example.com", alpn: ["alpn"] });
      expect(r.value.version).toBe(version);
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
  const dgram = (pn: number, off: number, data: Uint8Array, version = QUIC_V1) =>
    padDatagram(sealInitial({ version, dcid, pn, frames: cryptoFrame(off, data) }));

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
        expect(second).toMatchObject({ kind: "done", value: { hello: { hostname: "app.example.com", alpn: ["h3"] } } });
      }
    });
  }

  test("repeated and overlapping CRYPTO data, and junk datagrams after the first, change nothing", () => {
    const r = new QuicHelloReader(65536);
    expect(r.feed(dgram(0, 0, parts[0]!)).kind).toBe("more");
    expect(r.feed(dgram(1, 0, parts[0]!)).kind).toBe("more");
    expect(r.feed(new Uint8Array(1200).fill(0x41)).kind).toBe("more");
    expect(r.feed(dgram(2, cut - 100, hello.subarray(cut - 100, cut + 50))).kind).toBe("more");
    expect(r.feed(dgram(3, cut, parts[1]!)).kind).toBe("done");
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
    expect(r.feed(padDatagram(c)).kind).toBe("done");
  });

  test("bounds: a first datagram under 1200 bytes, too many datagrams, a hello over the cap, not QUIC, another version", () => {
    expect(
      new QuicHelloReader(65536).feed(sealInitial({ dcid, pn: 0, frames: cryptoFrame(0, parts[0]!) })),
    ).toMatchObject({ kind: "reject", outcome: "not_quic" });
    const r = new QuicHelloReader(65536, 3);
    for (let i = 0; i < 3; i++) expect(r.feed(dgram(i, 0, parts[0]!)).kind).toBe("more");
    expect(r.feed(dgram(3, 0, parts[0]!))).toMatchObject({ kind: "reject", outcome: "too_large" });
    expect(new QuicHelloReader(2000).feed(dgram(0, 0, parts[0]!))).toMatchObject({
      kind: "reject",
      outcome: "too_large",
    });
    expect(new QuicHelloReader(65536).feed(new Uint8Array(1200).fill(0x16))).toMatchObject({
      kind: "reject",
      outcome: "not_quic",
    });
    const v = dgram(0, 0, parts[0]!);
    v.set([0xff, 0x00, 0x00, 0x1d], 1);
    expect(new QuicHelloReader(65536).feed(v)).toMatchObject({ kind: "reject", outcome: "quic_version" });
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

describe("the work one datagram costs is bounded (hello_reader.ts, crypto_stream.ts)", () => {
  const dcid = Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]);
  const hello = bigHello("app.example.com", 2400);
  const cat = (...parts: (Uint8Array | number[])[]) => Uint8Array.from(parts.flatMap((p) => [...p]));
  /** One Initial of `size` bytes or less, full of one-byte CRYPTO frames at every other offset from `from`. */
  const gapped = (pn: number, from: number, size = 1200, n = Number.POSITIVE_INFINITY) => {
    const frames: Uint8Array[] = [];
    for (let len = 0, o = from; frames.length < n && len + 5 + 60 <= size; o += 2, len += 5)
      frames.push(cryptoFrame(o, Uint8Array.of(0x41)));
    return sealInitial({ dcid, pn, frames: cat(...frames) });
  };

  test("an Initial of 200 one-byte CRYPTO frames at gaps is refused as malformed, at once", () => {
    const r = new QuicHelloReader(16384).feed(padDatagram(gapped(0, 1, 1200, 200)));
    expect(r).toMatchObject({ kind: "reject", outcome: "malformed" });
    expect((r as { reason: string }).reason).toMatch(/^more than \d+ (CRYPTO ranges|frames in a datagram)$/);
  });

  test(`gapped frames a few per datagram: refused at ${MAX_CRYPTO_RANGES} ranges, within the flow's datagrams`, () => {
    const r = new QuicHelloReader(16384);
    let last = r.feed(padDatagram(gapped(0, 1, 1200, 10)));
    for (let i = 1; i < 16 && last.kind === "more"; i++) last = r.feed(padDatagram(gapped(i, 1 + 20 * i, 1200, 10)));
    expect(last).toEqual({
      kind: "reject",
      outcome: "malformed",
      reason: `more than ${MAX_CRYPTO_RANGES} CRYPTO ranges`,
    });
  });

  test(`${MAX_PACKETS_PER_DATAGRAM} coalesced Initials are read; one more is malformed`, () => {
    const cuts = Array.from({ length: MAX_PACKETS_PER_DATAGRAM + 1 }, (_, i) =>
      Math.round((hello.length * i) / MAX_PACKETS_PER_DATAGRAM),
    );
    const packets = cuts
      .slice(1)
      .map((c, i) => sealInitial({ dcid, pn: i, frames: cryptoFrame(cuts[i]!, hello.subarray(cuts[i]!, c)) }));
    const r = new QuicHelloReader(16384).feed(padDatagram(cat(...packets)));
    expect(r).toMatchObject({ kind: "done", value: { hello: { hostname: "app.example.com" } } });
    const extra = sealInitial({ dcid, pn: 99, frames: Uint8Array.of(1) });
    // Small ones, then padding (zeros after the last packet).
    const small = Array.from({ length: MAX_PACKETS_PER_DATAGRAM + 1 }, (_, i) =>
      sealInitial({ dcid, pn: i, frames: i === 0 ? cryptoFrame(0, hello.subarray(0, 100)) : Uint8Array.of(1) }),
    );
    expect(new QuicHelloReader(16384).feed(padDatagram(cat(...small.slice(1))))).toEqual({ kind: "more" });
    expect(new QuicHelloReader(16384).feed(padDatagram(cat(...small)))).toMatchObject({
      kind: "reject",
      outcome: "malformed",
    });
    expect(new QuicHelloReader(16384).feed(padDatagram(cat(...packets, extra)))).toEqual({
      kind: "reject",
      outcome: "malformed",
      reason: `more than ${MAX_PACKETS_PER_DATAGRAM} packets in a datagram`,
    });
  });

  test("an ACK frame with more ranges than the frame budget is malformed", () => {
    const ack = cat([0x02, 0x44, 0x00, 0, 0x40, 100, 0], ...Array.from({ length: 100 }, () => [0, 0]));
    expect(
      new QuicHelloReader(16384).feed(
        padDatagram(sealInitial({ dcid, pn: 0, frames: cat(ack, cryptoFrame(0, hello.subarray(0, 900))) })),
      ),
    ).toMatchObject({
      kind: "reject",
      outcome: "malformed",
      reason: `more than ${MAX_FRAMES_PER_DATAGRAM} frames in a datagram`,
    });
  });

  test("real hellos still read: Chromium-style chaos protection (up to 11 CRYPTO frames shuffled among PINGs and PADDING) over two datagrams in either order, 1–3 pieces in any order, one gap per datagram over 16 datagrams", () => {
    const rnd = prng(2024);
    /** Chromium's QuicChaosProtector: the packet's CRYPTO data split in 2–11 frames, shuffled with 2–10 PINGs and PADDING runs. */
    const chaos = (pn: number, from: number, to: number) => {
      const cuts = [from, to];
      for (let i = randInt(rnd, 1, 10); i > 0; i--) cuts.push(randInt(rnd, from + 1, to - 1));
      cuts.sort((a, b) => a - b);
      const frames: Uint8Array[] = [];
      for (let i = 0; i + 1 < cuts.length; i++)
        if (cuts[i]! < cuts[i + 1]!) frames.push(cryptoFrame(cuts[i]!, hello.subarray(cuts[i]!, cuts[i + 1]!)));
      for (let i = randInt(rnd, 2, 10); i > 0; i--) frames.push(Uint8Array.of(1), new Uint8Array(randInt(rnd, 1, 8)));
      for (let i = frames.length - 1; i > 0; i--) {
        const j = randInt(rnd, 0, i);
        [frames[i], frames[j]] = [frames[j]!, frames[i]!];
      }
      return padDatagram(sealInitial({ dcid, pn, frames: cat(...frames) }));
    };
    for (let round = 0; round < 200; round++) {
      const ds = [chaos(0, 0, 1100), chaos(1, 1100, hello.length)];
      if (round % 2 === 1) ds.reverse();
      const r = new QuicHelloReader(16384);
      expect(r.feed(ds[0]!).kind).toBe("more");
      expect(r.feed(ds[1]!)).toMatchObject({
        kind: "done",
        value: { hello: { hostname: "app.example.com", alpn: ["h3"] } },
      });
    }
    for (const order of [
      [0, 1, 2],
      [2, 1, 0],
      [1, 2, 0],
      [2, 0, 1],
    ]) {
      const cuts = [0, 800, 1600, hello.length];
      const r = new QuicHelloReader(16384);
      const results = order.map((k, i) =>
        r.feed(
          padDatagram(
            sealInitial({ dcid, pn: i, frames: cryptoFrame(cuts[k]!, hello.subarray(cuts[k]!, cuts[k + 1]!)) }),
          ),
        ),
      );
      expect(results.map((x) => x.kind)).toEqual(["more", "more", "done"]);
    }
    // 16 pieces, even ones first: up to 8 gaps at once.
    const step = Math.ceil(hello.length / 16);
    const order = [
      ...Array.from({ length: 8 }, (_, i) => 2 * i + 1),
      ...Array.from({ length: 8 }, (_, i) => 14 - 2 * i),
    ];
    const r = new QuicHelloReader(16384);
    const results = order.map((k, i) =>
      r.feed(
        padDatagram(
          sealInitial({ dcid, pn: i, frames: cryptoFrame(k * step, hello.subarray(k * step, (k + 1) * step)) }),
        ),
      ),
    );
    expect(results.at(-1)).toMatchObject({ kind: "done" });
    expect(results.slice(0, -1).every((x) => x.kind === "more")).toBe(true);
  });

  test("the worst datagrams cost well under a millisecond each (median of 15, asserted under 5 ms for a busy machine; the times are logged)", () => {
    /** A flow holding MAX_CRYPTO_RANGES - 1 ranges (one-byte pieces at every other offset from 4001). */
    const held = () => {
      const r = new QuicHelloReader(16384);
      r.feed(padDatagram(gapped(0, 4001, 1200, MAX_CRYPTO_RANGES - 1)));
      return r;
    };
    /** A full frame budget of one-byte pieces the flow holds already: every frame is searched for and merged, none is refused. */
    const repeats = cat(
      ...Array.from({ length: MAX_FRAMES_PER_DATAGRAM }, (_, k) =>
        cryptoFrame(4001 + 2 * (k % (MAX_CRYPTO_RANGES - 1)), Uint8Array.of(0x41)),
      ),
    );
    const padding16k = (pn: number) => sealInitial({ dcid, pn, frames: Uint8Array.of(1), payloadSize: 16_000 });
    const minimal = (pn: number) => sealInitial({ dcid, pn, frames: Uint8Array.of(1) });
    const cases: [string, () => QuicHelloReader, Uint8Array][] = [
      [
        "1200 B: one Initial of one-byte CRYPTO frames at gaps (new flow)",
        () => new QuicHelloReader(16384),
        padDatagram(gapped(0, 1)),
      ],
      ["1500 B: the same", () => new QuicHelloReader(16384), padDatagram(gapped(0, 1, 1500), 1500)],
      [
        `1200 B: ${MAX_FRAMES_PER_DATAGRAM} one-byte CRYPTO frames to a flow holding ${MAX_CRYPTO_RANGES - 1} ranges`,
        held,
        padDatagram(sealInitial({ dcid, pn: 1, frames: repeats })),
      ],
      [
        `1200 B: ${MAX_PACKETS_PER_DATAGRAM} coalesced minimal Initials`,
        () => new QuicHelloReader(16384),
        padDatagram(cat(...Array.from({ length: MAX_PACKETS_PER_DATAGRAM }, (_, i) => minimal(i)))),
      ],
      [
        "1200 B: many coalesced minimal Initials (refused)",
        () => new QuicHelloReader(16384),
        padDatagram(cat(...Array.from({ length: 24 }, (_, i) => minimal(i)))),
      ],
      [
        "64 KB: four coalesced 16 KB Initials of PADDING",
        () => new QuicHelloReader(16384),
        cat(...[0, 1, 2, 3].map(padding16k)),
      ],
      [
        "64 KB: four coalesced 16 KB Initials of one-byte CRYPTO frames at gaps",
        () => new QuicHelloReader(16384),
        cat(...[0, 1, 2, 3].map((i) => gapped(i, 1 + 4000 * i, 16_000))),
      ],
      [
        "1200 B: ACK frames and PINGs (refused at the frame bound)",
        () => new QuicHelloReader(16384),
        padDatagram(sealInitial({ dcid, pn: 0, frames: new Uint8Array(1100).fill(1) })),
      ],
    ];
    const lines: string[] = [];
    for (const [name, reader, d] of cases) {
      const us: number[] = [];
      let outcome = "";
      for (let i = 0; i < 5; i++) reader().feed(d); // warm (the proxy reads many)
      for (let i = 0; i < 15; i++) {
        const r = reader();
        const t = performance.now();
        const out = r.feed(d);
        us.push((performance.now() - t) * 1000);
        outcome = out.kind === "reject" ? `${out.outcome}: ${out.reason}` : out.kind;
      }
      us.sort((a, b) => a - b);
      lines.push(`  ${name}: median ${us[7]!.toFixed(0)} µs, max ${us[14]!.toFixed(0)} µs (${outcome})`);
      expect(us[7]!).toBeLessThan(5000);
    }
    console.log(`QUIC reader, CPU per datagram:\n${lines.join("\n")}`);
  });
});
