// Can this process bind an address — now, or once the running process of a
// takeover lets go of it? Each probe binds and lets go at once; an address
// in use is fine only when every socket in the way is the running process's
// (read from /proc: proc_sockets.ts), since that one closes them at the
// handover. Anything else fails here, before the handover, naming the key
// (docs/ARCHITECTURE.md "Takeover": every step that can fail comes first).

import { existsSync, lstatSync } from "node:fs";
import { createConnection } from "node:net";
import { resolve } from "node:path";
import { bindHost, splitHostPort } from "./host_port";
import { inetHolder, listensAtPath } from "./proc_sockets";

export type Protocol = "tcp" | "udp";

/** Why the owner of an address cannot be told: the pid's descriptors are unreadable. */
function unreadable(pid: number, e: unknown): string {
  return `cannot tell whether the running mc-proxy (pid ${pid}) holds it: /proc/${pid}/fd: ${(e as Error).message}`;
}

/**
 * Probe `text` ("host:port", or "unix:PATH" for TCP) for the setting
 * `label`. `incumbent`: the pid of the process being taken over, or null.
 * Throws `label "text": cannot listen: …` when it cannot be bound.
 */
export async function probeAddress(
  label: string,
  text: string,
  protocol: Protocol,
  incumbent: number | null,
): Promise<void> {
  const fail = (why: string) => new Error(`${label} ${JSON.stringify(text)}: cannot listen: ${why}`);
  if (text.startsWith("unix:")) return probeUnix(text.slice("unix:".length), incumbent, fail);
  const { host, port } = splitHostPort(text);
  try {
    if (protocol === "tcp") Bun.listen({ hostname: bindHost(host), port, socket: { data() {} } }).stop(true);
    else (await Bun.udpSocket({ hostname: bindHost(host), port })).close();
    return;
  } catch (e) {
    const msg = (e as Error).message;
    if (incumbent === null) throw fail(msg);
    let holder: Awaited<ReturnType<typeof inetHolder>>;
    try {
      holder = await inetHolder(protocol, host, port, incumbent);
    } catch (r) {
      throw fail(`${msg}; ${unreadable(incumbent, r)}`);
    }
    if (holder === "pid") return;
    throw fail(
      holder === "other" ? `${msg}: held by a process other than the running mc-proxy (pid ${incumbent})` : msg,
    );
  }
}

async function probeUnix(path: string, incumbent: number | null, fail: (why: string) => Error): Promise<void> {
  if (!existsSync(path)) return;
  if (!lstatSync(path).isSocket()) throw fail(`${path} exists and is not a socket`);
  const live = await new Promise<boolean>((done) => {
    const s = createConnection({ path });
    s.on("connect", () => {
      s.destroy();
      done(true);
    });
    s.on("error", () => done(false));
  });
  // A socket file no one answers on is removed when bound (net/unix_socket.ts).
  if (!live) return;
  if (incumbent === null) throw fail(`${path} is in use by a running process`);
  let held: boolean;
  try {
    held = await listensAtPath(incumbent, resolve(path));
  } catch (e) {
    throw fail(unreadable(incumbent, e));
  }
  if (!held) throw fail(`${path} is in use by a process other than the running mc-proxy (pid ${incumbent})`);
}
