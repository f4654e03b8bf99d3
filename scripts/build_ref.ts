// Build the mc-proxy binary of an older commit (a release) in a temporary git
// worktree that shares this checkout's node_modules: the bench's baseline and
// the takeover test's previous release. Cached by commit in `outDir`.
import { existsSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "..");

export function buildRef(ref: string, outDir: string): string {
  const sha = Bun.spawnSync(["git", "rev-parse", "--short", ref], { cwd: ROOT }).stdout.toString().trim();
  if (sha === "") throw new Error(`${ref}: not a git ref (a shallow clone? fetch the history)`);
  mkdirSync(outDir, { recursive: true });
  const out = join(outDir, `mc-proxy-${sha}`);
  if (existsSync(out)) return out;
  const tree = join(outDir, `tree-${sha}`);
  const run = (cmd: string[], cwd: string) => {
    const r = Bun.spawnSync(cmd, { cwd, stdout: "pipe", stderr: "pipe" });
    if (r.exitCode !== 0) throw new Error(`${cmd.join(" ")}: ${r.stderr.toString()}`);
  };
  run(["git", "worktree", "add", "--force", "--detach", tree, sha], ROOT);
  try {
    run(["ln", "-s", join(ROOT, "node_modules"), join(tree, "node_modules")], ROOT);
    // A tree with scripts/build.ts builds itself (its entry points); older ones had one.
    if (existsSync(join(tree, "scripts/build.ts"))) {
      run([process.execPath, "run", "scripts/build.ts"], tree);
      run(["cp", join(tree, "dist/mc-proxy"), out], ROOT);
    } else
      run(
        [
          process.execPath,
          "build",
          "--compile",
          "--minify-syntax",
          "--sourcemap=none",
          "src/main.ts",
          "--outfile",
          out,
        ],
        tree,
      );
  } finally {
    Bun.spawnSync(["git", "worktree", "remove", "--force", tree], { cwd: ROOT });
  }
  return out;
}
