// The admin .proto is lint-clean in buf's STANDARD style (npm @bufbuild/buf).
import { expect, test } from "bun:test";
import { join } from "node:path";
import { ROOT, tempDir } from "../helpers/proxy";

test("buf lint (STANDARD) passes on proto/mc_proxy/v1/admin.proto", () => {
  const buf = join(ROOT, "node_modules/@bufbuild/buf-linux-x64/bin/buf");
  const r = Bun.spawnSync([buf, "lint"], {
    cwd: ROOT,
    env: { ...process.env, BUF_CACHE_DIR: tempDir("buf-cache-") },
    stdout: "pipe",
    stderr: "pipe",
  });
  expect(r.stdout.toString() + r.stderr.toString()).toBe("");
  expect(r.exitCode).toBe(0);
});
