// One access record per connection (docs/SPEC.md §9 and docs/METRICS_AND_LOGS.md "Logs"),
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
  /** Its listener's one name (listener_runtime.ts listenerLabel). */
  readonly listener: { readonly label: string };
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
  /** The address connected to (or refused) for a backend written as a name (docs/DNS.md); null/absent otherwise. */
  readonly resolved?: string | null;
  readonly bytesFromClient: number;
  readonly bytesFromBackend: number;
  readonly closedBy: string | null;
  /** performance.now() marks; 0 when the step never happened. */
  readonly acceptedAt: number;
  readonly helloAt: number;
  readonly connectStartAt: number;
  readonly connectedAt: number;
}

/** ALPN protocols written at most, and characters of each (docs/METRICS_AND_LOGS.md "Logs"). */
export const ALPN_LOGGED = 8;
export const ALPN_NAME_LOGGED = 32;

/**
 * The ALPN list as a record writes it: at most ALPN_LOGGED names, each
 * clipped to ALPN_NAME_LOGGED characters (then "…"), and "…+N" for the N
 * left out — a hello may offer thousands (RFC 7301 §3.1 bounds only the
 * list's bytes), and a record must not cost more than the hello.
 */
export function clipAlpn(alpn: readonly string[]): readonly string[] {
  let clip = alpn.length > ALPN_LOGGED;
  for (let i = 0; i < alpn.length && !clip; i++) clip = alpn[i]!.length > ALPN_NAME_LOGGED;
  if (!clip) return alpn;
  const clipName = (a: string) => (a.length > ALPN_NAME_LOGGED ? `${a.slice(0, ALPN_NAME_LOGGED)}…` : a);
  const out = alpn.slice(0, ALPN_LOGGED).map(clipName);
  if (alpn.length > ALPN_LOGGED) out.push(`…+${alpn.length - ALPN_LOGGED}`);
  return out;
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
  const resolved = c.resolved ?? "";
  const closedBy = c.closedBy ?? "";
  const alpn = clipAlpn(c.alpn);
  log.emit(
    "info",
    "access",
    log.json
      ? `,"id":"${c.id}","gen":${gen},"worker":${worker},"tries":${c.tries},"listener":${JSON.stringify(c.listener.label)},"client":"${client}","peer":"${peer}","outcome":"${outcome}","sni":"${sni}","alpn":${JSON.stringify(alpn)},"ja4":"${c.ja4}","route":${JSON.stringify(c.routeName)},"backend":${JSON.stringify(backend)},"resolved":"${resolved}","bytes_in":${c.bytesFromClient},"bytes_out":${c.bytesFromBackend},"hello_ms":${helloMs},"connect_ms":${connectMs},"duration_ms":${durationMs},"closed_by":"${closedBy}"`
      : ` id=${c.id} gen=${gen} worker=${worker} tries=${c.tries} listener=${quote(c.listener.label)} client=${quote(client)} peer=${quote(peer)} outcome=${outcome} sni=${quote(sni)} alpn=${quote(alpn.join(","))} ja4=${c.ja4} route=${quote(c.routeName)} backend=${quote(backend)} resolved=${resolved} bytes_in=${c.bytesFromClient} bytes_out=${c.bytesFromBackend} hello_ms=${helloMs ?? ""} connect_ms=${connectMs ?? ""} duration_ms=${durationMs} closed_by=${closedBy}`,
  );
}
