// The bytes read from a client before the relay starts (after any PROXY
// header) — what tcpproxy calls the peeked bytes: the ClientHello, and
// whatever followed it while the backend connect was pending. They reach the
// backend whole and in order; when they are the ClientHello alone they may
// go again to the next backend after an empty failure, never otherwise.

import type { HelloResult } from "../sni/hello_result";
import { ClientHelloReader } from "../sni/client_hello_reader";

export class Peeked {
  /** The first chunk, then (rarely) the rest. */
  private first: Uint8Array | null = null;
  private more: Uint8Array[] | null = null;
  /** Made only when the first chunk does not hold the whole hello. */
  private reader: ClientHelloReader | null = null;
  /** Bytes held. */
  length = 0;
  /** Where the ClientHello ends among them (RFC 8446 §5.1: at its record's end); 0 until read. */
  helloEnd = 0;

  /** Hold a chunk. */
  add(chunk: Uint8Array): void {
    if (this.first === null) this.first = chunk;
    else (this.more ??= []).push(chunk);
    this.length += chunk.length;
  }

  /**
   * Read the ClientHello from the chunk just added (the reader contract,
   * net/reader.ts): more while bytes are needed, then done or reject. The
   * common case — one chunk holding the whole hello — needs no reader.
   */
  readHello(chunk: Uint8Array, maxHelloBytes: number): HelloResult {
    if (this.more === null) {
      const r = ClientHelloReader.readWhole(chunk, maxHelloBytes);
      if (r.kind !== "more") {
        this.helloEnd = ClientHelloReader.wholeEnd(chunk);
        return r;
      }
    }
    this.reader ??= new ClientHelloReader(maxHelloBytes);
    const r = this.reader.feed(chunk);
    if (r.kind === "more") return r;
    this.helloEnd = this.reader.helloEnd;
    this.reader = null;
    return r;
  }

  /** Everything held, in order, as one buffer; nothing is held after. */
  take(): Uint8Array {
    const first = this.first!;
    const more = this.more;
    this.first = this.more = null;
    this.length = 0;
    return more === null ? first : Buffer.concat([first, ...more]);
  }

  /** Hold `bytes` again (a retry: they go to the next backend first). */
  restore(bytes: Uint8Array): void {
    this.first = bytes;
    this.more = null;
    this.length = bytes.length;
  }

  /** Drop everything (the connection is refused). */
  clear(): void {
    this.first = this.more = null;
    this.reader = null;
    this.length = 0;
  }
}
