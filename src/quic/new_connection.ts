// Whether a datagram from a routed flow's client address belongs to another
// QUIC connection. A flow is admitted by its first Initial; a client's later
// long-header packets (Initial, 0-RTT, Handshake: RFC 9000 §17.2) name either
// that Initial's Destination Connection ID or one the server chose — the
// Source Connection ID of its Initial or Retry (§7.2). A long header naming
// any other is a new connection's, which must be admitted on its own, not
// relayed under the flow's admission. Every packet of a coalesced datagram
// is checked (§12.2: a receiver may read them all). Short headers carry no
// connection-ID length and no new connection: they are the flow's. Pure;
// reads the clear header only (RFC 8999 §5.1), never decrypts.
import { QUIC_V2 } from "./initial_keys";
import { longHeaderIds, varint } from "./packet";

/** Long-header packets walked in one datagram at most; past it, a stranger's (a client coalesces 1–3). */
const MAX_PACKETS = 8;

/**
 * True when a long-header packet of `d` names a Destination Connection ID
 * (hex) other than the flow's `first` (its first Initial's) and the server's
 * `learned` ones, or cannot be read: not the flow's, not to relay.
 */
export function opensNewConnection(d: Uint8Array, first: string, learned: readonly string[]): boolean {
  let off = 0;
  for (let n = 0; off < d.length && (d[off]! & 0x80) !== 0; n++) {
    if (n === MAX_PACKETS) return true;
    const ids = longHeaderIds(d, off);
    // An unreadable long header is no packet of the flow's connection either.
    if ("bad" in ids) return true;
    const dcid = Buffer.from(ids.dcid).toString("hex");
    if (dcid !== first && !learned.includes(dcid)) return true;
    const end = packetEnd(d, d[off]!, ids.version, ids.next);
    if (end === null) return false;
    off = end;
  }
  return false;
}

/** Where a v1 or v2 long-header packet ends (its Length field), or null: a Retry, another version, or unreadable. */
function packetEnd(d: Uint8Array, first: number, version: number, p: number): number | null {
  if (version !== 1 && version !== QUIC_V2) return null;
  const bits = (first >> 4) & 3;
  // v1: 0 Initial, 3 Retry; v2 (RFC 9369 §3.2): 1 Initial, 0 Retry.
  const initial = version === QUIC_V2 ? bits === 1 : bits === 0;
  const retry = version === QUIC_V2 ? bits === 0 : bits === 3;
  if (retry) return null;
  if (initial) {
    const t = varint(d, p, d.length);
    if (t === null) return null;
    p = t[1] + t[0];
  }
  const l = varint(d, p, d.length);
  if (l === null || l[1] + l[0] > d.length) return null;
  return l[1] + l[0];
}
