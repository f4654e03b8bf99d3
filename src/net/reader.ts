// The one contract of the protocol readers: the TLS ClientHello
// (sni/client_hello_reader.ts), the PROXY header
// (proxy_header/proxy_header_reader.ts) and the QUIC Initial
// (quic/hello_reader.ts). Each is a synchronous state machine fed what the
// socket gave, and answers every feed with one of three values:
//
// - more: nothing settled yet, feed the next chunk (or datagram);
// - done: the value read;
// - reject: refused, with the access-log outcome (docs/SPEC.md §9) the caller
//   closes with, and a reason for the debug log.
//
// Rejections are values, never exceptions. What carries nothing of its own
// is made once: MORE, and a reject whose reason is fixed (a module constant
// of its reader), so that feeding allocates only what it reads.

export interface More {
  readonly kind: "more";
}

export interface Done<T> {
  readonly kind: "done";
  readonly value: T;
}

export interface Reject<O extends string> {
  readonly kind: "reject";
  readonly outcome: O;
  readonly reason: string;
}

export type ReadResult<T, O extends string> = More | Done<T> | Reject<O>;

export const MORE: More = Object.freeze({ kind: "more" });

export function done<T>(value: T): Done<T> {
  return { kind: "done", value };
}

export function reject<O extends string>(outcome: O, reason: string): Reject<O> {
  return { kind: "reject", outcome, reason };
}
