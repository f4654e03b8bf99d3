// The path SIGUSR2 starts (src/cli/reload_command.ts startPath): argv[0] as
// the process was started, resolved at start — never /proc/self/exe, which
// reads "… (deleted)" once an upgrade renamed a new file over the binary.
import { describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startPath } from "../../src/cli/reload_command";

describe("startPath", () => {
  const dir = mkdtempSync(join(tmpdir(), "mcproxy-startpath-"));
  mkdirSync(join(dir, "bin"));
  const bin = join(dir, "bin/mc-proxy");
  writeFileSync(bin, "#!/bin/sh\n");
  chmodSync(bin, 0o755);
  writeFileSync(join(dir, "bin/plain"), "not executable\n");
  const fallback = () => "/proc/self/exe says this";

  test("an absolute argv[0] is itself; a relative one is read from the working directory at start", () => {
    expect(startPath(bin, "/", undefined, fallback)).toBe(bin);
    expect(startPath("./bin/mc-proxy", dir, undefined, fallback)).toBe(bin);
    expect(startPath("bin/../bin/mc-proxy", dir, undefined, fallback)).toBe(bin);
  });

  test("a bare name is looked up in PATH, in order, skipping what is not an executable file", () => {
    expect(startPath("mc-proxy", "/", `/nonexistent:${join(dir, "bin")}`, fallback)).toBe(bin);
    expect(startPath("plain", "/", join(dir, "bin"), fallback)).toBe(fallback());
    expect(startPath("bin", "/", dir, fallback)).toBe(fallback());
  });

  test("argv[0] naming no executable file (exec -a, a relative path from elsewhere) falls back to the executable's path", () => {
    expect(startPath("./mc-proxy", "/", undefined, fallback)).toBe(fallback());
    expect(startPath("", dir, join(dir, "bin"), fallback)).toBe(fallback());
    expect(startPath("mc-proxy", "/", undefined, fallback)).toBe(fallback());
  });
});
