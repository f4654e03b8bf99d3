// The ClientHello of a new QUIC flow, read from its first datagrams: a
// state machine fed whole datagrams, pure and socket-free like the TCP
// reader (sni/client_hello_reader.ts), handing the completed handshake
// message to the same parser (sni/client_hello_body.ts).
//
// - The first datagram must carry a client Initial of a version this reads
//   and be at least 1200 bytes (RFC 9000 §14.1: smaller ones are dropped,
//   which also bounds what a spoofed source can make us do).
// - Keys come from that first Initial's Destination Connection ID; later
//   Initials of the flow use the same keys (the client keeps that ID until
//   the server answers, and nothing is forwarded before the hello is read).
// - CRYPTO frames are gathered from every Initial of every datagram, coalesced
//   or not, in any order; 0-RTT and other packets are kept, not read.
// - At most maxDatagrams datagrams and maxHelloBytes of CRYPTO data.
// - The work a datagram costs is bounded whatever it holds: at most
//   MAX_PACKETS_PER_DATAGRAM packets are walked (each Initial among them is
//   one header-protection removal and one AEAD decryption), and the frames
//   of all its Initials are bounded together (crypto_stream.ts:
//   MAX_FRAMES_PER_DATAGRAM, MAX_CRYPTO_RANGES per flow). Past a bound the
//   flow is refused as malformed. A client coalesces at most one packet of
//   each type (RFC 9000 §12.2): Initial, 0-RTT, Handshake.
import { MORE, type ReadResult, done, reject } from "../net/reader";
import { parseClientHelloBody } from "../sni/client_hello_body";
import type { ClientHello } from "../sni/hello_result";
import { CryptoStream, MAX_FRAMES_PER_DATAGRAM } from "./crypto_stream";
import { type InitialKeys, knownVersion } from "./initial_keys";
import { readPacket } from "./packet";

export const MIN_INITIAL_DATAGRAM = 1200;
/** Packets read from one datagram at most (a client coalesces 1–3). */
export const MAX_PACKETS_PER_DATAGRAM = 8;

/** Why a flow's first datagrams were refused: the access-log outcomes (docs/SPEC.md §9). */
export type QuicReject = "not_quic" | "quic_version" | "malformed" | "too_large" | "not_tls";

/** A flow's ClientHello, and the QUIC version and Destination Connection ID of its first Initial. */
export interface QuicHello {
  readonly hello: ClientHello;
  readonly version: number;
  readonly dcid: Uint8Array;
}

export type QuicFeed = ReadResult<QuicHello, QuicReject>;

const TOO_MANY_PACKETS = reject("malformed", `more than ${MAX_PACKETS_PER_DATAGRAM} packets in a datagram`);
const CLOSE_FIRST = reject("malformed", "CONNECTION_CLOSE before the hello");

export class QuicHelloReader {
  private keys: InitialKeys | null = null;
  private version = 0;
  private dcid: Uint8Array = new Uint8Array(0);
  private datagrams = 0;
  private readonly stream: CryptoStream;

  constructor(
    maxHelloBytes: number,
    private readonly maxDatagrams = 16,
  ) {
    this.stream = new CryptoStream(maxHelloBytes);
  }

  feed(d: Uint8Array): QuicFeed {
    this.datagrams++;
    if (this.datagrams > this.maxDatagrams)
      return reject("too_large", `no complete ClientHello in ${this.maxDatagrams} datagrams`);
    let off = 0;
    let sawInitial = false;
    let packets = 0;
    let frames = MAX_FRAMES_PER_DATAGRAM;
    while (off < d.length) {
      if (packets++ === MAX_PACKETS_PER_DATAGRAM) {
        // What follows the last packet may be padding (zeros: RFC 9000 §14.1) or junk, not read; another long header is refused.
        if ((d[off]! & 0x80) === 0) break;
        return TOO_MANY_PACKETS;
      }
      const pk = readPacket(d, off, this.keys);
      if (pk.kind === "bad") {
        // Only the flow's first datagram decides whether it is QUIC. Later,
        // an unreadable packet (junk after the last packet, or a forged or
        // damaged Initial) is dropped from reading, not held against the
        // flow: the datagram is still forwarded once the flow is routed.
        if (this.keys !== null || sawInitial) break;
        return reject("not_quic", pk.reason);
      }
      if (pk.kind === "unknown_version")
        return reject("quic_version", `version 0x${pk.version.toString(16).padStart(8, "0")}`);
      if (pk.kind === "version_negotiation" || pk.kind === "short") {
        if (this.keys === null)
          return reject(
            "not_quic",
            `a ${pk.kind === "short" ? "short-header" : "version negotiation"} packet opens the flow`,
          );
        break;
      }
      if (pk.kind === "long") {
        if (this.keys === null) return reject("not_quic", `a ${pk.type} packet opens the flow`);
        off = pk.end;
        continue;
      }
      if (this.keys === null) {
        if (d.length < MIN_INITIAL_DATAGRAM)
          return reject("not_quic", `an Initial datagram of ${d.length} bytes (at least ${MIN_INITIAL_DATAGRAM})`);
        if (!knownVersion(pk.version)) return reject("quic_version", `version ${pk.version}`);
        this.keys = pk.keys;
        this.version = pk.version;
        this.dcid = Uint8Array.from(pk.dcid);
      }
      sawInitial = true;
      const r = this.stream.addFrames(pk.payload, frames);
      if (r.kind === "connection_close") return CLOSE_FIRST;
      if (r.kind === "reject") return r;
      frames -= r.frames;
      off = pk.end;
    }
    return this.complete();
  }

  /** The ClientHello once its handshake message is whole (RFC 8446 §4: type 1, uint24 length). */
  private complete(): QuicFeed {
    const n = this.stream.contiguous;
    if (n < 4) return MORE;
    const b = this.stream.prefix(n);
    if (b[0] !== 1) return reject("not_tls", `handshake type ${b[0]} (not a ClientHello)`);
    const len = (b[1]! << 16) | (b[2]! << 8) | b[3]!;
    if (4 + len > this.stream.max) return reject("too_large", `a ClientHello of ${len} bytes`);
    if (n < 4 + len) return MORE;
    // The parser's result keeps (buf, start, length) for JA4; the buffer is ours alone.
    const body = b.slice(0, 4 + len);
    const r = parseClientHelloBody(body, 4, len);
    if (r.kind === "reject") return r;
    return done({ hello: r.value, version: this.version, dcid: this.dcid });
  }
}
