// The demo's ports and config (scripts/demo_config.ts): DEMO_PORT read,
// examples/mc-proxy.toml's ports replaced, the server's `started` line known.
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { demoPorts, isStartedLine, withPorts } from "../../scripts/demo_config";

test("DEMO_PORT: unset is the example's 8443 and 9443; P gives P and P + 1000; anything else is refused", () => {
  expect(demoPorts(undefined)).toEqual({ proxy: 8443, backend: 9443 });
  expect(demoPorts("")).toEqual({ proxy: 8443, backend: 9443 });
  expect(demoPorts("18443")).toEqual({ proxy: 18443, backend: 19443 });
  for (const bad of ["0", "65000", "x", "-1", "84.43", " 8443"]) expect(typeof demoPorts(bad)).toBe("string");
});

test("the example config with the demo's ports: both addresses moved, nothing else", () => {
  const toml = readFileSync(join(import.meta.dir, "../../examples/mc-proxy.toml"), "utf8");
  const moved = withPorts(toml, { proxy: 18443, backend: 19443 });
  expect(moved).not.toContain('"127.0.0.1:8443"');
  expect(moved).not.toContain('"127.0.0.1:9443"');
  expect(moved).toContain('"127.0.0.1:18443"');
  expect(moved).toContain('"127.0.0.1:19443"');
  expect(
    moved.replaceAll('"127.0.0.1:18443"', '"127.0.0.1:8443"').replaceAll('"127.0.0.1:19443"', '"127.0.0.1:9443"'),
  ).toBe(toml);
  expect(() => withPorts("[[listeners]]\n", { proxy: 1, backend: 1001 })).toThrow(/no longer has/);
});

test("the started line, in either log format", () => {
  expect(isStartedLine("time=x level=info msg=started version=0.3.0 pid=1")).toBe(true);
  expect(isStartedLine('{"time":"x","level":"info","msg":"started","pid":1}')).toBe(true);
  expect(isStartedLine('time=x level=info msg="started a successor"')).toBe(false);
  expect(isStartedLine("time=x level=info msg=startedx")).toBe(false);
});
