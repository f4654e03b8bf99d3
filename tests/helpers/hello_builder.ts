// Builds ClientHello messages and TLS records byte by byte for tests, so each
// reject class can be produced exactly (RFC 8446 §4.1.2, §5.1; RFC 6066 §3).

export interface Extension {
  type: number;
  data: Uint8Array;
}

export function u16(n: number): number[] {
  return [(n >> 8) & 0xff, n & 0xff];
}

export function u24(n: number): number[] {
  return [(n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
}

export function concat(...parts: (Uint8Array | number[])[]): Uint8Array {
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(total);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** server_name extension with the given host names (as raw bytes or strings). */
export function sniExtension(...names: (string | Uint8Array)[]): Extension {
  const entries = names.map((n) => {
    const b = typeof n === "string" ? new TextEncoder().encode(n) : n;
    return concat([0], u16(b.length), b);
  });
  const list = concat(...entries);
  return { type: 0, data: concat(u16(list.length), list) };
}

export function alpnExtension(...protos: string[]): Extension {
  const entries = protos.map((p) => {
    const b = new TextEncoder().encode(p);
    return concat([b.length], b);
  });
  const list = concat(...entries);
  return { type: 16, data: concat(u16(list.length), list) };
}

export function paddingExtension(size: number, type = 21): Extension {
  return { type, data: new Uint8Array(size) };
}

/** The body of a ClientHello (no handshake header). */
export function clientHelloBody(extensions: Extension[] | null, opts: { sessionId?: number } = {}): Uint8Array {
  const sid = opts.sessionId ?? 32;
  const parts: (Uint8Array | number[])[] = [
    [3, 3],
    new Uint8Array(32).fill(7),
    [sid],
    new Uint8Array(sid).fill(1),
    u16(4),
    [0x13, 0x01, 0x13, 0x02],
    [1, 0],
  ];
  if (extensions !== null) {
    const exts = concat(...extensions.map((e) => concat(u16(e.type), u16(e.data.length), e.data)));
    parts.push(u16(exts.length), exts);
  }
  return concat(...parts);
}

/** A handshake message: type + uint24 length + body. */
export function handshake(body: Uint8Array, type = 1): Uint8Array {
  return concat([type], u24(body.length), body);
}

/** Wrap handshake bytes into TLS records of at most `recordSize` bytes each. */
export function records(hs: Uint8Array, recordSize = 16384, contentType = 22): Uint8Array {
  const out: Uint8Array[] = [];
  for (let o = 0; o < hs.length; o += recordSize) {
    const frag = hs.subarray(o, Math.min(hs.length, o + recordSize));
    out.push(concat([contentType, 3, 1], u16(frag.length), frag));
  }
  return concat(...out);
}

/** A complete single-record ClientHello for `name`. */
export function helloFor(name: string | null, alpn: string[] = []): Uint8Array {
  const exts: Extension[] = [];
  if (name !== null) exts.push(sniExtension(name));
  if (alpn.length > 0) exts.push(alpnExtension(...alpn));
  exts.push(paddingExtension(10, 43));
  return records(handshake(clientHelloBody(exts)));
}
