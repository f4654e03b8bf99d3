// One route as a line of `routes list` (src/cli/route_lines.ts, docs/COMMAND_LINE.md): a pattern
// route is named as one, and the destination lists, drain_timeout and max_connection_lifetime show
// when set, as `--json` gives them.
import { expect, test } from "bun:test";
import type { RouteMsg } from "../../src/admin/messages";
import { routeLine } from "../../src/cli/route_lines";

function route(over: Partial<RouteMsg>): RouteMsg {
  return {
    hostname: "app.example.com",
    hostname_pattern: "",
    backend: "10.0.0.5:8443",
    send_proxy_protocol: "SEND_PROXY_PROTOCOL_OFF",
    backends: [],
    balance: "",
    health_check: "",
    alpn: [],
    allow: [],
    deny: [],
    allow_destinations: [],
    deny_destinations: [],
    max_connections: 0,
    active_connections: 0,
    health_check_interval: "",
    health_check_timeout: "",
    health_check_rise: 0,
    health_check_fall: 0,
    drain_timeout: "",
    max_connection_lifetime: "",
    ...over,
  };
}

test("a plain route: as before", () => {
  expect(routeLine(route({}))).toBe("app.example.com  ->  10.0.0.5:8443  active=0");
});

test("a pattern route with its template, destination lists, drain_timeout and max_connection_lifetime", () => {
  const p = "^(?<app>[a-z0-9-]{1,63})\\.apps\\.test$";
  const line = routeLine(
    route({
      hostname: p,
      hostname_pattern: p,
      backend: "{app}.svc.test:8443",
      allow_destinations: ["127.0.0.0/8"],
      deny_destinations: ["127.0.0.9/32", "10.0.0.0/8"],
      drain_timeout: "2s",
      max_connection_lifetime: "1h",
      active_connections: 3,
    }),
  );
  expect(line).toBe(
    `pattern ${p}  ->  {app}.svc.test:8443  allow_destinations=127.0.0.0/8  deny_destinations=127.0.0.9/32,10.0.0.0/8  drain_timeout=2s  max_connection_lifetime=1h  active=3`,
  );
});
