// Seeded fuzzing of the PROXY header reader: 100,000 random and mutated v1
// and v2 headers (each followed by a ClientHello), each fed whole and in
// random splits. Properties: it never throws; the verdict, the header and
// the bytes after it do not depend on the splits; a header never claims more
// bytes than the input holds.
import { expect, test } from "bun:test";
import { MORE } from "../../src/net/reader";
import type { ProxyHeaderResult } from "../../src/proxy_header/proxy_header";
import { ProxyHeaderReader } from "../../src/proxy_header/proxy_header_reader";
import { proxyV1, proxyV2 } from "../../src/proxy_header/proxy_header_writer";
import { helloFor } from "../helpers/hello_builder";
import { prng, randInt } from "../helpers/prng";
import { v2Header } from "../helpers/proxy_header_builder";

const ITERATIONS = 100_000;

function seeds(): Uint8Array[] {
  const enc = new TextEncoder();
  const src = { ip: "192.0.2.10", port: 56324 };
  const dst = { ip: "198.51.100.1", port: 443 };
  return [
    enc.encode("PROXY TCP4 192.0.2.10 198.51.100.1 56324 443\r\n"),
    enc.encode("PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n"),
    enc.encode("PROXY UNKNOWN\r\n"),
    enc.encode("PROXY UNKNOWN 1 2 3\r\n"),
    proxyV1({ source: { ip: "2001:db8::1", port: 9 }, destination: dst, authority: null, uniqueId: "" }),
    proxyV2({ source: src, destination: dst, authority: "app.example.com", uniqueId: "abc" }),
    proxyV2({
      source: { ip: "2001:db8::1", port: 9 },
      destination: { ip: "2001:db8::2", port: 10 },
      authority: null,
      uniqueId: "x".repeat(128),
    }),
    v2Header({ command: "local", family: "unspec" }),
    v2Header({ family: "unix" }),
    v2Header({
      family: "inet",
      source: ["192.0.2.1", 1],
      destination: ["192.0.2.2", 2],
      tlvs: [
        [0x04, new Uint8Array(300)],
        [0x20, new Uint8Array(40)],
      ],
      crc: true,
    }),
  ];
}

/** A valid header with random addresses, ports, SNI and id, v1 or v2. */
function randomValid(rand: () => number): Uint8Array {
  const v4 = () => Array.from({ length: 4 }, () => randInt(rand, 0, 255)).join(".");
  const v6 = () => Array.from({ length: 8 }, () => randInt(rand, 0, 0xffff).toString(16)).join(":");
  const six = rand() < 0.3;
  const addr = () => ({ ip: six ? v6() : v4(), port: randInt(rand, 0, 65535) });
  const o = {
    source: addr(),
    destination: addr(),
    authority: rand() < 0.5 ? null : `h${randInt(rand, 0, 1e6)}.example.com`,
    uniqueId: String(randInt(rand, 0, 1e9)),
  };
  return rand() < 0.5 ? proxyV1(o) : proxyV2(o);
}

function mutate(rand: () => number, src: Uint8Array): Uint8Array {
  let b: Uint8Array = src.slice();
  for (let o = randInt(rand, 1, 3); o > 0; o--) {
    if (b.length === 0) b = new Uint8Array([randInt(rand, 0, 255)]);
    const at = randInt(rand, 0, b.length - 1);
    switch (randInt(rand, 0, 5)) {
      case 0:
        b[at]! ^= 1 << randInt(rand, 0, 7);
        break;
      case 1:
        b[at] = randInt(rand, 0, 255);
        break;
      case 2: // lengths, nibbles, separators
        b[at] = [0, 1, 0x0d, 0x0a, 0x20, 0x21, 0x7f, 0xff][randInt(rand, 0, 7)]!;
        break;
      case 3:
        b = b.slice(0, at);
        break;
      case 4: {
        const ins = Uint8Array.from({ length: randInt(rand, 1, 8) }, () => randInt(rand, 0, 255));
        b = Buffer.concat([b.subarray(0, at), ins, b.subarray(at)]);
        break;
      }
      default:
        b = Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + randInt(rand, 1, 8)))]);
    }
  }
  return b;
}

function run(input: Uint8Array, cuts: number[]): { r: ProxyHeaderResult; rest: Buffer } {
  const reader = new ProxyHeaderReader();
  let r: ProxyHeaderResult = MORE;
  const rest: Uint8Array[] = [];
  let prev = 0;
  for (const c of [...cuts, input.length]) {
    const chunk = input.subarray(prev, c);
    prev = c;
    if (r.kind === "more") {
      r = reader.feed(chunk);
      if (r.kind === "done") rest.push(r.value.rest);
    } else rest.push(chunk);
  }
  return { r, rest: Buffer.concat(rest) };
}

/** The verdict: a refusal with its outcome and reason, or the header and the bytes after it. */
function key(x: { r: ProxyHeaderResult; rest: Buffer }): string {
  if (x.r.kind === "more") return "incomplete";
  if (x.r.kind === "reject") return `reject:${x.r.outcome}:${x.r.reason}`;
  return `header:${JSON.stringify(x.r.value.header)}:${x.rest.toString("hex")}`;
}

test(`${ITERATIONS.toLocaleString()} random and mutated headers in random splits: never throws, one verdict per input`, () => {
  const rand = prng(9);
  const base = seeds();
  const hello = helloFor("fuzz.example.com");
  const counts = { done: 0, reject: 0, more: 0 };
  for (let i = 0; i < ITERATIONS; i++) {
    const pick = randInt(rand, 0, 9);
    const head =
      pick === 0
        ? Uint8Array.from({ length: randInt(rand, 0, 120) }, () => randInt(rand, 0, 255))
        : pick <= 2
          ? randomValid(rand)
          : mutate(rand, pick === 3 ? randomValid(rand) : base[randInt(rand, 0, base.length - 1)]!);
    const input = Buffer.concat([head, hello]);
    const whole = run(input, []);
    const cuts = Array.from({ length: randInt(rand, 1, 6) }, () =>
      randInt(rand, 1, Math.max(1, input.length - 1)),
    ).sort((a, b) => a - b);
    const split = run(input, cuts);
    if (key(split) !== key(whole))
      throw new Error(
        `split changed the verdict for ${input.toString("hex")} at ${cuts}: ${key(whole)} vs ${key(split)}`,
      );
    if (whole.r.kind === "done" && whole.rest.length > input.length) throw new Error("rest longer than the input");
    if (whole.r.kind === "reject" && (whole.r.outcome !== "bad_proxy_header" || whole.r.reason === ""))
      throw new Error("a refusal without its outcome and reason");
    counts[whole.r.kind]++;
  }
  console.log(`proxy header fuzz: ${JSON.stringify(counts)}`);
  // Both verdicts are exercised in quantity.
  expect(counts.done).toBeGreaterThan(ITERATIONS / 10);
  expect(counts.reject).toBeGreaterThan(ITERATIONS / 10);
  // ~4 s alone; bun's default 5 s is missed on a loaded machine (as the client hello fuzz allows for).
}, 60_000);
