// The ClientHello a TLS health check sends: a real TLS 1.3 / 1.2
// ClientHello for the route's name (RFC 8446 §4.1.2), so that a backend
// that serves that name answers with a ServerHello. The check reads only the
// first record header and the handshake type, then closes: it never
// completes a handshake, and the proxy still never terminates TLS.
//
// HAProxy's ssl-hello-chk (the nearest peer, measured) sends an SSLv3 hello
// without a server name and counts any reply starting 0x15 or 0x16 as
// healthy — a backend answering with an alert stays in rotation. Here only a
// ServerHello (handshake type 2) is healthy.

const u16 = (n: number) => [(n >> 8) & 0xff, n & 0xff];

function ext(type: number, body: number[]): number[] {
  return [...u16(type), ...u16(body.length), ...body];
}

/** A ClientHello record for `serverName` (null: none, for a default route). */
export function healthCheckHello(serverName: string | null): Uint8Array {
  const random = Array.from(crypto.getRandomValues(new Uint8Array(32)));
  const sessionId = Array.from(crypto.getRandomValues(new Uint8Array(32)));
  // TLS 1.3 suites, then ECDHE suites for TLS 1.2 servers.
  const suites = [0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8].flatMap(u16);
  const keyShare = Array.from(crypto.getRandomValues(new Uint8Array(32)));
  const exts: number[] = [];
  if (serverName !== null) {
    const name = Array.from(new TextEncoder().encode(serverName));
    exts.push(...ext(0x0000, [...u16(name.length + 3), 0, ...u16(name.length), ...name]));
  }
  exts.push(...ext(0x000a, [...u16(4), ...u16(0x001d), ...u16(0x0017)])); // supported_groups: x25519, secp256r1
  exts.push(...ext(0x000b, [1, 0])); // ec_point_formats: uncompressed
  exts.push(...ext(0x000d, [...u16(12), ...[0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501].flatMap(u16)])); // signature_algorithms
  exts.push(...ext(0x002b, [4, ...u16(0x0304), ...u16(0x0303)])); // supported_versions: 1.3, 1.2
  exts.push(...ext(0x002d, [1, 1])); // psk_key_exchange_modes: psk_dhe_ke
  exts.push(...ext(0x0033, [...u16(36), ...u16(0x001d), ...u16(32), ...keyShare])); // key_share: x25519
  const body = [
    3,
    3,
    ...random,
    sessionId.length,
    ...sessionId,
    ...u16(suites.length),
    ...suites,
    1,
    0,
    ...u16(exts.length),
    ...exts,
  ];
  const hs = [1, (body.length >> 16) & 0xff, ...u16(body.length & 0xffff), ...body];
  return new Uint8Array([22, 3, 1, ...u16(hs.length), ...hs]);
}

/** The first bytes of a reply are a ServerHello (a handshake record whose first message is type 2); null until 6 bytes are in. */
export function isServerHello(reply: Uint8Array): boolean | null {
  if (reply.length < 6) return reply.length > 0 && reply[0] !== 22 ? false : null;
  return reply[0] === 22 && reply[1] === 3 && reply[5] === 2;
}

/** The name a check sends for a route: the hostname, a name under a wildcard, or none for a default route. */
export function checkServerName(routeHostname: string): string | null {
  if (routeHostname === "") return null;
  return routeHostname.startsWith("*.") ? `mc-proxy-health-check.${routeHostname.slice(2)}` : routeHostname;
}
