// One access record per connection (docs/SPEC.md §9 and README "Logs"),
// formatted here rather than through a fields object: this runs once per
// connection. Names and values from the network (sni, alpn) are quoted or
// escaped; sni is already limited to [a-z0-9._-].

import { type Logger, quote } from "../log/logger";
import { formatHostPort } from "../net/host_port";
import type { Outcome } from "./stats";

/** What a connection knows by its end. */
export interface AccessFacts {
  readonly id: string;
  readonly tries: number;
  readonly listener: { readonly addr: string };
  readonly clientIp: string;
  /** -1 when never read. */
  readonly clientPort: number;
  readonly peerIp: string;
  readonly peerPort: number;
  readonly sni: string | null;
  readonly alpn: readonly string[];
  /** JA4 of a complete hello (sni/ja4.ts), "" otherwise. */
  readonly ja4: string;
  /** The route that matched (routeName), "" when none did. */
  readonly routeName: string;
  readonly backendAddr: string | null;
  readonly bytesFromClient: number;
  readonly bytesFromBackend: number;
  readonly closedBy: string | null;
  /** performance.now() marks; 0 when the step never happened. */
  readonly acceptedAt: number;
  readonly helloAt: number;
  readonly connectStartAt: number;
  readonly connectedAt: number;
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}

export function writeAccessRecord(log: Logger, worker: number, gen: number, c: AccessFacts, outcome: Outcome): void {
  const client = formatHostPort(c.clientIp, Math.max(c.clientPort, 0));
  const peer = formatHostPort(c.peerIp, c.peerPort);
  const helloMs = c.helloAt > 0 ? round(c.helloAt - c.acceptedAt) : null;
  const connectMs = c.connectedAt > 0 ? round(c.connectedAt - c.connectStartAt) : null;
  const durationMs = round(performance.now() - c.acceptedAt);
  const sni = c.sni ?? "";
  const backend = c.backendAddr ?? "";
  const closedBy = c.closedBy ?? "";
  log.emit(
    "info",
    "access",
    log.json
      ? `,"id":"${c.id}","gen":${gen},"worker":${worker},"tries":${c.tries},"listener":${JSON.stringify(c.listener.addr)},"client":"${client}","peer":"${peer}","outcome":"${outcome}","sni":"${sni}","alpn":${JSON.stringify(c.alpn)},"ja4":"${c.ja4}","route":${JSON.stringify(c.routeName)},"backend":${JSON.stringify(backend)},"bytes_in":${c.bytesFromClient},"bytes_out":${c.bytesFromBackend},"hello_ms":${helloMs},"connect_ms":${connectMs},"duration_ms":${durationMs},"closed_by":"${closedBy}"`
      : ` id=${c.id} gen=${gen} worker=${worker} tries=${c.tries} listener=${quote(c.listener.addr)} client=${quote(client)} peer=${quote(peer)} outcome=${outcome} sni=${quote(sni)} alpn=${quote(c.alpn.join(","))} ja4=${c.ja4} route=${quote(c.routeName)} backend=${quote(backend)} bytes_in=${c.bytesFromClient} bytes_out=${c.bytesFromBackend} hello_ms=${helloMs ?? ""} connect_ms=${connectMs ?? ""} duration_ms=${durationMs} closed_by=${closedBy}`,
  );
}
