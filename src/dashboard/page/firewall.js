// The firewall, fingerprints and refusals views (docs/DASHBOARD.md "Views"):
// the rules and what they blocked, the top JA4 fingerprints, the recent
// refusals; operators block and unblock from each.
import { act, blockIp, blockJa4, canAct, removeRule, rule } from "./actions.js";
import { $, el, setText, sync } from "./dom.js";
import { ago, clock, count, duration, enumText, int } from "./format.js";
import { table } from "./table.js";

/** Rule kinds: the admin API's type suffix, the `blocked` key, the heading. */
const KINDS = [
  ["IP", "ip", "Addresses"],
  ["CIDR", "cidr", "Networks"],
  ["COUNTRY", "country", "Countries"],
  ["JA4", "ja4", "Fingerprints"],
];

/** The add-a-rule form (operators only). */
function addRuleForm() {
  const kind = el("select", { id: "rule-kind" }, ...KINDS.map(([t, k]) => el("option", { value: t }, k)));
  const value = el("input", {
    id: "rule-value",
    type: "text",
    required: true,
    placeholder: "203.0.113.7, 10.0.0.0/8, CN or a JA4",
    spellcheck: false,
    autocomplete: "off",
  });
  const form = el(
    "form",
    { class: "add-rule", "data-action": "add_firewall_rule" },
    el("label", { htmlFor: "rule-kind" }, "Kind"),
    kind,
    el("label", { htmlFor: "rule-value" }, "Value"),
    value,
    el("button", { type: "submit" }, "add rule"),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const v = value.value.trim();
    if (v !== "")
      act({ action: "add_firewall_rule", rule: rule(kind.value, v) }, `add ${kind.value.toLowerCase()} rule ${v}`);
  });
  return form;
}

export function firewall() {
  const rules = table($("firewall-body"), {
    caption: "Firewall rules",
    cols: [
      ["Kind", (r) => enumText(r.type, "FIREWALL_RULE_TYPE_")],
      ["Value", (r) => r.value],
    ],
    key: (r) => `${r.type}:${r.value}`,
    row: (r) => ({ "data-rule": `${r.type}:${r.value}` }),
    actions: (r) => [removeRule(r)],
  });
  const figure = ([, , label]) =>
    el(
      "div",
      { class: "figure" },
      el("span", { class: "label" }, label),
      el("span", { class: "value" }),
      el("span", { class: "sub" }),
    );
  return (s) => {
    const { rules: shown, total, counts } = s.firewall;
    sync(
      $("firewall-kinds"),
      KINDS,
      ([t]) => t,
      figure,
      (d, [t, k]) => {
        setText(d.children[1], count(counts[`FIREWALL_RULE_TYPE_${t}`] ?? 0, "rule", "rules"));
        setText(d.children[2], `${int(s.firewall.blocked?.[k] ?? 0)} blocked`);
      },
    );
    const add = $("firewall-add");
    if (canAct() !== add.childElementCount > 0) add.replaceChildren(...(canAct() ? [addRuleForm()] : []));
    setText(
      $("firewall-note"),
      total > shown.length
        ? `The first ${int(shown.length)} of ${int(total)} rules; mc-proxy firewall list lists every one.`
        : "",
    );
    rules(shown);
  };
}

export function fingerprints() {
  const rows = table($("fingerprints-body"), {
    caption: "Top JA4 fingerprints",
    cols: [
      ["JA4", (f) => f.ja4],
      // `error`: the count's possible overcount (the space-saving table, docs/FINGERPRINTS.md).
      ["Connections", (f) => int(f.connections) + (f.error > 0 ? ` ±${int(f.error)}` : "")],
      ["Blocked", (f) => int(f.blocked)],
      ["Networks", (f) => (f.client_networks_at_least ? "≥ " : "") + int(f.client_networks)],
      ["Last seen", (f) => ago(f.last_seen_unix_ms)],
    ],
    key: (f) => f.ja4,
    row: (f) => ({ "data-ja4": f.ja4 }),
    actions: (f) => (f.ruled ? [removeRule(rule("JA4", f.ja4), "unblock")] : [blockJa4(f.ja4)]),
    actionsKey: (f) => String(f.ruled),
  });
  return (s) => {
    const fp = s.fingerprints;
    const note = `The most frequent TLS fingerprints over the last ${duration(fp.window_seconds)}, counted by ${count(fp.workers, "worker", "workers")}; at most ${int(fp.capacity)} are tracked.`;
    setText($("fingerprints-note"), note);
    rows(fp.fingerprints);
  };
}

export function refusals() {
  const rows = table($("refusals-body"), {
    caption: "Recent refusals",
    cols: [
      ["Time", (r) => clock(Date.parse(r.time))],
      ["Outcome", (r) => r.outcome],
      ["Client", (r) => r.client],
      ["SNI", (r) => r.sni || "–"],
      ["JA4", (r) => r.ja4 || "–"],
      ["Listener", (r) => r.listener],
    ],
    key: (r) => r.key,
    row: (r) => ({ "data-client": r.client }),
    actions: (r) => [blockIp(r.client), ...(r.ja4 ? [blockJa4(r.ja4)] : [])],
  });
  return (s) => {
    // Records have no id: their fields, and how many alike came before, make one.
    const seen = new Map();
    const keyed = s.refusals.map((r) => {
      const k = `${r.time}|${r.client}|${r.listener}|${r.sni}|${r.ja4}|${r.outcome}`;
      seen.set(k, (seen.get(k) ?? 0) + 1);
      return { ...r, key: `${k}|${seen.get(k)}` };
    });
    rows(keyed);
  };
}
