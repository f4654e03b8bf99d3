// A firewall rule set in its two forms, converted here only: the rules as
// stored and listed (type and value: the store, the admin API, etcd keys)
// and the lists the firewall compiles (FirewallRules). And the one parser
// table a rule value passes, whatever its source (config, admin API, etcd).

import { type Parsed, ok } from "../config/parsed";
import { parseCidrRule, parseCountryRule, parseIpRule } from "./address";
import type { FirewallRules } from "./firewall";
import { parseJa4Rule } from "./ja4_rule";

export type RuleType = "ip" | "cidr" | "country" | "ja4";

export interface Rule {
  type: RuleType;
  value: string;
}

/** Each rule type's list in FirewallRules. */
const LISTS = { ip: "blockedIps", cidr: "blockedCidrs", country: "blockedCountries", ja4: "blockedJa4" } as const;

export const RULE_TYPES = Object.keys(LISTS) as RuleType[];

/** A rule value in canonical form, or why it is not one. */
export function parseRule(type: RuleType, text: string): Parsed<string> {
  if (type === "cidr") {
    const r = parseCidrRule(text);
    return r.ok ? ok(`${r.value.address}/${r.value.prefix}`) : r;
  }
  return type === "ip" ? parseIpRule(text) : type === "country" ? parseCountryRule(text) : parseJa4Rule(text);
}

/** The firewall's lists of a set of rules. */
export function ruleSet(rules: readonly Rule[]): { -readonly [K in keyof FirewallRules]: string[] } {
  const out = {
    blockedIps: [] as string[],
    blockedCidrs: [] as string[],
    blockedCountries: [] as string[],
    blockedJa4: [] as string[],
  };
  for (const r of rules) out[LISTS[r.type]].push(r.value);
  return out;
}

/** The rules of the firewall's lists, by type. */
export function ruleList(set: FirewallRules): Rule[] {
  return RULE_TYPES.flatMap((type) => set[LISTS[type]].map((value) => ({ type, value })));
}

/**
 * What established sessions are judged against when `next` replaces `prev`
 * (Firewall.newlyBlocked): the rules they were admitted under plus the
 * added rules that keep them (`kept`, added with keep_established); null when
 * `next` adds no rule beyond that, so that nothing can close.
 */
export function passedRules(prev: FirewallRules, next: FirewallRules, kept: readonly Rule[]): FirewallRules | null {
  const key = (r: Rule) => `${r.type} ${r.value}`;
  const passed = [...ruleList(prev), ...kept];
  const known = new Set(passed.map(key));
  return ruleList(next).some((r) => !known.has(key(r))) ? ruleSet(passed) : null;
}
