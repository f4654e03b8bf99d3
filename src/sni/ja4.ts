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
const NONE = "000000000000";

/** RFC 8701 §2: 0x0a0a, 0x1a1a, … 0xfafa. */
export function isGrease(v: number): boolean {
  return (v & 0x0f0f) === 0x0a0a && v >> 8 === (v & 0xff);
}

const VERSIONS: Record<number, string> = { 772: "13", 771: "12", 770: "11", 769: "10", 768: "s3", 2: "s2", 65279: "d1", 65277: "d2", 65276: "d3" };

/** "00" … "ff", made once: formatting numbers was most of a fingerprint's cost. */
const HEX2: readonly string[] = Array.from({ length: 256 }, (_, v) => v.toString(16).padStart(2, "0"));
const byValue = (x: number, y: number) => x - y;

/** Values as comma-separated 4-digit lower-case hex. */
function hexList(vs: readonly number[]): string {
  let out = "";
  for (let i = 0; i < vs.length; i++) {
    const v = vs[i]!;
    out += (i === 0 ? "" : ",") + HEX2[v >> 8]! + HEX2[v & 0xff]!;
  }
  return out;
}
const count2 = (n: number) => (n > 99 ? "99" : n.toString().padStart(2, "0"));

/** sha256, lower-case hex, its first 12 characters (Bun.SHA256: a third cheaper than node:crypto's, measured). */
export function hash12(text: string): string {
  return (Bun.SHA256.hash(text, "hex") as string).slice(0, 12);
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
  const legacyVersion = u16(p);
  p += 34;
  p += 1 + buf[p]!;
  if (p + 2 > end) return "";
  const csLen = u16(p);
  p += 2;
  if (p + csLen > end) return "";
  const ciphers: number[] = [];
  for (let i = 0; i + 1 < csLen; i += 2) {
    const c = u16(p + i);
    if (!isGrease(c)) ciphers.push(c);
  }
  p += csLen;
  if (p + 1 > end) return "";
  p += 1 + buf[p]!;
  if (p > end) return "";
  const exts: number[] = [];
  let extCount = 0;
  let sni = false;
  let alpn = "00";
  let version = -1;
  let sigalgs: number[] = [];
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
      } else exts.push(type);
      if (type === EXT_SIGNATURE_ALGORITHMS && len >= 2) {
        sigalgs = [];
        const n = Math.min(u16(d), len - 2);
        for (let i = 0; i + 1 < n; i += 2) {
          const s = u16(d + 2 + i);
          if (!isGrease(s)) sigalgs.push(s);
        }
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
  const v = VERSIONS[version >= 0 ? version : legacyVersion] ?? "00";
  const a = `${transport}${v}${sni ? "d" : "i"}${count2(ciphers.length)}${count2(extCount)}${alpn}`;
  const b = ciphers.length === 0 ? NONE : hash12(hexList(ciphers.sort(byValue)));
  const extList = hexList(exts.sort(byValue));
  const c = exts.length === 0 ? NONE : hash12(sigalgs.length === 0 ? extList : `${extList}_${hexList(sigalgs)}`);
  return `${a}_${b}_${c}`;
}
