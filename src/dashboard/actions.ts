// The dashboard's actions (docs/DASHBOARD.md "The HTTP API"): a JSON body
// {"action": …, …} read into the admin API's request for that method, each
// an AdminService call the gRPC API makes too. Pure: a body in, the method
// and its request (or why the body is wrong) out.

import type { AdminService } from "../admin/admin_service";
import type { RuleMsg } from "../admin/messages";

export interface Action {
  /** The admin API's method: its name in the audit line and the role rule (admin/admin_call.ts). */
  method: string;
  request: unknown;
  call(service: AdminService): unknown;
}

type Body = Record<string, unknown>;

/** A body refused before any call: the message says which field. */
export class BadAction extends Error {}

function text(b: Body, key: string): string {
  const v = b[key];
  if (typeof v !== "string") throw new BadAction(`${key}: expected a string`);
  return v;
}

function texts(b: Body, key: string): string[] {
  const v = b[key] ?? [];
  if (!Array.isArray(v) || !v.every((s) => typeof s === "string"))
    throw new BadAction(`${key}: expected a list of strings`);
  return v;
}

function rule(b: Body): RuleMsg {
  const r = b.rule;
  if (typeof r !== "object" || r === null || Array.isArray(r)) throw new BadAction(`rule: expected {"type", "value"}`);
  const o = r as Body;
  return { type: text(o, "type"), value: text(o, "value") };
}

const BUILDERS: Readonly<Record<string, (b: Body) => Action>> = {
  set_backend_state: (b) => {
    const request = {
      listener: text(b, "listener"),
      hostname: text(b, "hostname"),
      alpn: texts(b, "alpn"),
      addr: text(b, "backend"),
      state: text(b, "state"),
      reset_connections: false,
    };
    return { method: "SetBackendState", request, call: (s) => s.setBackendState(request) };
  },
  add_firewall_rule: (b) => {
    const request = { rule: rule(b), keep_established: b.keep_established === true };
    return { method: "AddFirewallRule", request, call: (s) => s.addFirewallRule(request) };
  },
  remove_firewall_rule: (b) => {
    const request = { rule: rule(b) };
    return { method: "RemoveFirewallRule", request, call: (s) => s.removeFirewallRule(request) };
  },
};

/** The action's name as the body gives it (for a refusal's message), or null. */
export function actionName(body: unknown): string | null {
  const a = (body as Body | null)?.action;
  return typeof body === "object" && body !== null && typeof a === "string" ? a : null;
}

/** The action a parsed JSON body asks for; throws BadAction when it is not one. */
export function readAction(body: unknown): Action {
  if (typeof body !== "object" || body === null || Array.isArray(body))
    throw new BadAction(`expected a JSON object {"action": …}`);
  const name = actionName(body);
  if (name === null) throw new BadAction(`action: expected a string`);
  const build = Object.hasOwn(BUILDERS, name) ? BUILDERS[name] : undefined;
  if (build === undefined)
    throw new BadAction(
      `action: ${JSON.stringify(name.slice(0, 64))} is not one of ${Object.keys(BUILDERS).join(", ")}`,
    );
  return build(body as Body);
}
