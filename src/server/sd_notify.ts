// Tell systemd (Type=notify) that this process is ready and is the service's
// main process — at start, and after a takeover (the old process exits
// after draining; systemd must follow the new one). Bun 1.4.4 has no AF_UNIX
// datagram socket (docs/BUN-NOTES.md), so the message goes through
// systemd-notify(1); the unit sets NotifyAccess=all for it. Without
// NOTIFY_SOCKET (not under systemd) this does nothing.
import type { Logger } from "../log/logger";

export async function notifyReady(logger: Logger, status: string): Promise<void> {
  if (process.env.NOTIFY_SOCKET === undefined) return;
  const cmd = ["systemd-notify", "--ready", `--pid=${process.pid}`, `--status=${status}`];
  try {
    const p = Bun.spawn(cmd, { stdin: "ignore", stdout: "ignore", stderr: "pipe" });
    const code = await p.exited;
    if (code !== 0)
      logger.warn("systemd-notify failed: systemd may not follow this process", {
        code,
        error: (await new Response(p.stderr).text()).trim().slice(0, 200),
      });
  } catch (e) {
    logger.warn("systemd-notify could not run: systemd may not follow this process", { error: (e as Error).message });
  }
}
