// Every admission decision, for every transport (docs/SPEC.md §3): the
// source verdict on a client address — the firewall's address rules,
// country and rate limit — at a TCP accept, on a QUIC flow's first datagram,
// on a trusted PROXY header's source and on any address a QUIC flow moves
// to; then, after the hello, the ja4 verdict and the fingerprint record, the
// route (server name and ALPN), the route's allow/deny and max_connections,
// and a backend from its pool. A TCP connection (connection.ts) and a QUIC
// flow (quic_listener.ts) call these and differ only in how bytes move.
// Synchronous and socket-free; nothing is allocated: a verdict is an
// outcome name, null to go on.

import type { Firewall, FirewallVerdict } from "../firewall/firewall";
import type { HeavyHitters } from "../metrics/heavy_hitters";
import { networkHash } from "../net/ip";
import type { BackendTable } from "../routing/backend_table";
import type { RoutePool } from "../routing/pool";
import type { RouteTable } from "../routing/route_table";
import type { ClientHello, HelloBody } from "../sni/hello_result";
import { ja4 } from "../sni/ja4";
import type { ListenerRuntime } from "./listener_runtime";
import type { Outcome } from "./stats";

/** What admission reads of an event loop's context (loop_context.ts). */
export interface AdmissionContext {
  readonly firewall: Firewall;
  readonly backends: BackendTable;
  readonly workerId: number;
  /** Compute each hello's JA4 even without ja4 rules (the access log, the top table read it). */
  readonly ja4: boolean;
  readonly fingerprints: HeavyHitters | null;
  /** The loop's coarse clock (the deadline wheel's). */
  readonly wheel: { readonly now: number; readonly nowSec: number };
}

/** What a session knows by its hello, as the ja4 verdict reads and writes it. */
export interface HelloSession {
  readonly clientIp: string;
  /** Set here: the hello's JA4 fingerprint, "" when not computed. */
  ja4: string;
}

/**
 * The source verdict on a client address (docs/SPEC.md §3): address rules,
 * country, rate limit. A UDP source is unvalidated (any datagram can name
 * it): QUIC flows ("udp") count in a rate table of their own, so forged
 * datagrams cannot spend a TCP client's budget (docs/SECURITY.md).
 */
export function sourceVerdict(ctx: AdmissionContext, ip: string, transport: "tcp" | "udp" = "tcp"): FirewallVerdict {
  return ctx.firewall.check(ip, ctx.wheel.now, transport);
}

/**
 * A TCP connection at accept, after its place is taken: on a proxy_protocol
 * listener the socket's peer must be a trusted balancer (the client its
 * header names is judged once the header is read); otherwise the source
 * verdict on the peer.
 */
export function acceptVerdict(ctx: AdmissionContext, rt: ListenerRuntime, ip: string): Outcome | null {
  if (rt.trusted !== null) return rt.trusted.has(ip) ? null : "untrusted_proxy";
  return sourceVerdict(ctx, ip);
}

/**
 * The firewall's last word, on the hello itself, before any routing: its
 * JA4 fingerprint ("t" TCP, "q" QUIC) computed when something reads it,
 * judged by the ja4 rules and counted in the top-fingerprints table.
 */
export function helloVerdict(
  ctx: AdmissionContext,
  s: HelloSession,
  hello: HelloBody,
  transport: "t" | "q",
): "blocked_ja4" | null {
  const fw = ctx.firewall;
  if (ctx.ja4 || fw.hasJa4Rules) s.ja4 = ja4(hello.buf, hello.start, hello.length, transport);
  const verdict = fw.checkJa4(s.ja4);
  ctx.fingerprints?.record(s.ja4, Date.now(), verdict !== null, networkHash(s.clientIp));
  return verdict;
}

/** What a session knows by its hello, as the route admission fills it in. */
export interface RoutedSession extends HelloSession {
  sni: string | null;
  alpn: readonly string[];
  /** The route that matched, set even when its policy or limit then refuses (the access record names it). */
  route: RoutePool | null;
}

/**
 * Everything after the hello, in order: the ja4 verdict and the fingerprint
 * record, the route, its allow/deny and max_connections. Null when the
 * session may go on, holding a place of `s.route` that `route.leave` gives
 * back; or the outcome it is refused with.
 */
export function admitHello(
  ctx: AdmissionContext,
  table: RouteTable,
  s: RoutedSession,
  hello: ClientHello,
  transport: "t" | "q",
): Outcome | null {
  s.alpn = hello.alpn;
  const verdict = helloVerdict(ctx, s, hello, transport);
  if (verdict !== null) return verdict;
  s.sni = hello.hostname;
  const route = routeFor(table, s.sni, s.alpn);
  if (typeof route === "string") return route;
  s.route = route;
  return enterRoute(ctx, route, s.clientIp);
}

/** The route for a hello: its server name and ALPN on the listener's table (route_table.ts), or why none. */
export function routeFor(
  table: RouteTable,
  sni: string | null,
  alpn: readonly string[],
): RoutePool | "no_sni" | "no_route" {
  return table.lookup(sni, alpn) ?? (sni === null ? "no_sni" : "no_route");
}

/**
 * After the global firewall and the match, the route's own policy and
 * limit: null with a place of its max_connections taken, that
 * `route.leave` gives back; or why not.
 */
export function enterRoute(
  ctx: AdmissionContext,
  route: RoutePool,
  clientIp: string,
): "route_denied" | "over_capacity" | null {
  return route.enter(clientIp, ctx.workerId);
}

/**
 * The next backend of a route for try `tries + 1` (`tried`: a bit per pool
 * index already tried; a backend never gets a second try, and tries stop at
 * the route's retries + 1): its index, counted in the backend table until
 * the caller gives it back (`backends.give`), or why not.
 */
export function pickBackend(
  ctx: AdmissionContext,
  route: RoutePool,
  clientIp: string,
  tried: number,
  tries: number,
): number | "no_backend" | "connect_failed" {
  if (tries >= route.maxTries) return "connect_failed";
  const i = route.pick(clientIp, tried, ctx.wheel.nowSec);
  if (i < 0) return tries === 0 ? "no_backend" : "connect_failed";
  ctx.backends.take(route.ref(i), ctx.workerId);
  return i;
}

/**
 * A routed QUIC flow's new client address (RFC 9000 §9): it passes what a
 * new flow's would — the source verdict, the flow's ja4 verdict, the route's
 * allow/deny (the route's place is the flow's, taken once).
 */
export function pathVerdict(
  ctx: AdmissionContext,
  table: RouteTable,
  ip: string,
  s: { readonly sni: string | null; readonly alpn: readonly string[]; readonly ja4: string },
): Outcome | null {
  const verdict = sourceVerdict(ctx, ip, "udp") ?? ctx.firewall.checkJa4(s.ja4);
  if (verdict !== null) return verdict;
  const route = table.lookup(s.sni, s.alpn);
  return route === null || !route.admits(ip) ? "route_denied" : null;
}
