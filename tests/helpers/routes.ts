// Routes for unit tests: a plain route to one backend, as `backend = "…"` gives.
import { PLAIN, type Route } from "../../src/routing/route";
import type { SendProxy } from "../../src/config/types";

export function route(hostname: string, backend: string, sendProxyProtocol: SendProxy = "off"): Route {
  return {
    hostname,
    ...PLAIN,
    backends: [{ addr: backend, weight: 1, backup: false }],
    balance: "round_robin",
    healthCheck: null,
    check: {},
    retries: null,
    connectTimeoutMs: null,
    sendProxyProtocol,
  };
}

/** A route as the store returns it: each backend with its operator state. */
export function storedRoute(hostname: string, backend: string, sendProxyProtocol: SendProxy = "off"): Route {
  return {
    ...route(hostname, backend, sendProxyProtocol),
    backends: [{ addr: backend, weight: 1, backup: false, state: "enabled" }],
  };
}
