// ClientHelloReader: a pure, synchronous state machine that is fed the first
// bytes of a TCP stream in chunks of any size (down to one byte) and decides
// whether they open a TLS connection, and if so which server name it asks for.
//
// It reassembles the first handshake message across any number of TLS records
// (RFC 8446 §5.1: "a single message MAY be fragmented across several records")
// and any number of TCP segments, and never reads a byte it has not been given.
// It does not keep the raw bytes: the connection keeps those for replay.

import { MORE, reject } from "../net/reader";
import { parseClientHelloBody } from "./client_hello_body";
import type { HelloResult } from "./hello_result";

/** TLS record layer constants, RFC 8446 §5.1. */
const CONTENT_TYPE_HANDSHAKE = 22;
const RECORD_HEADER_LEN = 5;
/** TLSPlaintext.length MUST NOT exceed 2^14; TLSCiphertext allows 2^14 + 256;
 *  we accept up to 2^14 + 2048 (docs/SPEC.md §4) so that no real client is cut off. */
const MAX_RECORD_LEN = 16384 + 2048;
/** Handshake header: msg_type(1) + uint24 length, RFC 8446 §4. */
const HANDSHAKE_HEADER_LEN = 4;
const HANDSHAKE_CLIENT_HELLO = 1;

const NOT_TLS = reject("not_tls", "the first bytes are not a TLS handshake record");
const NOT_HANDSHAKE = reject("malformed", "a later record is not a TLS handshake record");
const BAD_RECORD_LENGTH = reject("malformed", "a record of length 0 or over 2^14 + 2048");
const NOT_CLIENT_HELLO = reject("malformed", "the handshake message is not a ClientHello");
const TOO_LARGE = reject("too_large", "a ClientHello over max_hello_bytes");

const enum State {
  RecordHeader,
  RecordBody,
  Done,
}

export const DEFAULT_MAX_HELLO_BYTES = 65536;

export class ClientHelloReader {
  private state = State.RecordHeader;
  /** Bytes of the current record header collected so far (0..5). */
  private headerFill = 0;
  private readonly header = new Uint8Array(RECORD_HEADER_LEN);
  /** Bytes of the current record's fragment still to come. */
  private recordRemaining = 0;
  private recordsSeen = 0;
  /** Handshake message header (type + length), collected across records. */
  private readonly hsHeader = new Uint8Array(HANDSHAKE_HEADER_LEN);
  private hsHeaderFill = 0;
  /** ClientHello body, allocated once its declared length is known and allowed. */
  private body: Uint8Array | null = null;
  private bodyFill = 0;
  private result: HelloResult = MORE;
  /** Stream bytes fed before the current chunk. */
  private fed = 0;
  /**
   * Where the ClientHello ends in the stream: the end of the record that
   * completes it (RFC 8446 §5.1: a record holds one content type, so what
   * follows is another record: early data or later application bytes).
   * 0 until done.
   */
  helloEnd = 0;

  constructor(private readonly maxHelloBytes: number = DEFAULT_MAX_HELLO_BYTES) {}

  /**
   * The common case without a reader: `chunk` starts with one handshake
   * record that holds the whole ClientHello. Returns done or reject, or more
   * when this chunk alone does not settle it (then feed a ClientHelloReader,
   * which gives the same answer for the same bytes).
   */
  static readWhole(chunk: Uint8Array, maxHelloBytes: number = DEFAULT_MAX_HELLO_BYTES): HelloResult {
    if (chunk.length < RECORD_HEADER_LEN + HANDSHAKE_HEADER_LEN) return MORE;
    if (chunk[0] !== CONTENT_TYPE_HANDSHAKE || chunk[1] !== 3 || chunk[5] !== HANDSHAKE_CLIENT_HELLO) return MORE;
    const recLen = (chunk[3]! << 8) | chunk[4]!;
    if (recLen < HANDSHAKE_HEADER_LEN || recLen > MAX_RECORD_LEN || chunk.length < RECORD_HEADER_LEN + recLen)
      return MORE;
    const bodyLen = (chunk[6]! << 16) | (chunk[7]! << 8) | chunk[8]!;
    if (HANDSHAKE_HEADER_LEN + bodyLen > recLen) return MORE;
    if (HANDSHAKE_HEADER_LEN + bodyLen > maxHelloBytes) return TOO_LARGE;
    return parseClientHelloBody(chunk, RECORD_HEADER_LEN + HANDSHAKE_HEADER_LEN, bodyLen);
  }

  /**
   * Feed the next chunk of the stream. Returns more while bytes are needed,
   * then done or reject (and the same on every later call). Never throws on
   * any input.
   */
  feed(chunk: Uint8Array): HelloResult {
    if (this.result.kind !== "more") return this.result;
    const len = chunk.length;
    let i = 0;
    while (i < len) {
      if (this.state === State.RecordHeader) {
        const take = Math.min(RECORD_HEADER_LEN - this.headerFill, len - i);
        for (let k = 0; k < take; k++) {
          const b = chunk[i + k]!;
          this.header[this.headerFill + k] = b;
          // Decide on the earliest byte that settles it: an HTTP request or an
          // SSLv2 hello is rejected on its first byte.
          const pos = this.headerFill + k;
          if ((pos === 0 && b !== CONTENT_TYPE_HANDSHAKE) || (pos === 1 && b !== 3)) {
            return this.finish(this.recordsSeen === 0 ? NOT_TLS : NOT_HANDSHAKE);
          }
        }
        this.headerFill += take;
        i += take;
        if (this.headerFill < RECORD_HEADER_LEN) break;
        const recLen = (this.header[3]! << 8) | this.header[4]!;
        // RFC 8446 §5.1: zero-length Handshake fragments MUST NOT be sent.
        if (recLen === 0 || recLen > MAX_RECORD_LEN) return this.finish(BAD_RECORD_LENGTH);
        this.recordRemaining = recLen;
        this.recordsSeen++;
        this.headerFill = 0;
        this.state = State.RecordBody;
        continue;
      }
      // State.RecordBody
      const take = Math.min(this.recordRemaining, len - i);
      const r = this.absorb(chunk, i, take);
      if (r.kind !== "more") {
        this.helloEnd = this.fed + i + this.recordRemaining;
        return this.finish(r);
      }
      i += take;
      this.recordRemaining -= take;
      if (this.recordRemaining === 0) this.state = State.RecordHeader;
    }
    this.fed += len;
    return MORE;
  }

  /** For a chunk readWhole settled: where its ClientHello record ends. */
  static wholeEnd(chunk: Uint8Array): number {
    return RECORD_HEADER_LEN + ((chunk[3]! << 8) | chunk[4]!);
  }

  /** Take `n` bytes of handshake data from `chunk` at `off`. */
  private absorb(chunk: Uint8Array, off: number, n: number): HelloResult {
    let k = 0;
    if (this.hsHeaderFill < HANDSHAKE_HEADER_LEN) {
      while (k < n && this.hsHeaderFill < HANDSHAKE_HEADER_LEN) {
        this.hsHeader[this.hsHeaderFill++] = chunk[off + k++]!;
      }
      if (this.hsHeaderFill < HANDSHAKE_HEADER_LEN) return MORE;
      if (this.hsHeader[0] !== HANDSHAKE_CLIENT_HELLO) return NOT_CLIENT_HELLO;
      const bodyLen = (this.hsHeader[1]! << 16) | (this.hsHeader[2]! << 8) | this.hsHeader[3]!;
      // Reject as soon as the header declares a size over the cap, before
      // buffering any of it.
      if (HANDSHAKE_HEADER_LEN + bodyLen > this.maxHelloBytes) return TOO_LARGE;
      // Fast path: the whole body is in this chunk; parse it in place.
      if (n - k >= bodyLen) {
        return parseClientHelloBody(chunk, off + k, bodyLen);
      }
      this.body = new Uint8Array(bodyLen);
    }
    const body = this.body!;
    const want = Math.min(body.length - this.bodyFill, n - k);
    body.set(chunk.subarray(off + k, off + k + want), this.bodyFill);
    this.bodyFill += want;
    if (this.bodyFill === body.length) return parseClientHelloBody(body, 0, body.length);
    return MORE;
  }

  private finish(r: HelloResult): HelloResult {
    this.state = State.Done;
    this.body = null;
    this.result = r;
    return r;
  }
}
