// The admin plane's one error type: an RPC refused with its gRPC status code
// (docs/ADMIN_API.md: which code for which refusal). grpc_server.ts turns it
// into the call's status.
import { status } from "@grpc/grpc-js";

/** An RPC failure with its gRPC status code; the message names the field. */
export class AdminError extends Error {
  constructor(
    readonly code: status,
    message: string,
    /** For INTERNAL: what the caller is told instead of the message (which may name files). */
    readonly hint?: string,
  ) {
    super(message);
    this.name = "AdminError";
  }
}

/** INVALID_ARGUMENT: the request's field is wrong; `msg` names it. */
export const invalid = (msg: string) => new AdminError(status.INVALID_ARGUMENT, msg);
