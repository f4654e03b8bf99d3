// A unix socket path to listen on (the admin API's, the takeover socket):
// a socket file left by a process that died is removed; a live one (someone
// accepts) or a path that is not a socket is an error, never deleted.
import { existsSync, lstatSync, unlinkSync } from "node:fs";
import { createConnection } from "node:net";

/** `label` names the setting in errors; `inUse` says what a live socket means there. */
export async function removeStaleSocket(path: string, label: string, inUse: string): Promise<void> {
  if (!existsSync(path)) return;
  if (!lstatSync(path).isSocket())
    throw new Error(`${label}: ${path} exists and is not a socket; refusing to replace it`);
  const live = await new Promise<boolean>((resolve) => {
    const s = createConnection({ path });
    s.on("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.on("error", () => resolve(false));
  });
  if (live) throw new Error(`${label}: ${path} ${inUse}`);
  unlinkSync(path);
}
