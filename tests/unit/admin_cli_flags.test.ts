// The admin commands' own flags, read before anything is sent
// (docs/COMMAND_LINE.md): `routes add --backend ADDR[,weight=N][,backup]`,
// --health-check-rise/-fall, and --admin ADDR, each held to the rule the
// config file has for the same value (config/limits.ts, net/host_port.ts).
import { describe, expect, test } from "bun:test";
import { UsageError } from "../../src/cli/args";
import { adminAddrProblem } from "../../src/cli/admin_options";
import { backendSpec, countFlag } from "../../src/cli/routes_command";
import { LIMITS } from "../../src/config/limits";

/** The UsageError's message `f` throws, or null when it returns. */
function refusal(f: () => unknown): string | null {
  try {
    f();
    return null;
  } catch (e) {
    if (e instanceof UsageError) return e.message;
    throw e;
  }
}

describe("routes add --backend ADDR[,weight=N][,backup]", () => {
  const w = LIMITS["routes.weight"];
  test("a weight in routes.weight's range is taken; none is 0 (unset: the server's default)", () => {
    expect(backendSpec("127.0.0.1:1", "u")).toEqual({ addr: "127.0.0.1:1", weight: 0, backup: false });
    expect(backendSpec(`127.0.0.1:1,weight=${w.min}`, "u").weight).toBe(w.min);
    expect(backendSpec(`127.0.0.1:1,backup,weight=${w.max}`, "u")).toEqual({
      addr: "127.0.0.1:1",
      weight: w.max,
      backup: true,
    });
  });
  for (const bad of [0, w.min - 1, w.max + 1, -1, "x", "", "1.5"]) {
    test(`weight=${bad} is refused, naming the flag and the range`, () => {
      const m = refusal(() => backendSpec(`127.0.0.1:1,weight=${bad}`, "u"));
      expect(m).toContain("--backend");
      expect(m).toContain(`from ${w.min} to ${w.max}`);
    });
  }
  for (const [spec, needle] of [
    ["127.0.0.1:1,weight=3,weight=200", "weight= given twice"],
    ["127.0.0.1:1,weight=3,weight=3", "weight= given twice"],
    ["127.0.0.1:1,backup,backup", "backup given twice"],
    ["127.0.0.1:1,weight=3,Backup", '"Backup" is not weight=N or backup'],
    ["127.0.0.1:1,", '"" is not weight=N or backup'],
    [",weight=3", "no address"],
  ] as const) {
    test(`${spec} is refused: ${needle}`, () => {
      expect(refusal(() => backendSpec(spec, "u"))).toContain(needle);
    });
  }
});

describe("routes add --health-check-rise / --health-check-fall", () => {
  const r = LIMITS["routes.health_check_rise"];
  test("absent is 0 (unset over the API); a value in range is taken", () => {
    expect(countFlag(undefined, "--health-check-rise", "routes.health_check_rise")).toBe(0);
    expect(countFlag(String(r.min), "--health-check-rise", "routes.health_check_rise")).toBe(r.min);
    expect(countFlag(String(r.max), "--health-check-fall", "routes.health_check_fall")).toBe(r.max);
  });
  for (const bad of ["0", String(r.max + 1), "-1", "x", ""]) {
    test(`${JSON.stringify(bad)} is refused, naming the flag and the range`, () => {
      const m = refusal(() => countFlag(bad, "--health-check-fall", "routes.health_check_fall"));
      expect(m).toContain("--health-check-fall");
      expect(m).toContain(`from ${r.min} to ${r.max}`);
    });
  }
});

describe("--admin ADDR", () => {
  for (const ok of [
    "127.0.0.1:9090",
    "[::1]:9090",
    "admin.example.com:443",
    ":9090",
    "unix:/run/mc-proxy/admin.sock",
  ]) {
    test(`${ok} is taken`, () => {
      expect(adminAddrProblem(ok)).toBeNull();
    });
  }
  for (const [addr, needle] of [
    ["", "no address"],
    ["127.0.0.1", "expected host:port"],
    ["127.0.0.1:99999", "out of range 1-65535"],
    ["127.0.0.1:0", "out of range 1-65535"],
    ["a b:1", "not a valid host name"],
    ["::1:9090", "in brackets"],
    ["unix:", "names no socket path"],
    ["unix:admin.sock", "absolute path"],
  ] as const) {
    test(`${JSON.stringify(addr)} is refused: ${needle}`, () => {
      const m = adminAddrProblem(addr);
      expect(m).toContain("--admin");
      expect(m).toContain(needle);
    });
  }
});
