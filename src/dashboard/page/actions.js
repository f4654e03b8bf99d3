// The operator's actions: POST /api/action with the session's CSRF token
// (docs/DASHBOARD.md "Security model"), the outcome in the status line. Action
// controls are made only for operators and admins: a reader's page has none.
import { $, el } from "./dom.js";

/** The session: who is logged in, their role, the CSRF token (from every state). */
export let me = { user: "", role: "reader", csrf: "" };
export function setMe(m) {
  me = m;
}
export const canAct = () => me.role === "operator" || me.role === "admin";

/** What each action button sends, and how the status line names it. */
const requests = new WeakMap();

/** An action button: `body` is the /api/action request, `what` names it for people. */
export function button(label, attrs, body, what) {
  const b = el("button", { type: "button", "data-action": body.action, ...attrs }, label);
  requests.set(b, { body, what });
  return b;
}

/** One click listener for every action button, present and future. */
export function listenForActions() {
  document.addEventListener("click", (e) => {
    const b = e.target.closest("button[data-action]");
    const req = b && requests.get(b);
    if (req) act(req.body, req.what);
  });
}

export function say(text, kind = "") {
  const line = $("status-line");
  line.textContent = text;
  line.dataset.kind = kind;
}

export async function act(body, what) {
  say(`${what}…`, "busy");
  try {
    const res = await fetch("/api/action", {
      method: "POST",
      headers: { "X-CSRF-Token": me.csrf, "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (res.status === 401) return location.assign("/login");
    const reply = await res.json().catch(() => ({}));
    if (res.ok && reply.ok) say(`Done: ${what}.`, "ok");
    else say(`Failed: ${what}: ${reply.error ?? `HTTP ${res.status}`}`, "error");
  } catch (e) {
    say(`Failed: ${what}: ${e.message}`, "error");
  }
}

/** A firewall rule as the admin API takes it; `kind`: IP, CIDR, COUNTRY or JA4. */
export const rule = (kind, value) => ({ type: `FIREWALL_RULE_TYPE_${kind}`, value });

export const blockJa4 = (ja4) =>
  button(
    "block",
    { "data-block-ja4": ja4 },
    { action: "add_firewall_rule", rule: rule("JA4", ja4) },
    `block fingerprint ${ja4}`,
  );

export const blockIp = (ip) =>
  button(
    "block address",
    { "data-block-ip": ip },
    { action: "add_firewall_rule", rule: rule("IP", ip) },
    `block address ${ip}`,
  );

export const removeRule = (r, label = "remove") =>
  button(
    label,
    { "data-remove-rule": `${r.type}:${r.value}` },
    { action: "remove_firewall_rule", rule: r },
    `remove rule ${r.value}`,
  );
