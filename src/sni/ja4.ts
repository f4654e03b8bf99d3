// JA4, the TLS client fingerprint (FoxIO, technical_details/JA4.md in
// FoxIO-LLC/ja4, BSD 3-Clause; written here from the specification):
//
//   a: transport ("t" TCP, "q" QUIC) + version (2) + "d" SNI / "i" none
//      + cipher count (2) + extension count (2) + ALPN first/last (2)
//   b: sha256 of the sorted cipher list, 12 hex          ("000000000000" if none)
//   c: sha256 of the sorted extension list (no SNI, no ALPN) "_" the
//      signature algorithms in their order, 12 hex       ("000000000000" if none)
//
// GREASE values (RFC 8701 §2: 0x?a?a with both bytes equal) are ignored
// everywhere. Fed the ClientHello body (RFC 8446 §4.1.2) the hello parser
// already accepted; pure and synchronous, it returns "" for bytes it cannot
// walk rather than throwing.

export type Ja4Transport = "t" | "q";

const EXT_SERVER_NAME = 0x0000;
const EXT_ALPN = 0x0010;
const EXT_SIGNATURE_ALGORITHMS = 0x000d;
const EXT_SUPPORTED_VERSIONS = 0x002b;

/** RFC 8701 §2: 0x0a0a, 0x1a1a, … 0xfafa. */
export function isGrease(v: number): boolean {
  return (v & 0x0f0f) === 0x0a0a && v >> 8 === (v & 0xff);
}

const VERSIONS: Record<number, string> = {
  772: "13",
  771: "12",
  770: "11",
  769: "10",
  768: "s3",
  2: "s2",
  65279: "d1",
  65277: "d2",
  65276: "d3",
};

/** ASCII codes of "0"–"9", "a"–"f". */
const HEX_ASCII = Uint8Array.from("0123456789abcdef", (c) => c.charCodeAt(0));

// Scratch space reused by every call (ja4() is synchronous): the values as
// numbers, their hashed text as ASCII bytes, the digest. A hello of n bytes
// has at most n / 2 values and n / 2 × 5 bytes of text; the buffers grow to
// the largest hello seen and are never allocated per call.
let values = new Uint16Array(256);
let text = new Uint8Array(2048);
const digest = new Uint8Array(32);

function room(helloBytes: number): void {
  if (values.length < helloBytes / 2 + 2) values = new Uint16Array(helloBytes / 2 + 2);
  if (text.length < helloBytes * 3 + 16) text = new Uint8Array(helloBytes * 3 + 16);
}

/** Write vs[from, to) as comma-separated 4-digit lower-case hex into `text` at pos; the new pos. */
function writeHex(vs: Uint16Array, from: number, to: number, pos: number): number {
  for (let i = from; i < to; i++) {
    if (i > from) text[pos++] = 0x2c;
    const v = vs[i]!;
    text[pos++] = HEX_ASCII[v >> 12]!;
    text[pos++] = HEX_ASCII[(v >> 8) & 15]!;
    text[pos++] = HEX_ASCII[(v >> 4) & 15]!;
    text[pos++] = HEX_ASCII[v & 15]!;
  }
  return pos;
}

/** The first 12 hex characters of sha256(text[0, n)), written into OUT at `at`. */
function digest12(n: number, at: number): void {
  Bun.SHA256.hash(text.subarray(0, n), digest);
  for (let i = 0; i < 6; i++) {
    OUT[at + 2 * i] = HEX_ASCII[digest[i]! >> 4]!;
    OUT[at + 2 * i + 1] = HEX_ASCII[digest[i]! & 15]!;
  }
}

/** sha256, lower-case hex, its first 12 characters (for the tests' derivations). */
export function hash12(s: string): string {
  return (Bun.SHA256.hash(s, "hex") as string).slice(0, 12);
}

function isAlnum(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
}

/**
 * The ALPN part: the first and last characters of the first ALPN value;
 * when either of those bytes is not alphanumeric, the first and last
 * characters of the value's hex form (JA4.md "ALPN Extension Value");
 * "00" without a value.
 */
export function alpnChars(buf: Uint8Array, start: number, length: number): string {
  if (length === 0) return "00";
  const first = buf[start]!;
  const last = buf[start + length - 1]!;
  if (isAlnum(first) && isAlnum(last)) return String.fromCharCode(first) + String.fromCharCode(last);
  const h = (b: number) => b.toString(16).padStart(2, "0");
  return h(first)[0]! + h(last)[1]!;
}

/** JA4 of the ClientHello body at buf[start, start + length); "" when it cannot be walked. */
export function ja4(buf: Uint8Array, start: number, length: number, transport: Ja4Transport = "t"): string {
  const end = start + length;
  const u16 = (p: number) => (buf[p]! << 8) | buf[p + 1]!;
  let p = start;
  if (p + 35 > end) return "";
  room(length);
  const legacyVersion = u16(p);
  p += 34;
  p += 1 + buf[p]!;
  if (p + 2 > end) return "";
  const csLen = u16(p);
  p += 2;
  if (p + csLen > end) return "";
  // values[0, nc): ciphers; then the extensions; then the signature algorithms.
  let nc = 0;
  for (let i = 0; i + 1 < csLen; i += 2) {
    const c = u16(p + i);
    if (!isGrease(c)) values[nc++] = c;
  }
  p += csLen;
  if (p + 1 > end) return "";
  p += 1 + buf[p]!;
  if (p > end) return "";
  let ne = nc;
  let extCount = 0;
  let sni = false;
  let alpn = "00";
  let version = -1;
  let sigStart = -1;
  let sigLen = 0;
  if (p + 2 <= end) {
    const extEnd = Math.min(end, p + 2 + u16(p));
    p += 2;
    while (p + 4 <= extEnd) {
      const type = u16(p);
      const len = u16(p + 2);
      const d = p + 4;
      if (d + len > extEnd) return "";
      p = d + len;
      if (isGrease(type)) continue;
      extCount++;
      if (type === EXT_SERVER_NAME) sni = true;
      else if (type === EXT_ALPN) {
        // protocol_name_list<2..2^16-1>, each ProtocolName<1..2^8-1>
        if (len >= 3) alpn = alpnChars(buf, d + 3, Math.min(buf[d + 2]!, len - 3));
      } else values[ne++] = type;
      if (type === EXT_SIGNATURE_ALGORITHMS && len >= 2) {
        // The last one counts; read after the extensions, in the hello's order.
        sigStart = d + 2;
        sigLen = Math.min(u16(d), len - 2);
      } else if (type === EXT_SUPPORTED_VERSIONS && len >= 1) {
        // The client's form: versions<2..254>, one byte of length.
        const n = Math.min(buf[d]!, len - 1);
        for (let i = 0; i + 1 < n; i += 2) {
          const v = u16(d + 1 + i);
          if (!isGrease(v) && v > version) version = v;
        }
      }
    }
  }
  let ns = ne;
  for (let i = 0; sigStart >= 0 && i + 1 < sigLen; i += 2) {
    const sa = u16(sigStart + i);
    if (!isGrease(sa)) values[ns++] = sa;
  }
  // The fingerprint's 36 characters, written as bytes and made one flat
  // string at the end: no rope of parts is kept for as long as the
  // connection holds it, and little garbage is made per hello.
  const v = VERSIONS[version >= 0 ? version : legacyVersion] ?? "00";
  const out = OUT;
  out[0] = transport.charCodeAt(0);
  out[1] = v.charCodeAt(0);
  out[2] = v.charCodeAt(1);
  out[3] = sni ? 0x64 : 0x69;
  put2(out, 4, nc);
  put2(out, 6, extCount);
  out[8] = alpn.charCodeAt(0);
  out[9] = alpn.charCodeAt(1);
  out[10] = out[23] = 0x5f;
  values.subarray(0, nc).sort();
  if (nc === 0) out.fill(0x30, 11, 23);
  else digest12(writeHex(values, 0, nc, 0), 11);
  values.subarray(nc, ne).sort();
  let n = writeHex(values, nc, ne, 0);
  if (ns > ne) {
    text[n++] = 0x5f; // "_"
    n = writeHex(values, ne, ns, n);
  }
  if (ne === nc) out.fill(0x30, 24, 36);
  else digest12(n, 24);
  return String.fromCharCode.apply(null, out as unknown as number[]);
}

const OUT = new Uint8Array(36);

/** A count as two decimal digits, capped at 99. */
function put2(out: Uint8Array, at: number, n: number): void {
  const c = Math.min(n, 99);
  out[at] = 0x30 + Math.floor(c / 10);
  out[at + 1] = 0x30 + (c % 10);
}
