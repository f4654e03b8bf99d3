// Debian packages a test needs: found, installed (as root, quietly, once per
// run), or named in the reason the test is skipped.
import { existsSync } from "node:fs";

let updated = false;

/**
 * Make sure each command in `need` exists, installing `packages` with apt
 * when one is missing. Returns null when all are there, else why not (for a
 * visible SKIP message).
 */
export function ensureCommands(need: string[], packages: string[]): string | null {
  const missing = () => need.filter((c) => Bun.which(c) === null && !existsSync(c));
  if (missing().length === 0) return null;
  if (process.getuid?.() !== 0) return `${missing().join(", ")} missing and not root to install ${packages.join(" ")}`;
  if (!updated) {
    Bun.spawnSync(["apt-get", "update", "-qq"], { stdout: "ignore", stderr: "ignore" });
    updated = true;
  }
  const r = Bun.spawnSync(["apt-get", "install", "-y", "-qq", ...packages], {
    stdout: "ignore",
    stderr: "pipe",
    env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
  });
  const still = missing();
  if (still.length === 0) return null;
  return `${still.join(", ")} missing; apt-get install ${packages.join(" ")} failed: ${r.stderr.toString().trim().split("\n").pop()}`;
}
