// `firewall list|add|remove`, through the admin API (GetFirewallRules,
// AddFirewallRule, RemoveFirewallRule).
import { RULE_TYPE_ENUM, type ShortRuleType, shortRuleType } from "../admin/protos";
import { help, UsageError } from "./args";
import { ADMIN_TARGET_USAGE, client, options, print } from "./admin_options";

export const FIREWALL_USAGE = `Usage:
  mc-proxy firewall list   (-c FILE | --admin ADDR) [--json]
  mc-proxy firewall add    (-c FILE | --admin ADDR) [--keep-established] TYPE VALUE [--json]
  mc-proxy firewall remove (-c FILE | --admin ADDR) TYPE VALUE

TYPE is ip, cidr, country or ja4; e.g. "firewall add -c FILE cidr 198.51.100.0/24",
"firewall add -c FILE ja4 t13d1516h2_8daaf6152771_e5627efa2ab1" (the access
log's ja4 field; a part ending in "*" matches any rest of it: "t13d*_8daaf6152771_*").
add also closes with RST the open connections the rule blocks, on every worker
and fleet member; --keep-established leaves them open (new ones are refused).

${ADMIN_TARGET_USAGE}`;

const shortType = (t: string) => shortRuleType(t) ?? t;

export async function firewall(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === "--help" || sub === "-h") return help(FIREWALL_USAGE);
  if (sub !== "list" && sub !== "add" && sub !== "remove")
    throw new UsageError(
      sub === undefined ? "firewall needs list, add or remove" : `unknown firewall command "${sub}"`,
      FIREWALL_USAGE,
    );
  const keep = rest.includes("--keep-established");
  if (keep && sub !== "add") throw new UsageError("--keep-established goes with add", FIREWALL_USAGE);
  const o = options(
    rest.filter((a) => a !== "--keep-established"),
    FIREWALL_USAGE,
    false,
  );
  if (o === null) return help(FIREWALL_USAGE);
  const pos = o.rest;
  const c = client(o);
  try {
    if (sub === "list") {
      if (pos.length > 0) throw new UsageError(`unexpected argument ${pos[0]}`, FIREWALL_USAGE);
      const r = await c.call<{ rules: { type: string; value: string }[] }>("GetFirewallRules");
      print(o.json, r, () =>
        r.rules.length === 0 ? "(no rules)" : r.rules.map((x) => `${shortType(x.type).padEnd(8)}${x.value}`).join("\n"),
      );
      return 0;
    }
    if (pos.length !== 2) throw new UsageError(`firewall ${sub} needs TYPE and VALUE`, FIREWALL_USAGE);
    const type = Object.hasOwn(RULE_TYPE_ENUM, pos[0]!) ? RULE_TYPE_ENUM[pos[0] as ShortRuleType] : undefined;
    if (type === undefined)
      throw new UsageError(`TYPE must be ip, cidr, country or ja4, not "${pos[0]}"`, FIREWALL_USAGE);
    const rule = { type, value: pos[1] };
    if (sub === "add") {
      const r = await c.call<{ rule: { type: string; value: string }; added: boolean }>("AddFirewallRule", {
        rule,
        keep_established: keep,
      });
      print(o.json, r, () => `${r.added ? "added" : "already present"}: ${shortType(r.rule.type)} ${r.rule.value}`);
    } else {
      await c.call("RemoveFirewallRule", { rule });
      print(o.json, { rule, removed: true }, () => `removed: ${pos[0]} ${pos[1]}`);
    }
    return 0;
  } finally {
    c.close();
  }
}
