// Parses the body of a ClientHello handshake message (RFC 8446 §4.1.2, which
// keeps the TLS 1.2 layout of RFC 5246 §7.4.1.2) far enough to find the
// server_name (RFC 6066 §3) and ALPN (RFC 7301 §3.1) extensions.
//
// Every vector length is checked against the bytes that are actually there;
// any inconsistency is "malformed". The function never throws and never reads
// outside [start, start + length).

import { type Done, done, reject } from "../net/reader";
import type { ClientHello, HelloRefusal } from "./hello_result";
import { validateHostName } from "./host_name";

const EXT_SERVER_NAME = 0;
const EXT_ALPN = 16;
const NAME_TYPE_HOST_NAME = 0;

// Every refusal here is "malformed"; the reason says where (made once each).
const malformed = (reason: string): HelloRefusal => reject("malformed", reason);
const TRUNCATED = malformed("a ClientHello field runs past its end");
const LONG_SESSION_ID = malformed("legacy_session_id over 32 bytes");
const CIPHER_SUITES = malformed("cipher_suites empty or of an odd length");
const NO_COMPRESSION = malformed("legacy_compression_methods empty");
const EXTENSIONS_LENGTH = malformed("the extensions do not fill the ClientHello exactly");
const EXTENSION_PAST_END = malformed("an extension runs past the extensions");
const REPEATED_EXTENSION = malformed("an extension type appears twice");
const BAD_SERVER_NAME = malformed("a bad server_name extension");
const BAD_ALPN = malformed("a bad ALPN extension");
const NO_ALPN: readonly string[] = Object.freeze([]);

// Duplicate-extension detection without allocating per hello: a 65536-bit map
// shared by all calls (the parser is synchronous), cleared after each use from
// the list of types it set.
const seenBits = new Uint32Array(65536 / 32);
const seenList = new Uint16Array(65536);

/** The whole body is there: done or reject, never more. */
export function parseClientHelloBody(buf: Uint8Array, start: number, length: number): Done<ClientHello> | HelloRefusal {
  const end = start + length;
  let p = start;
  // legacy_version(2) + random(32)
  p += 34;
  if (p + 1 > end) return TRUNCATED;
  // legacy_session_id<0..32>
  const sidLen = buf[p]!;
  if (sidLen > 32) return LONG_SESSION_ID;
  p += 1 + sidLen;
  if (p + 2 > end) return TRUNCATED;
  // cipher_suites<2..2^16-2>: an even, non-zero number of bytes.
  const csLen = (buf[p]! << 8) | buf[p + 1]!;
  if (csLen < 2 || (csLen & 1) !== 0) return CIPHER_SUITES;
  p += 2 + csLen;
  if (p + 1 > end) return TRUNCATED;
  // legacy_compression_methods<1..2^8-1>
  const cmLen = buf[p]!;
  if (cmLen < 1) return NO_COMPRESSION;
  p += 1 + cmLen;
  if (p > end) return TRUNCATED;
  // A TLS 1.2 (or older) hello may end here with no extensions at all.
  if (p === end) return done({ hostname: null, alpn: NO_ALPN, buf, start, length });
  if (p + 2 > end) return TRUNCATED;
  const extLen = (buf[p]! << 8) | buf[p + 1]!;
  p += 2;
  // The extensions vector must fill the rest of the message exactly.
  if (p + extLen !== end) return EXTENSIONS_LENGTH;

  let hostname: string | null = null;
  let alpn: readonly string[] = NO_ALPN;
  let seenCount = 0;
  let bad: HelloRefusal | null = null;
  while (p < end) {
    if (p + 4 > end) {
      bad = EXTENSION_PAST_END;
      break;
    }
    const type = (buf[p]! << 8) | buf[p + 1]!;
    const len = (buf[p + 2]! << 8) | buf[p + 3]!;
    p += 4;
    if (p + len > end) {
      bad = EXTENSION_PAST_END;
      break;
    }
    // RFC 8446 §4.2: "There MUST NOT be more than one extension of the same type".
    const word = type >>> 5;
    const bit = 1 << (type & 31);
    if ((seenBits[word]! & bit) !== 0) {
      bad = REPEATED_EXTENSION;
      break;
    }
    seenBits[word]! |= bit;
    seenList[seenCount++] = type;

    if (type === EXT_SERVER_NAME) {
      const name = parseServerName(buf, p, len);
      if (name === null) {
        bad = BAD_SERVER_NAME;
        break;
      }
      hostname = name;
    } else if (type === EXT_ALPN) {
      const protos = parseAlpn(buf, p, len);
      if (protos === null) {
        bad = BAD_ALPN;
        break;
      }
      alpn = protos;
    }
    p += len;
  }
  for (let i = 0; i < seenCount; i++) seenBits[seenList[i]! >>> 5] = 0;
  if (bad !== null) return bad;
  return done({ hostname, alpn, buf, start, length });
}

/**
 * server_name extension_data (RFC 6066 §3):
 *   struct { NameType name_type; select (name_type) { case host_name: HostName; } name; } ServerName;
 *   struct { ServerName server_name_list<1..2^16-1> } ServerNameList;
 * Returns the normalised host name, or null when the extension is malformed,
 * has no host_name, more than one, or an invalid one.
 */
function parseServerName(buf: Uint8Array, start: number, len: number): string | null {
  if (len < 2) return null;
  const listLen = (buf[start]! << 8) | buf[start + 1]!;
  if (listLen + 2 !== len || listLen < 1) return null;
  const end = start + len;
  let p = start + 2;
  let name: string | null = null;
  while (p < end) {
    if (p + 3 > end) return null;
    const nameType = buf[p]!;
    const nameLen = (buf[p + 1]! << 8) | buf[p + 2]!;
    p += 3;
    if (p + nameLen > end) return null;
    if (nameType === NAME_TYPE_HOST_NAME) {
      // "The ServerNameList MUST NOT contain more than one name of the same name_type."
      if (name !== null) return null;
      name = validateHostName(buf, p, nameLen);
      if (name === null) return null;
    }
    // Other name types are skipped: RFC 6066 defines none, and a future one
    // must not break routing on the host_name.
    p += nameLen;
  }
  return name;
}

/**
 * ALPN extension_data (RFC 7301 §3.1):
 *   opaque ProtocolName<1..2^8-1>; struct { ProtocolName protocol_name_list<2..2^16-1> } ProtocolNameList;
 */
function parseAlpn(buf: Uint8Array, start: number, len: number): string[] | null {
  if (len < 2) return null;
  const listLen = (buf[start]! << 8) | buf[start + 1]!;
  if (listLen + 2 !== len || listLen < 2) return null;
  const end = start + len;
  const out: string[] = [];
  let p = start + 2;
  while (p < end) {
    const n = buf[p]!;
    p += 1;
    if (n === 0 || p + n > end) return null;
    let s = "";
    for (let i = 0; i < n; i++) {
      const c = buf[p + i]!;
      // Protocol names are opaque bytes; show non-printable ones escaped so a
      // log line can never be broken by them.
      s +=
        c >= 0x21 && c <= 0x7e && c !== 0x22 && c !== 0x5c
          ? String.fromCharCode(c)
          : `%${c.toString(16).padStart(2, "0")}`;
    }
    out.push(s);
    p += n;
  }
  return out;
}
