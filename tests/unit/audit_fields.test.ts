// The admin API's audit line: every field of the request, nested lists
// included, strings clipped.
import { expect, test } from "bun:test";
import { auditFields } from "../../src/admin/grpc_server";

test("audit fields: every field of the request, nested lists included, strings clipped", () => {
  const f = auditFields({
    listener: "l",
    route: {
      hostname: "x".repeat(100),
      backends: [
        { addr: "127.0.0.1:1", weight: 2 },
        { addr: "[::1]:2", backup: true },
      ],
    },
  });
  expect(f.listener).toBe("l");
  expect(String(f["route.hostname"])).toStartWith(`${"x".repeat(64)}…`);
  expect(f["route.backends[0].addr"]).toBe("127.0.0.1:1");
  expect(f["route.backends[0].weight"]).toBe(2);
  expect(f["route.backends[1].addr"]).toBe("[::1]:2");
  expect(f["route.backends[1].backup"]).toBe(true);
});
