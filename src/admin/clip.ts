// Values echoed in admin error messages are clipped: a refusal travels back
// in the grpc-message trailer, and a trailer over ~64 KB cannot be sent (a
// 1 MB hostname came back as INTERNAL "closed the stream without sending
// trailers"). Every echo of client input goes through here.

const SHOWN = 64;

/** The value JSON-quoted, cut to its first 64 characters plus "…(N bytes)" when longer. */
export function clip(value: string): string {
  if (value.length <= SHOWN) return JSON.stringify(value);
  return `${JSON.stringify(value.slice(0, SHOWN))}…(${Buffer.byteLength(value)} bytes)`;
}
