// The typed outcome of reading a ClientHello. Rejections are values, never
// exceptions: the caller turns each into a RST and an access-log outcome.

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

export type HelloResult =
  | ({ readonly kind: "hostname"; readonly hostname: string; readonly alpn: readonly string[] } & HelloBody)
  | ({ readonly kind: "no_sni"; readonly alpn: readonly string[] } & HelloBody)
  | { readonly kind: "reject"; readonly outcome: HelloReject };
