// Seeded fuzzing of the ClientHello reader: random and mutated hellos. The
// properties: it never throws, always gives a well-formed outcome, the outcome
// does not depend on how the bytes are chunked, and the body parser never looks
// outside the window it is given (checked by surrounding that window with two
// different fills and requiring the same answer).
import { expect, test } from "bun:test";
import { MORE } from "../../src/net/reader";
import { parseClientHelloBody } from "../../src/sni/client_hello_body";
import { ClientHelloReader } from "../../src/sni/client_hello_reader";
import type { HelloResult } from "../../src/sni/hello_result";
import { helloFixtures } from "../helpers/fixtures";
import {
  alpnExtension,
  clientHelloBody,
  handshake,
  helloFor,
  paddingExtension,
  records,
  sniExtension,
} from "../helpers/hello_builder";
import { prng, randInt } from "../helpers/prng";

const ITERATIONS = 100_000;
const TIME_BUDGET_MS = 20_000;

function key(r: HelloResult): string {
  if (r.kind === "more") return "incomplete";
  if (r.kind === "done")
    return r.value.hostname === null
      ? `n:${r.value.alpn.join(",")}`
      : `h:${r.value.hostname}|${r.value.alpn.join(",")}`;
  return `r:${r.outcome}|${r.reason}`;
}

function wellFormed(r: HelloResult): boolean {
  if (r.kind === "more") return true;
  if (r.kind === "done") {
    const h = r.value.hostname;
    return (h === null || /^[a-z0-9._-]{1,253}$/.test(h)) && Array.isArray(r.value.alpn);
  }
  return (r.outcome === "not_tls" || r.outcome === "malformed" || r.outcome === "too_large") && r.reason.length > 0;
}

/** The outcome counted for coverage: hostname, no_sni, a reject's outcome, or incomplete. */
function kindOf(r: HelloResult): string {
  if (r.kind === "more") return "incomplete";
  if (r.kind === "done") return r.value.hostname === null ? "no_sni" : "hostname";
  return r.outcome;
}

function seeds(): Uint8Array[] {
  const out = helloFixtures().map((f) => f.bytes);
  out.push(helloFor("fuzz.example.com", ["h2", "http/1.1"]));
  out.push(
    records(handshake(clientHelloBody([paddingExtension(3000), sniExtension("x.example"), alpnExtension("h2")])), 700),
  );
  out.push(records(handshake(clientHelloBody([sniExtension("one.example")])), 3));
  out.push(records(handshake(clientHelloBody(null))));
  return out;
}

function mutate(rand: () => number, src: Uint8Array): Uint8Array {
  let b: Uint8Array = src.slice();
  const ops = randInt(rand, 1, 4);
  for (let o = 0; o < ops; o++) {
    const op = randInt(rand, 0, 6);
    if (b.length === 0) b = new Uint8Array([randInt(rand, 0, 255)]);
    const at = randInt(rand, 0, b.length - 1);
    switch (op) {
      case 0: // flip one bit
        b[at]! ^= 1 << randInt(rand, 0, 7);
        break;
      case 1: // random byte
        b[at] = randInt(rand, 0, 255);
        break;
      case 2: // interesting byte at a likely length position
        b[at] = [0, 1, 0x7f, 0x80, 0xff, 0x20, 0x21][randInt(rand, 0, 6)]!;
        break;
      case 3: // truncate
        b = b.slice(0, at);
        break;
      case 4: {
        // insert random bytes
        const ins = new Uint8Array(randInt(rand, 1, 8)).map(() => randInt(rand, 0, 255));
        const n = new Uint8Array(b.length + ins.length);
        n.set(b.subarray(0, at));
        n.set(ins, at);
        n.set(b.subarray(at), at + ins.length);
        b = n;
        break;
      }
      case 5: {
        // delete a run
        const len = Math.min(randInt(rand, 1, 16), b.length - at);
        const n = new Uint8Array(b.length - len);
        n.set(b.subarray(0, at));
        n.set(b.subarray(at + len), at);
        b = n;
        break;
      }
      case 6: {
        // set a 16-bit field to an extreme
        if (at + 1 < b.length) {
          const v = [0, 1, 0xffff, 0x4000, 0x8000][randInt(rand, 0, 4)]!;
          b[at] = v >> 8;
          b[at + 1] = v & 0xff;
        }
        break;
      }
    }
  }
  return b;
}

function randomBytes(rand: () => number): Uint8Array {
  const b = new Uint8Array(randInt(rand, 0, 600)).map(() => randInt(rand, 0, 255));
  // Half of them look like a TLS handshake record so they get past byte 0.
  if (rand() < 0.5 && b.length >= 9) {
    b[0] = 22;
    b[1] = 3;
    b[5] = 1;
  }
  return b;
}

test(`fuzz: ${ITERATIONS} random and mutated hellos (seeded, ≤ ${TIME_BUDGET_MS / 1000} s)`, () => {
  const rand = prng(0x5eed1234);
  const corpus = seeds();
  const started = performance.now();
  let done = 0;
  let fastAnswers = 0;
  const outcomes = new Map<string, number>();
  for (; done < ITERATIONS && performance.now() - started < TIME_BUDGET_MS; done++) {
    const input = rand() < 0.85 ? mutate(rand, corpus[randInt(rand, 0, corpus.length - 1)]!) : randomBytes(rand);
    const max = rand() < 0.1 ? randInt(rand, 1, 2000) : 65536;
    let whole: HelloResult;
    let chunked: HelloResult = MORE;
    try {
      whole = new ClientHelloReader(max).feed(input);
      const r = new ClientHelloReader(max);
      for (let o = 0; o < input.length && chunked.kind === "more"; ) {
        const n = randInt(rand, 1, 40);
        chunked = r.feed(input.subarray(o, o + n));
        o += n;
      }
    } catch (e) {
      throw new Error(`reader threw on input ${Buffer.from(input).toString("hex")}: ${e}`);
    }
    if (!wellFormed(whole) || key(whole) !== key(chunked)) {
      throw new Error(
        `inconsistent outcome for ${Buffer.from(input).toString("hex")}: ${key(whole)} vs ${key(chunked)}`,
      );
    }
    // The reader-less fast path must agree whenever it answers.
    const fast = ClientHelloReader.readWhole(input, max);
    if (fast.kind !== "more") {
      fastAnswers++;
      if (key(fast) !== key(whole))
        throw new Error(`readWhole disagrees for ${Buffer.from(input).toString("hex")}: ${key(fast)} vs ${key(whole)}`);
    }
    const k = kindOf(whole);
    outcomes.set(k, (outcomes.get(k) ?? 0) + 1);
  }
  console.log(
    `fuzz: ${done} inputs in ${Math.round(performance.now() - started)} ms; outcomes ${JSON.stringify(Object.fromEntries(outcomes))}`,
  );
  expect(done).toBe(ITERATIONS);
  expect(fastAnswers).toBeGreaterThan(ITERATIONS / 10);
  // The corpus must exercise every path, or the fuzzer is not testing much.
  for (const k of ["hostname", "no_sni", "malformed", "not_tls", "too_large", "incomplete"]) {
    expect(outcomes.get(k) ?? 0).toBeGreaterThan(0);
  }
}, 60_000);

test("fuzz: the body parser never reads outside its window", () => {
  const rand = prng(0xb0d1);
  const bodies = [
    clientHelloBody([sniExtension("w.example"), alpnExtension("h2", "http/1.1")]),
    clientHelloBody([paddingExtension(500), sniExtension("v.example")]),
    clientHelloBody(null),
  ];
  let differ = 0;
  for (let i = 0; i < 30_000; i++) {
    const body = mutate(rand, bodies[randInt(rand, 0, bodies.length - 1)]!);
    const pad = 64;
    const a = new Uint8Array(body.length + 2 * pad).fill(0x00);
    const b = new Uint8Array(body.length + 2 * pad).fill(0xff);
    a.set(body, pad);
    b.set(body, pad);
    // The 0xff fill makes any stray length read huge and any stray name byte invalid;
    // the 0x00 fill makes them small and empty. Equal answers mean no stray reads.
    const ra = key(parseClientHelloBody(a, pad, body.length));
    const rb = key(parseClientHelloBody(b, pad, body.length));
    const exact = key(parseClientHelloBody(body, 0, body.length));
    if (ra !== rb || ra !== exact) {
      differ++;
      throw new Error(`window escape for body ${Buffer.from(body).toString("hex")}: ${ra} / ${rb} / ${exact}`);
    }
  }
  expect(differ).toBe(0);
});
