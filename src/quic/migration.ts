// When a QUIC flow takes a new client address (NAT rebinding, migration:
// RFC 9000 §9). The proxy cannot validate a path — PATH_CHALLENGE and
// PATH_RESPONSE are encrypted — so it never moves a flow: a new address
// that names the flow's server connection ID becomes another path of the
// flow, with a backend socket of its own, so the backend sees the client's
// address change as it would without a proxy and validates the path itself
// (§9.3; until then it sends the new address at most three times what it
// received from it, §8.1, §9.4). Each path's replies go to its own address
// only. This file is the policy on how many paths a flow holds and how
// often it opens one; the firewall, the rate limit and the route's
// allow/deny judge the address first, as for a new flow. Pure.

/** Paths a flow holds besides the one that opened it. */
export const MAX_EXTRA_PATHS = 3;
/** A flow opens a new path at most once per this long. */
export const NEW_PATH_INTERVAL_MS = 1000;
/** A full flow gives up its quietest extra path for a new one only when that path's client has been quiet this long. */
export const PATH_QUIET_MS = 1000;

export type PathDecision =
  | { kind: "open" }
  | { kind: "replace"; index: number }
  | { kind: "refuse"; why: "too_soon" | "full" };

/**
 * Whether a flow may open a path for a new client address now, given when
 * its extra paths last heard from their clients (`lastAt`, in order) and
 * when it last opened one (-Infinity: never).
 */
export function newPathDecision(lastAt: readonly number[], lastOpenedAt: number, now: number): PathDecision {
  if (now - lastOpenedAt < NEW_PATH_INTERVAL_MS) return { kind: "refuse", why: "too_soon" };
  if (lastAt.length < MAX_EXTRA_PATHS) return { kind: "open" };
  let index = 0;
  for (let i = 1; i < lastAt.length; i++) if (lastAt[i]! < lastAt[index]!) index = i;
  return now - lastAt[index]! >= PATH_QUIET_MS ? { kind: "replace", index } : { kind: "refuse", why: "full" };
}
