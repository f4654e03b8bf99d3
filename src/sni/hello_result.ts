// What reading a ClientHello gives (the reader contract, net/reader.ts): the
// hello's server name and ALPN, or why the first bytes were refused.

import type { ReadResult, Reject } from "../net/reader";

/** Why the first bytes of a connection were refused (docs/SPEC.md §4, §9 outcome names). */
export type HelloReject = "not_tls" | "malformed" | "too_large";

/**
 * Where the accepted hello's body lies (buf[start, start + length)), for
 * what reads more of it later in the same turn: the JA4 fingerprint (ja4.ts).
 */
export interface HelloBody {
  readonly buf: Uint8Array;
  readonly start: number;
  readonly length: number;
}

export interface ClientHello extends HelloBody {
  /** The server_name's host name (RFC 6066 §3), normalised; null when the hello names none. */
  readonly hostname: string | null;
  /** The ALPN protocol names (RFC 7301 §3.1), in the client's order. */
  readonly alpn: readonly string[];
}

export type HelloResult = ReadResult<ClientHello, HelloReject>;
export type HelloRefusal = Reject<HelloReject>;
