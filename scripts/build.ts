// The one build: `bun run build` compiles dist/mc-proxy for this machine;
// `bun run release` compiles the release binaries, each with a .sha256 in
// sha256sum's format (`sha256sum -c` checks it):
//   dist/release/mc-proxy-<version>-linux-x64        glibc ≥ 2.17, dynamic
//   dist/release/mc-proxy-<version>-linux-arm64      glibc, dynamic (aarch64)
//   dist/release/mc-proxy-<version>-linux-x64-musl   musl, needs libstdc++ + libgcc (Alpine)
// Cross targets are Bun runtimes that `bun build` fetches through the npm
// registry on first use.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename, join, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "..");
const VERSION = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version;

/** Release name suffix → Bun compile target. */
export const RELEASE_TARGETS: Record<string, string> = {
  "linux-x64": "bun-linux-x64",
  "linux-arm64": "bun-linux-arm64",
  "linux-x64-musl": "bun-linux-x64-musl",
};

/** The entry (main.ts), the program it loads (cli/cli.ts), and the worker threads' entry point ([proxy] workers), compiled in beside it. */
export const ENTRYPOINTS = ["src/main.ts", "src/cli/cli.ts", "src/server/worker_main.ts"];

function compile(outfile: string, target: string | null): void {
  const args = [
    "build",
    "--compile",
    "--minify-syntax",
    "--sourcemap=none",
    ...(target === null ? [] : [`--target=${target}`]),
    ...ENTRYPOINTS,
    "--outfile",
    outfile,
  ];
  const r = Bun.spawnSync([process.execPath, ...args], { cwd: ROOT, stdout: "inherit", stderr: "inherit" });
  if (r.exitCode !== 0) throw new Error(`bun ${args.join(" ")} failed (exit ${r.exitCode})`);
}

function release(): void {
  const dir = join(ROOT, "dist/release");
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  for (const [suffix, target] of Object.entries(RELEASE_TARGETS)) {
    const out = join(dir, `mc-proxy-${VERSION}-${suffix}`);
    compile(out, target);
    const sum = new Bun.CryptoHasher("sha256").update(readFileSync(out)).digest("hex");
    writeFileSync(`${out}.sha256`, `${sum}  ${basename(out)}\n`);
    console.log(`release: ${out} (sha256 ${sum})`);
  }
}

if (process.argv.includes("--release")) release();
else compile(join(ROOT, "dist/mc-proxy"), null);
