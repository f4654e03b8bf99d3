// Host name rules shared by the ClientHello reader and the route validators
// (docs/SPEC.md §4): 1..253 bytes after one trailing dot is removed, only
// [A-Za-z0-9._-], compared lower-case, and no empty label (a leading dot, two
// dots in a row, or a dot left over at the end are not DNS names).

export const MAX_HOST_NAME_LEN = 253;

/** Validate and normalise a host name held in bytes; null when invalid. */
export function validateHostName(buf: Uint8Array, start: number, len: number): string | null {
  let n = len;
  // One trailing dot is the absolute form of the same name (RFC 1034 §3.1).
  if (n > 0 && buf[start + n - 1] === 0x2e) n--;
  if (n === 0 || n > MAX_HOST_NAME_LEN) return null;
  let s = "";
  let prev = 0x2e; // as if preceded by a dot, so a leading dot is an empty label
  for (let i = 0; i < n; i++) {
    let c = buf[start + i]!;
    if (c >= 0x41 && c <= 0x5a)
      c += 0x20; // A-Z -> a-z
    else if (c === 0x2e) {
      if (prev === 0x2e) return null;
    } else if (!((c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x5f)) return null;
    s += String.fromCharCode(c);
    prev = c;
  }
  if (prev === 0x2e) return null;
  return s;
}

/** The same rules for a host name given as a string (config, admin API). */
export function normaliseHostName(name: string): string | null {
  if (name.length > MAX_HOST_NAME_LEN + 1) return null;
  const bytes = new Uint8Array(name.length);
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c > 0x7f) return null;
    bytes[i] = c;
  }
  return validateHostName(bytes, 0, bytes.length);
}
