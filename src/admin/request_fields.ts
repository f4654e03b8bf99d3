// A request's fields, bounded and validated before anything is written
// (docs/ADMIN_API.md): the length first, so that a megabyte of input is
// refused without being parsed or echoed; then the rules every source shares
// (routing/route.ts, routing/route_fields.ts, firewall/rule_set.ts). Each
// refusal is an AdminError naming the field, its value cut by clip().
import { parseRule } from "../firewall/rule_set";
import { compileHostPattern, isPattern } from "../routing/host_pattern";
import { alpnError, parseRouteHostname, type Route } from "../routing/route";
import { OPTION_ROWS, type OptionRow, type RouteDraft, emptyDraft } from "../routing/route_fields";
import type { StoredRule } from "../store/config_store";
import { invalid } from "./admin_error";
import { clip } from "./clip";
import type { RouteInput, RuleMsg } from "./messages";
import { shortRuleType } from "./protos";

/**
 * Longest accepted value per field, checked before anything else. A host
 * name is at most 253 bytes, plus "*." for a wildcard; a backend is a host
 * name and ":65535"; a listener is a host:port or [v6]:port.
 */
export const MAX_LENGTH = { hostname: 255, backend: 261, listener: 270, ruleValue: 64 } as const;

/** ListFingerprints: entries when the request names no limit, and at most. */
export const DEFAULT_FINGERPRINTS = 20;
export const MAX_FINGERPRINTS = 10_000;

/** Refuse a value over `max` characters (or not a string) without echoing it whole. */
export function bounded(field: string, value: unknown, max: number): string {
  if (value === undefined || value === null) return "";
  if (typeof value !== "string") throw invalid(`${field}: expected a string`);
  if (value.length > max) throw invalid(`${field}: ${clip(value)} is too long (at most ${max} characters)`);
  return value;
}

/**
 * A route's key from a request: a hostname, exact or wildcard, in canonical
 * form, or a hostname_pattern (starting with "^", compiled as written) —
 * the key RemoveRoute and SetBackendState name a pattern route by.
 */
export function hostnameField(field: string, value: string): string {
  if (value === "") throw invalid(`${field}: required`);
  if (isPattern(value)) {
    const p = compileHostPattern(value);
    if (!p.ok) throw invalid(`${field}: ${clip(value)}: ${p.error}`);
    return value;
  }
  const h = parseRouteHostname(value);
  if (!h.ok) throw invalid(`${field}: ${clip(value)}: ${h.error}`);
  return h.value;
}

/** An ALPN list from a request: the one rule (routing/route.ts), as given. */
export function alpnField(field: string, v: string[] | undefined): string[] {
  const list = v ?? [];
  const err = alpnError(list, field);
  if (err !== null) throw invalid(err);
  return list;
}

/**
 * The route's options from a request, by the field table
 * (routing/route_fields.ts): an enum by its name (UNSPECIFIED: unset), a
 * list in canonical form; an option the API does not carry keeps the
 * route's own (or is unset). Ranges are routeProblems'.
 */
export function routeOptions(msg: RouteInput, existing: Route | undefined): RouteDraft {
  const d = emptyDraft();
  for (const row of OPTION_ROWS)
    row.put(d, row.proto === null ? (existing === undefined ? row.unset : row.get(existing)) : option(row, msg));
  return d;
}

function option(row: OptionRow, msg: RouteInput): unknown {
  const { field, enumPrefix, values } = row.proto!;
  const raw = (msg as Record<string, unknown>)[field];
  const at = `route.${field}`;
  if (enumPrefix !== undefined) {
    if (raw === undefined || raw === null || raw === "" || raw === `${enumPrefix}_UNSPECIFIED`) return row.unset;
    const v = values!.find((x) => `${enumPrefix}_${x.toUpperCase()}` === raw);
    if (v === undefined)
      throw invalid(
        `${at}: ${clip(String(raw))} must be ${values!.map((x) => `${enumPrefix}_${x.toUpperCase()}`).join(", ")}`,
      );
    return v;
  }
  if (raw === undefined || raw === null) return row.unset;
  if (row.proto!.fromApi !== undefined) {
    const v = row.proto!.fromApi(raw, at);
    if (!v.ok) throw invalid(v.error);
    return v.value;
  }
  if (Array.isArray(raw)) for (const [i, e] of raw.entries()) bounded(`${at}[${i}]`, e, MAX_LENGTH.ruleValue);
  if (row.canonical === undefined) return raw;
  const c = row.canonical(raw, at);
  if (!c.ok) throw invalid(c.error);
  return c.value;
}

/** AddRoute's key: route.hostname or route.hostname_pattern, one of them (hostnameField). */
export function routeKeyField(hostname: string, pattern: string): string {
  if (pattern === "") return hostnameField("route.hostname", hostname);
  if (hostname !== "" && hostname !== pattern)
    throw invalid("route: both hostname and hostname_pattern are set; use one");
  if (!isPattern(pattern)) throw invalid(`route.hostname_pattern: ${clip(pattern)}: must start with "^"`);
  return hostnameField("route.hostname_pattern", pattern);
}

/** A firewall rule from a request: its type by enum name, its value parsed (firewall/rule_set.ts). */
export function ruleField(msg: RuleMsg | null): StoredRule {
  const value = bounded("rule.value", msg?.value, MAX_LENGTH.ruleValue);
  if (msg === null || msg === undefined) throw invalid("rule: required");
  const type = shortRuleType(msg.type);
  if (type === undefined)
    throw invalid(`rule.type: ${clip(String(msg.type))} must be FIREWALL_RULE_TYPE_IP, _CIDR, _COUNTRY or _JA4`);
  if (value === "") throw invalid("rule.value: required");
  const r = parseRule(type, value);
  if (!r.ok) throw invalid(`rule.value: ${r.error}`);
  return { type, value: r.value };
}
