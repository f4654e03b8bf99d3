// The PROXY header reader and writer (haproxy doc/proxy-protocol.txt), fed
// bytes: every header whole, split at every offset and one byte at a time;
// the failure classes other implementations broke on; the writer's output
// read back.
import { describe, expect, test } from "bun:test";
import CRC32C from "crc-32/crc32c";
import { ProxyHeaderReader } from "../../src/proxy_header/proxy_header_reader";
import { MORE } from "../../src/net/reader";
import type { ProxyHeaderResult } from "../../src/proxy_header/proxy_header";
import { proxyV1, proxyV2 } from "../../src/proxy_header/proxy_header_writer";
import { helloFor } from "../helpers/hello_builder";
import { v2Header } from "../helpers/proxy_header_builder";

const enc = new TextEncoder();
const cat = (...parts: Uint8Array[]) => Buffer.concat(parts);

/** Feed `bytes` split at the given offsets; the result and the rest (all bytes after the header). */
function feedSplit(bytes: Uint8Array, cuts: number[]): { result: ProxyHeaderResult; rest: Buffer } {
  const r = new ProxyHeaderReader();
  let result: ProxyHeaderResult = MORE;
  const rest: Uint8Array[] = [];
  let prev = 0;
  for (const c of [...cuts, bytes.length]) {
    const chunk = bytes.subarray(prev, c);
    prev = c;
    if (result.kind === "more") {
      result = r.feed(chunk);
      if (result.kind === "done") rest.push(result.value.rest);
    } else rest.push(chunk);
  }
  return { result, rest: Buffer.concat(rest) };
}

/** The same verdict (and the same rest) whole, split at every single offset, and one byte at a time. */
function everySplit(bytes: Uint8Array): ProxyHeaderResult {
  const whole = feedSplit(bytes, []);
  // A refusal is always bad_proxy_header, with its reason; the same reason however the bytes are split.
  if (whole.result.kind === "reject") {
    expect(whole.result.outcome).toBe("bad_proxy_header");
    expect(whole.result.reason.length).toBeGreaterThan(0);
  }
  for (let i = 1; i < bytes.length; i++) {
    const s = feedSplit(bytes, [i]);
    expect(s.result.kind).toBe(whole.result.kind);
    if (whole.result.kind === "done") {
      expect(s.result).toMatchObject({ value: { header: whole.result.value.header } });
      expect(s.rest.equals(whole.rest)).toBe(true);
    }
    if (whole.result.kind === "reject") expect(s.result).toEqual(whole.result);
  }
  const bytewise = feedSplit(
    bytes,
    Array.from({ length: bytes.length - 1 }, (_, i) => i + 1),
  );
  expect(bytewise.result.kind).toBe(whole.result.kind);
  if (whole.result.kind === "done") expect(bytewise.rest.equals(whole.rest)).toBe(true);
  return whole.result;
}

const hello = helloFor("app.example.com");

describe("PROXY v1", () => {
  test("TCP4, TCP6 and UNKNOWN, with the ClientHello in the same segment, split at every offset", () => {
    const r4 = everySplit(cat(enc.encode("PROXY TCP4 192.0.2.10 198.51.100.1 56324 443\r\n"), hello));
    expect(r4).toMatchObject({
      kind: "done",
      value: {
        header: {
          version: 1,
          source: { ip: "192.0.2.10", port: 56324 },
          destination: { ip: "198.51.100.1", port: 443 },
        },
      },
    });
    expect(Buffer.from((r4 as { value: { rest: Uint8Array } }).value.rest).equals(Buffer.from(hello))).toBe(true);
    const r6 = everySplit(cat(enc.encode("PROXY TCP6 2001:DB8::1 2001:db8:0::2 1 65535\r\n"), hello));
    expect(r6).toMatchObject({
      kind: "done",
      value: { header: { source: { ip: "2001:db8::1", port: 1 }, destination: { ip: "2001:db8::2", port: 65535 } } },
    });
    // A v4 client behind a v6 balancer: the mapped form is the IPv4 address.
    expect(everySplit(enc.encode("PROXY TCP6 ::ffff:192.0.2.7 ::ffff:10.0.0.1 5 6\r\n"))).toMatchObject({
      kind: "done",
      value: { header: { source: { ip: "192.0.2.7" }, destination: { ip: "10.0.0.1" } } },
    });
    // UNKNOWN: whatever follows is ignored (§2.1), even bytes HAProxy refuses.
    expect(everySplit(enc.encode("PROXY UNKNOWN\r\n"))).toMatchObject({
      kind: "done",
      value: { header: { version: 1, source: null } },
    });
    expect(everySplit(cat(enc.encode("PROXY UNKNOWN ffff::1 garbage \x01\x7f 99999\r\n"), hello))).toMatchObject({
      kind: "done",
      value: { header: { source: null } },
    });
    // The longest legal line: 107 bytes with CRLF.
    const longest =
      "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    expect(longest.length).toBe(104);
    expect(everySplit(enc.encode(longest)).kind).toBe("done");
  });

  const bad: [string, string][] = [
    ["port over 65535 (HAProxy 2.6 accepts 70000)", "PROXY TCP4 192.0.2.1 192.0.2.2 70000 443\r\n"],
    ["port with a leading zero", "PROXY TCP4 192.0.2.1 192.0.2.2 0443 443\r\n"],
    ["missing CRLF (LF only)", "PROXY TCP4 192.0.2.1 192.0.2.2 1 2\n"],
    ["IPv4 with a leading zero", "PROXY TCP4 192.0.2.01 192.0.2.2 1 2\r\n"],
    ["IPv6 under TCP4", "PROXY TCP4 2001:db8::1 192.0.2.2 1 2\r\n"],
    ["IPv4 under TCP6", "PROXY TCP6 192.0.2.1 2001:db8::2 1 2\r\n"],
    ["zone id", "PROXY TCP6 fe80::1%eth0 fe80::2 1 2\r\n"],
    ["two spaces", "PROXY TCP4  192.0.2.1 192.0.2.2 1 2\r\n"],
    ["too few fields", "PROXY TCP4 192.0.2.1 192.0.2.2 1\r\n"],
    ["unknown protocol", "PROXY UDP4 192.0.2.1 192.0.2.2 1 2\r\n"],
    ["lower case", "proxy TCP4 192.0.2.1 192.0.2.2 1 2\r\n"],
    ["a tab", "PROXY TCP4 192.0.2.1\t192.0.2.2 1 2\r\n"],
  ];
  test.each(bad)("refused: %s", (_, line) => {
    expect(everySplit(enc.encode(line)).kind).toBe("reject");
  });

  test("200 bytes and no CRLF: refused at byte 107, not later", () => {
    const line = enc.encode(`PROXY TCP4 ${"1".repeat(194)}`);
    const r = new ProxyHeaderReader();
    expect(r.feed(line.subarray(0, 106))).toBe(MORE);
    expect(r.feed(line.subarray(106, 107))).toMatchObject({
      kind: "reject",
      outcome: "bad_proxy_header",
      reason: expect.stringContaining("107"),
    });
  });

  test("a ClientHello with no header is refused at its first byte", () => {
    expect(new ProxyHeaderReader().feed(hello.subarray(0, 1))).toMatchObject({
      kind: "reject",
      outcome: "bad_proxy_header",
    });
    expect(new ProxyHeaderReader().feed(enc.encode("GET / HTTP/1.1\r\n"))).toMatchObject({
      kind: "reject",
      outcome: "bad_proxy_header",
    });
  });
});

describe("PROXY v2", () => {
  test("INET, INET6, LOCAL, UNSPEC and UNIX, with the hello after, split at every offset (inside the signature and the length too)", () => {
    const inet = v2Header({ family: "inet", source: ["192.0.2.10", 56324], destination: ["198.51.100.1", 443] });
    const r = everySplit(cat(inet, hello));
    expect(r).toMatchObject({
      kind: "done",
      value: {
        header: {
          version: 2,
          source: { ip: "192.0.2.10", port: 56324 },
          destination: { ip: "198.51.100.1", port: 443 },
        },
      },
    });
    expect(Buffer.from((r as { value: { rest: Uint8Array } }).value.rest).equals(Buffer.from(hello))).toBe(true);
    expect(
      everySplit(v2Header({ family: "inet6", source: ["2001:db8::1", 1], destination: ["2001:db8::2", 2] })),
    ).toMatchObject({
      kind: "done",
      value: { header: { source: { ip: "2001:db8::1" } } },
    });
    expect(
      everySplit(v2Header({ family: "inet6", source: ["::ffff:192.0.2.7", 1], destination: ["::ffff:10.0.0.1", 2] })),
    ).toMatchObject({
      kind: "done",
      value: { header: { source: { ip: "192.0.2.7" } } },
    });
    expect(everySplit(v2Header({ command: "local", family: "unspec" }))).toMatchObject({
      kind: "done",
      value: { header: { source: null } },
    });
    // LOCAL with an address block: the addresses are discarded (§2.2).
    expect(
      everySplit(
        v2Header({ command: "local", family: "inet", source: ["192.0.2.1", 1], destination: ["192.0.2.2", 2] }),
      ),
    ).toMatchObject({ kind: "done", value: { header: { source: null } } });
    // PROXY over UNSPEC or UNIX: treated like LOCAL (HAProxy 2.6 refuses these).
    expect(everySplit(v2Header({ family: "unspec" }))).toMatchObject({
      kind: "done",
      value: { header: { source: null } },
    });
    expect(everySplit(v2Header({ family: "unix" }))).toMatchObject({
      kind: "done",
      value: { header: { source: null } },
    });
  });

  test("TLVs: AUTHORITY and UNIQUE_ID read, a valid CRC32C accepted, a wrong one refused", () => {
    const tlvs: [number, Uint8Array][] = [
      [0x02, enc.encode("app.example.com")],
      [0x05, enc.encode("abc-123")],
      [0x04, new Uint8Array(10)],
    ];
    const ok = v2Header({ family: "inet", source: ["192.0.2.1", 1], destination: ["192.0.2.2", 2], tlvs, crc: true });
    expect(everySplit(ok)).toMatchObject({
      kind: "done",
      value: { header: { authority: "app.example.com", uniqueId: "abc-123" } },
    });
    const bad = ok.slice();
    bad[bad.length - 1]! ^= 0xff;
    expect(everySplit(bad)).toMatchObject({
      kind: "reject",
      outcome: "bad_proxy_header",
      reason: "v2: CRC32C mismatch",
    });
    // Flip a byte elsewhere (the source port): the CRC catches it too.
    const tampered = ok.slice();
    tampered[16 + 8]! ^= 1;
    expect(everySplit(tampered)).toMatchObject({ kind: "reject", outcome: "bad_proxy_header" });
  });

  test("a header larger than one segment (3 KB of TLVs) and one of 60 KB", () => {
    for (const size of [3000, 60_000]) {
      const h = v2Header({
        family: "inet",
        source: ["192.0.2.1", 1],
        destination: ["192.0.2.2", 2],
        tlvs: [[0x04, new Uint8Array(size)]],
        crc: true,
      });
      const input = cat(h, hello);
      const whole = feedSplit(input, []);
      expect(whole.result.kind).toBe("done");
      expect(whole.rest.equals(Buffer.from(hello))).toBe(true);
      // In 1460-byte segments, and in 3 unequal pieces.
      const seg = feedSplit(
        input,
        Array.from({ length: Math.floor(input.length / 1460) }, (_, i) => (i + 1) * 1460),
      );
      expect(seg.result.kind).toBe("done");
      expect(seg.rest.equals(Buffer.from(hello))).toBe(true);
      expect(feedSplit(input, [7, 15, 16, 17, h.length - 1]).rest.equals(Buffer.from(hello))).toBe(true);
    }
  });

  test("the largest header the spec allows (16 + 65,535 bytes)", () => {
    const h = v2Header({ family: "unspec", tlvs: [[0x04, new Uint8Array(65535 - 3)]] });
    expect(h.length).toBe(16 + 65535);
    expect(feedSplit(cat(h, hello), [1000, 40000]).result.kind).toBe("done");
  });

  const refusals: [string, Uint8Array][] = [
    [
      "wrong signature",
      (() => {
        const h = v2Header({ family: "unspec" });
        h[7] = 0x52;
        return h;
      })(),
    ],
    [
      "version nibble 1",
      v2Header({ family: "inet", version: 1, source: ["192.0.2.1", 1], destination: ["192.0.2.2", 2] }),
    ],
    [
      "version nibble 3",
      v2Header({ family: "inet", version: 3, source: ["192.0.2.1", 1], destination: ["192.0.2.2", 2] }),
    ],
    [
      "command 2",
      v2Header({ family: "inet", commandNibble: 2, source: ["192.0.2.1", 1], destination: ["192.0.2.2", 2] }),
    ],
    [
      "declared length shorter than the INET address block",
      v2Header({ family: "inet", source: ["192.0.2.1", 1], destination: ["192.0.2.2", 2], lengthOverride: 8 }),
    ],
    [
      "declared length shorter than the INET6 address block",
      v2Header({ family: "inet6", source: ["2001:db8::1", 1], destination: ["2001:db8::2", 2], lengthOverride: 20 }),
    ],
    [
      "TLV running past the header",
      v2Header({
        family: "inet",
        source: ["192.0.2.1", 1],
        destination: ["192.0.2.2", 2],
        rawTail: new Uint8Array([0x04, 0x00, 0x10, 1, 2]),
      }),
    ],
    [
      "a stray byte after the last TLV",
      v2Header({
        family: "inet",
        source: ["192.0.2.1", 1],
        destination: ["192.0.2.2", 2],
        rawTail: new Uint8Array([0x04]),
      }),
    ],
    [
      "unknown address family",
      v2Header({ family: "inet", familyByte: 0x41, source: ["192.0.2.1", 1], destination: ["192.0.2.2", 2] }),
    ],
    [
      "datagram over INET",
      v2Header({ family: "inet", familyByte: 0x12, source: ["192.0.2.1", 1], destination: ["192.0.2.2", 2] }),
    ],
    [
      "UNIQUE_ID over 128 bytes",
      v2Header({
        family: "inet",
        source: ["192.0.2.1", 1],
        destination: ["192.0.2.2", 2],
        tlvs: [[0x05, new Uint8Array(129)]],
      }),
    ],
    [
      "two CRC32C TLVs",
      v2Header({
        family: "inet",
        source: ["192.0.2.1", 1],
        destination: ["192.0.2.2", 2],
        tlvs: [
          [0x03, new Uint8Array(4)],
          [0x03, new Uint8Array(4)],
        ],
      }),
    ],
  ];
  test.each(refusals)("refused: %s", (_, h) => {
    expect(everySplit(cat(h, hello)).kind).toBe("reject");
  });

  test("a wrong signature byte is refused at that byte", () => {
    const r = new ProxyHeaderReader();
    expect(r.feed(new Uint8Array([0x0d, 0x0a, 0x0d]))).toBe(MORE);
    expect(r.feed(new Uint8Array([0x0b]))).toMatchObject({ kind: "reject", outcome: "bad_proxy_header" });
  });
});

describe("writer", () => {
  const src = { ip: "192.0.2.10", port: 56324 };
  const dst = { ip: "198.51.100.1", port: 443 };

  test("v1 reads back", () => {
    expect(new TextDecoder().decode(proxyV1({ source: src, destination: dst, authority: null, uniqueId: "x" }))).toBe(
      "PROXY TCP4 192.0.2.10 198.51.100.1 56324 443\r\n",
    );
    const mixed = proxyV1({
      source: src,
      destination: { ip: "2001:db8::1", port: 443 },
      authority: null,
      uniqueId: "x",
    });
    expect(new TextDecoder().decode(mixed)).toBe("PROXY TCP6 ::ffff:192.0.2.10 2001:db8::1 56324 443\r\n");
    expect(new ProxyHeaderReader().feed(mixed)).toMatchObject({
      kind: "done",
      value: { header: { source: src, destination: { ip: "2001:db8::1", port: 443 } } },
    });
  });

  test("v2 carries AUTHORITY, UNIQUE_ID and a CRC32C that verifies; no AUTHORITY without an SNI", () => {
    const h = proxyV2({ source: src, destination: dst, authority: "app.example.com", uniqueId: "0f3a-42" });
    expect(new ProxyHeaderReader().feed(h)).toMatchObject({
      kind: "done",
      value: {
        header: { version: 2, source: src, destination: dst, authority: "app.example.com", uniqueId: "0f3a-42" },
      },
    });
    const crcAt = h.length - 4;
    const zeroed = h.slice();
    zeroed.fill(0, crcAt);
    expect(CRC32C.buf(zeroed) >>> 0).toBe(Buffer.from(h.subarray(crcAt)).readUInt32BE(0));
    const noSni = proxyV2({ source: src, destination: dst, authority: null, uniqueId: "1" });
    expect(new ProxyHeaderReader().feed(noSni)).toMatchObject({ kind: "done", value: { header: { authority: null } } });
    const six = proxyV2({ source: { ip: "2001:db8::5", port: 1 }, destination: dst, authority: null, uniqueId: "1" });
    expect(six[13]).toBe(0x21);
    expect(new ProxyHeaderReader().feed(six)).toMatchObject({
      kind: "done",
      value: { header: { source: { ip: "2001:db8::5" }, destination: { ip: "198.51.100.1" } } },
    });
  });
});
