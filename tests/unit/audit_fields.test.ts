// The admin API's audit line: every field of the request, nested lists
// included, strings clipped.
import { expect, test } from "bun:test";
import { auditFields } from "../../src/admin/audit";

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

test("audit fields: a listener named by its addr is written by its name, the name the logs and metrics use; as given kept", () => {
  const names = new Map([
    ["127.0.0.1:8443", "web"],
    ["web", "web"],
    ["127.0.0.1:9443", "127.0.0.1:9443"],
  ]);
  const byName = (given: string) => names.get(given);
  expect(auditFields({ listener: "127.0.0.1:8443", hostname: "a.example.com" }, byName)).toEqual({
    listener: "web",
    listener_given: "127.0.0.1:8443",
    hostname: "a.example.com",
  });
  expect(auditFields({ listener: "web" }, byName)).toEqual({ listener: "web" });
  expect(auditFields({ listener: "127.0.0.1:9443" }, byName)).toEqual({ listener: "127.0.0.1:9443" });
  // Not found: as written (the call is refused, and the line says what was asked).
  expect(auditFields({ listener: "nope" }, byName)).toEqual({ listener: "nope" });
});
