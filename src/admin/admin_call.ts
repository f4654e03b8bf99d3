// One admin call, whoever makes it — a gRPC client (grpc_server.ts) or a
// dashboard user (dashboard/dashboard_server.ts): the one authorization rule
// (the least role each method needs), the handler run, its refusal mapped to
// a status, and one audit line (`msg=admin`, docs/ADMIN_API.md) per mutating
// call naming the caller and every field of the request.

import { status } from "@grpc/grpc-js";
import type { DashboardRole } from "../config/types";
import type { Logger } from "../log/logger";
import { AdminError } from "./admin_error";
import { auditFields } from "./audit";

/**
 * The least role each mutating method needs (docs/DASHBOARD.md "Roles"); any
 * other method only reads. A gRPC caller granted by grpc.admin_clients (or
 * every caller, without the list) is an admin, any other a reader.
 */
const LEAST_ROLE: Readonly<Record<string, DashboardRole>> = {
  SetBackendState: "operator",
  AddFirewallRule: "operator",
  RemoveFirewallRule: "operator",
  AddRoute: "admin",
  RemoveRoute: "admin",
  SetListenerMaxConnections: "admin",
};
const RANK: Readonly<Record<DashboardRole, number>> = { reader: 0, operator: 1, admin: 2 };

/** Whether the method changes anything (and so is audited). */
export function isMutating(method: string): boolean {
  return LEAST_ROLE[method] !== undefined;
}

/** The one authorization rule: may a caller of this role call this method. */
export function mayCall(role: DashboardRole, method: string): boolean {
  return RANK[role] >= RANK[LEAST_ROLE[method] ?? "reader"];
}

export interface AdminCaller {
  /** Who, for the audit line: a certificate name, "unix", or "dashboard:USER". */
  identity: string;
  role: DashboardRole;
  /** The refusal's message when the role may not call the method. */
  refusal(method: string): string;
}

/** How a call ended: OK with its result, or a status and the message the caller is told. */
export type CallOutcome = { code: status.OK; result: unknown } | { code: Exclude<status, status.OK>; details: string };

/** Admin request ids: a random prefix per process and a counter (as connection ids). */
const REQUEST_PREFIX = Math.floor(Math.random() * 0x100000000)
  .toString(16)
  .padStart(8, "0");
let requestSeq = 0;
function requestId(): string {
  return `${REQUEST_PREFIX}-r${(++requestSeq).toString(36)}`;
}

/**
 * Run `fn` (synchronous, or returning a promise) for `caller`: refused unless
 * the caller's role may call `method`; an AdminError becomes its status, any
 * other error INTERNAL with a request id (the detail to the log only). A
 * mutating call, refused or not, writes one audit line. `done` hears the
 * outcome — synchronously when `fn` is.
 */
export function adminCall(
  logger: Logger,
  method: string,
  request: unknown,
  caller: AdminCaller,
  /** A listener as the request names it (name or addr) → its name, for the audit line (audit.ts). */
  listenerName: (given: string) => string | undefined,
  fn: (request: never) => unknown,
  done: (outcome: CallOutcome) => void,
): void {
  const identity = caller.identity;
  const finish = (err: unknown, result?: unknown) => {
    let outcome: CallOutcome;
    if (err === null) outcome = { code: status.OK, result };
    else if (err instanceof AdminError && err.code !== status.INTERNAL && err.code !== status.OK) {
      outcome = { code: err.code, details: err.message };
      logger.debug("admin: request refused", { rpc: method, code: status[err.code], error: err.message, identity });
    } else {
      // The detail (paths, source excerpts) goes to the log only; the
      // caller gets the request id to find it there.
      const id = requestId();
      outcome = {
        code: status.INTERNAL,
        details: `${(err instanceof AdminError ? err.hint : undefined) ?? "internal error"} (request_id ${id}; the server's log has the detail)`,
      };
      logger.error("admin: handler failed", {
        rpc: method,
        request_id: id,
        error: (err as Error).message,
        stack: (err as Error).stack,
      });
    }
    if (isMutating(method))
      logger.audit("admin", { method, identity, ...auditFields(request, listenerName), code: status[outcome.code] });
    done(outcome);
  };
  if (!mayCall(caller.role, method)) return finish(new AdminError(status.PERMISSION_DENIED, caller.refusal(method)));
  try {
    const r = fn(request as never);
    if (r instanceof Promise)
      r.then(
        (v) => finish(null, v),
        (e) => finish(e),
      );
    else finish(null, r);
  } catch (e) {
    finish(e);
  }
}
