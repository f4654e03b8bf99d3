// Which long headers from a routed flow's address belong to another QUIC connection (src/quic/new_connection.ts).
import { expect, test } from "bun:test";
import { QUIC_V2 } from "../../src/quic/initial_keys";
import { opensNewConnection } from "../../src/quic/new_connection";
import { cryptoFrame, padDatagram, sealInitial, varintBytes } from "../helpers/quic";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const FIRST = Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]);
const SERVER = Uint8Array.from([0xaa, 0xbb, 0xcc, 0xdd]);
const OTHER = Uint8Array.from([9, 9, 9, 9, 9, 9, 9, 9]);

/** A long-header packet with type bits `bits` (v1: 1 0-RTT, 2 Handshake) naming dcid, 10 bytes of body. */
function long(bits: number, dcid: Uint8Array, version = 1): Uint8Array {
  const v = [version >>> 24, (version >> 16) & 0xff, (version >> 8) & 0xff, version & 0xff];
  return Uint8Array.from([
    0xc0 | (bits << 4),
    ...v,
    dcid.length,
    ...dcid,
    0,
    ...varintBytes(11),
    0,
    ...new Uint8Array(10),
  ]);
}
const initial = (dcid: Uint8Array, version = 1) =>
  sealInitial({ version, dcid, pn: 0, frames: cryptoFrame(0, new Uint8Array(30)) });
const is = (d: Uint8Array) => opensNewConnection(d, hex(FIRST), [hex(SERVER)]);

test("the flow's own long headers: Initial and 0-RTT with its first ID, Handshake and Initial with the server's, padded", () => {
  expect(is(padDatagram(initial(FIRST), 1250))).toBe(false);
  expect(is(long(1, FIRST))).toBe(false);
  expect(is(long(2, SERVER))).toBe(false);
  expect(is(initial(SERVER))).toBe(false);
  expect(is(Uint8Array.from([...initial(SERVER), ...long(2, SERVER)]))).toBe(false);
  expect(is(initial(FIRST, QUIC_V2))).toBe(false);
});

test("another connection's: a new ID in any long header, v1 or v2, alone or coalesced behind the flow's own", () => {
  expect(is(padDatagram(initial(OTHER), 1250))).toBe(true);
  expect(is(initial(OTHER, QUIC_V2))).toBe(true);
  expect(is(long(1, OTHER))).toBe(true);
  expect(is(long(2, OTHER))).toBe(true);
  // v2's type bits: 2 is 0-RTT, 3 Handshake (RFC 9369 §3.2).
  expect(is(long(3, OTHER, QUIC_V2))).toBe(true);
  expect(is(Uint8Array.from([...long(2, SERVER), ...initial(OTHER)]))).toBe(true);
  expect(is(Uint8Array.from([...initial(FIRST), ...long(1, FIRST), ...long(2, OTHER)]))).toBe(true);
  // Another version's long header with a new ID, and an unreadable one: not the flow's either.
  expect(is(long(0, OTHER, 0xff00001d))).toBe(true);
  expect(is(Uint8Array.from([0xc0, 0, 0, 0, 1, 8, 1, 2]))).toBe(true);
  // More packets than a client coalesces.
  expect(is(Uint8Array.from(Array.from({ length: 9 }, () => [...long(2, SERVER)]).flat()))).toBe(true);
});

test("short headers are the flow's; what follows a packet whose end is unknown is not read", () => {
  expect(is(Uint8Array.from([0x41, ...OTHER, 1, 2, 3]))).toBe(false);
  expect(is(new Uint8Array(0))).toBe(false);
  // A Length past the datagram: the walk stops there (no endpoint finds a next packet either).
  const cut = long(2, SERVER).subarray(0, 20);
  expect(is(Uint8Array.from([...cut]))).toBe(false);
});
