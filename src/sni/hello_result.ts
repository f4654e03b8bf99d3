// The typed outcome of reading a ClientHello. Rejections are values, never
// exceptions: the caller turns each into a RST and an access-log outcome.

/** Why the first bytes of a connection were refused (docs/SPEC.md §4, §9 outcome names). */
export type HelloReject = "not_tls" | "malformed" | "too_large";

export type HelloResult =
  | { readonly kind: "hostname"; readonly hostname: string; readonly alpn: readonly string[] }
  | { readonly kind: "no_sni"; readonly alpn: readonly string[] }
  | { readonly kind: "reject"; readonly outcome: HelloReject };
