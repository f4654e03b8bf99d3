// The PROXY header phase of a connection on a proxy_protocol listener
// (docs/SPEC.md §3, docs/PROXY_PROTOCOL.md "Behind a load balancer
// (receiving PROXY protocol)"): read the header, then the client is the
// source it names, judged by the firewall (the balancer was judged by
// trusted_proxies at accept).

import type { ProxyHeader } from "../proxy_header/proxy_header";
import type { ProxyHeaderReader } from "../proxy_header/proxy_header_reader";
import { type AdmissionContext, sourceVerdict } from "./admission";
import type { Logger } from "../log/logger";
import type { Outcome } from "./stats";

/** What the phase reads and sets on its connection (connection.ts). */
export interface HeaderHolder {
  clientIp: string;
  clientPort: number;
  peerIp: string;
  peerPort: number;
  received: ProxyHeader | null;
  /** The client's port as its socket's peer (read once, while the socket is open). */
  socketPort(): number;
}

export type HeaderStep = { kind: "more" } | { kind: "refused"; outcome: Outcome } | { kind: "done"; rest: Uint8Array };

/**
 * Feed `chunk` to the header reader; once the header is whole, the connection's client becomes the source it
 * names (a LOCAL / UNKNOWN header: the balancer speaks for itself, a health check, not firewalled again).
 */
export function takeProxyHeader(
  reader: ProxyHeaderReader,
  chunk: Uint8Array,
  c: HeaderHolder,
  ctx: AdmissionContext & { readonly logger: Logger },
): HeaderStep {
  const r = reader.feed(chunk);
  if (r.kind === "more") return r;
  if (r.kind === "reject") {
    ctx.logger.debug("PROXY header refused", { peer: c.clientIp, reason: r.reason });
    return { kind: "refused", outcome: r.outcome };
  }
  const { header, rest } = r.value;
  c.received = header;
  c.peerIp = c.clientIp;
  c.peerPort = c.socketPort();
  const src = header.source;
  if (src === null) return { kind: "done", rest };
  c.clientIp = src.ip;
  c.clientPort = src.port;
  const verdict = sourceVerdict(ctx, src.ip);
  return verdict === null ? { kind: "done", rest } : { kind: "refused", outcome: verdict };
}
