// A minimal root filesystem for the compiled binary: the binary, the shared
// libraries ldd names, and /proc (Bun's standalone executable reads itself
// through /proc/self/exe). No source tree, no node_modules, no Bun. Needs
// root (chroot, mount); null where that is not possible.
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { ensureBinary, tempDir } from "./proxy";

export interface Rootfs {
  root: string;
  /** Run inside the chroot: argv[0] is a path inside it. */
  argv(...args: string[]): string[];
  cleanup(): void;
}

export function buildRootfs(): Rootfs | null {
  if (process.getuid?.() !== 0) return null;
  const bin = ensureBinary();
  const root = tempDir("mcproxy-rootfs-");
  for (const d of ["bin", "etc", "proc", "tmp"]) mkdirSync(join(root, d), { recursive: true });
  copyFileSync(bin, join(root, "bin/mc-proxy"));
  const ldd = Bun.spawnSync(["ldd", bin]).stdout.toString();
  for (const lib of ldd.match(/\/\S+/g) ?? []) {
    mkdirSync(join(root, dirname(lib)), { recursive: true });
    copyFileSync(lib, join(root, lib));
  }
  if (Bun.spawnSync(["mount", "-t", "proc", "proc", join(root, "proc")]).exitCode !== 0) return null;
  return {
    root,
    argv: (...args: string[]) => ["chroot", root, "/bin/mc-proxy", ...args],
    cleanup: () => void Bun.spawnSync(["umount", join(root, "proc")]),
  };
}
