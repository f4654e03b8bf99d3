// The root filesystem the binary ships on, made by scripts/rootfs.sh (the
// same script the container image is built from): the binary, the shared
// objects the loader resolves for it, /etc/passwd and /etc/group with the
// mc-proxy user (65532), /srv/mc-proxy owned by it. Tests add only a /proc
// mount point (Bun's standalone executable reads itself through
// /proc/self/exe). Needs root (chroot, mount); null where that is not possible.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { ROOT, ensureBinary, tempDir } from "./proxy";

export const RUN_AS = "65532:65532";

export interface Rootfs {
  root: string;
  /** Run inside the chroot as the mc-proxy user (uid 65532): argv[0] is a path inside it. */
  argv(...args: string[]): string[];
  /** The same, as root inside the chroot (for tests that need a file only root may read). */
  argvAsRoot(...args: string[]): string[];
  cleanup(): void;
}

export function buildRootfs(binary: string = ensureBinary()): Rootfs | null {
  if (process.getuid?.() !== 0) return null;
  const root = join(tempDir("mcproxy-rootfs-"), "root");
  const r = Bun.spawnSync(["sh", join(ROOT, "scripts/rootfs.sh"), root, binary], { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`scripts/rootfs.sh failed: ${r.stderr.toString()}`);
  mkdirSync(join(root, "proc"));
  if (Bun.spawnSync(["mount", "-t", "proc", "proc", join(root, "proc")]).exitCode !== 0) return null;
  return {
    root,
    argv: (...args: string[]) => ["chroot", `--userspec=${RUN_AS}`, root, "/usr/local/bin/mc-proxy", ...args],
    argvAsRoot: (...args: string[]) => ["chroot", root, "/usr/local/bin/mc-proxy", ...args],
    cleanup: () => void Bun.spawnSync(["umount", join(root, "proc")]),
  };
}
