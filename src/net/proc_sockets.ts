// Which process holds which socket, from Linux's /proc (proc(5)):
// /proc/net/{tcp,tcp6,udp,udp6,unix} list every socket of this network
// namespace with its inode, and /proc/PID/fd/N of a process of the same user
// reads "socket:[INODE]" for each socket it holds. A takeover asks twice
// (docs/ARCHITECTURE.md "Takeover"): the running process hands over only to
// a pid that listens on the listener addresses it names, and the new process
// tells an address the running process holds (free once it hands over) from
// one a stranger holds. The parsers are pure; the readers at the bottom are
// the shell.

import { readFile, readdir, readlink } from "node:fs/promises";
import { endianness } from "node:os";
import { isAbsolute, resolve } from "node:path";
import { ipFromBytes, parseIpText } from "./ip";

/** One line of /proc/net/tcp, tcp6, udp or udp6. */
export interface InetSocket {
  /** Canonical text (an IPv4-mapped IPv6 address reads as IPv4). */
  ip: string;
  port: number;
  /** The kernel's TCP state number: 0x0A is LISTEN; an unconnected UDP socket is 0x07. */
  state: number;
  inode: number;
}

/** TCP_LISTEN in include/net/tcp_states.h. */
export const TCP_LISTEN = 0x0a;

/**
 * /proc/net/tcp (or tcp6, udp, udp6) text → its sockets; with `ports`, only
 * those on one of them (a line of another port costs one slice: the table
 * lists every connection of the namespace). The local address is hex, each
 * 32-bit word in the host's byte order (`littleEndian`). Lines that do not
 * parse are skipped.
 */
export function parseProcNetInet(
  text: string,
  ports: ReadonlySet<number> | null = null,
  littleEndian = endianness() === "LE",
): InetSocket[] {
  const out: InetSocket[] = [];
  for (const line of text.split("\n")) {
    // "  sl: LOCAL REMOTE st …": the local address is the token after the first colon.
    const c = line.indexOf(":");
    if (c < 0) continue;
    let a = c + 1;
    while (line.charCodeAt(a) === 0x20) a++;
    const b = line.indexOf(" ", a);
    if (b < 0 || line.charCodeAt(b - 5) !== 0x3a) continue;
    const port = Number.parseInt(line.slice(b - 4, b), 16);
    if (ports !== null && !ports.has(port)) continue;
    const f = line.slice(a).trim().split(/\s+/);
    const hex = line.slice(a, b - 5);
    const inode = Number(f[8]);
    const state = Number.parseInt(f[2] ?? "", 16);
    if (
      !/^(?:[0-9A-Fa-f]{8}|[0-9A-Fa-f]{32})$/.test(hex) ||
      Number.isNaN(port) ||
      !Number.isSafeInteger(inode) ||
      Number.isNaN(state)
    )
      continue;
    const bytes = new Uint8Array(hex.length / 2);
    for (let w = 0; w < hex.length / 8; w++)
      for (let i = 0; i < 4; i++) {
        const at = littleEndian ? 3 - i : i;
        bytes[w * 4 + i] = Number.parseInt(hex.slice(w * 8 + at * 2, w * 8 + at * 2 + 2), 16);
      }
    out.push({ ip: ipFromBytes(bytes), port, state, inode });
  }
  return out;
}

/** One line of /proc/net/unix. */
export interface UnixSocketEntry {
  inode: number;
  /** __SO_ACCEPTCON in Flags: listen() was called on it. */
  listening: boolean;
  /** The address as bound (relative to the binder's working directory when it was relative); null when unnamed or abstract. */
  path: string | null;
}

const SO_ACCEPTCON = 0x10000;

/** /proc/net/unix text → its sockets. */
export function parseProcNetUnix(text: string): UnixSocketEntry[] {
  const out: UnixSocketEntry[] = [];
  for (const line of text.split("\n")) {
    // Num RefCount Protocol Flags Type St Inode [Path]; a path may hold spaces.
    const m =
      /^\s*[0-9A-Fa-f]+:\s+[0-9A-Fa-f]+\s+[0-9A-Fa-f]+\s+([0-9A-Fa-f]+)\s+[0-9A-Fa-f]+\s+[0-9A-Fa-f]+\s+(\d+)(?: (.*))?$/.exec(
        line,
      );
    if (m === null) continue;
    const path = m[3] === undefined || m[3] === "" || m[3].startsWith("@") ? null : m[3];
    out.push({ inode: Number(m[2]), listening: (Number.parseInt(m[1]!, 16) & SO_ACCEPTCON) !== 0, path });
  }
  return out;
}

/** "socket:[123]" (a /proc/PID/fd link) → 123; null for anything else. */
export function socketInode(link: string): number | null {
  const m = /^socket:\[(\d+)\]$/.exec(link);
  return m === null ? null : Number(m[1]);
}

/** Hosts that bind every address: "" (a listener's ":443"), "::" and "0.0.0.0". */
function isWildcard(ip: string): boolean {
  return ip === "" || ip === "::" || ip === "0.0.0.0";
}

/**
 * The sockets that stand in the way of binding `host`:`port`, or that a
 * process listening there holds: same port, and the same address, or either
 * side the wildcard. A host name (not an IP literal) matches every address
 * of the port.
 */
export function socketsOn(sockets: readonly InetSocket[], host: string, port: number): InetSocket[] {
  const ip = host === "" ? "" : parseIpText(host);
  return sockets.filter((s) => s.port === port && (ip === null || isWildcard(ip) || isWildcard(s.ip) || s.ip === ip));
}

/** The entries whose bound path names `absPath` when read from `cwd` (the binder's working directory). */
export function unixSocketsAt(entries: readonly UnixSocketEntry[], absPath: string, cwd: string): UnixSocketEntry[] {
  return entries.filter(
    (e) => e.listening && e.path !== null && (isAbsolute(e.path) ? e.path : resolve(cwd, e.path)) === absPath,
  );
}

// --- the shell: reading /proc (asynchronously: with many connections the
// kernel takes about 10 µs per socket to write /proc/net/tcp, measured) ---

async function readOr(path: string, fallback: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch {
    return fallback;
  }
}

/** The TCP or UDP sockets of this network namespace on `ports`, IPv4 and IPv6 (a family the kernel lacks reads as none). */
export async function inetSockets(proto: "tcp" | "udp", ports: ReadonlySet<number>): Promise<InetSocket[]> {
  const [v4, v6] = await Promise.all([readOr(`/proc/net/${proto}`, ""), readOr(`/proc/net/${proto}6`, "")]);
  return [...parseProcNetInet(v4, ports), ...parseProcNetInet(v6, ports)];
}

/**
 * Which of `wanted` (socket inodes) process `pid` holds, reading its
 * /proc/PID/fd until all are found (listening sockets are among the first
 * descriptors, so the scan usually stops early). Throws when that directory
 * cannot be read (no such process, or not this user's).
 */
export async function heldBy(pid: number, wanted: ReadonlySet<number>): Promise<Set<number>> {
  const found = new Set<number>();
  if (wanted.size === 0) return found;
  const dir = `/proc/${pid}/fd`;
  for (const fd of await readdir(dir)) {
    let link: string;
    try {
      link = await readlink(`${dir}/${fd}`);
    } catch {
      continue; // closed meanwhile
    }
    const inode = socketInode(link);
    if (inode !== null && wanted.has(inode)) {
      found.add(inode);
      if (found.size === wanted.size) break;
    }
  }
  return found;
}

/** Whether process `pid` holds a LISTEN socket (TCP) on each of `addrs`. Throws when its descriptors cannot be read. */
export async function listensOn(pid: number, addrs: readonly { host: string; port: number }[]): Promise<boolean[]> {
  const listening = (await inetSockets("tcp", new Set(addrs.map((a) => a.port)))).filter((s) => s.state === TCP_LISTEN);
  const each = addrs.map((a) => socketsOn(listening, a.host, a.port).map((s) => s.inode));
  const held = await heldBy(pid, new Set(each.flat()));
  return each.map((inodes) => inodes.some((i) => held.has(i)));
}

/**
 * Who stands in the way of binding an address: "none", "pid" when every
 * socket in the way is process `pid`'s, else "other". Throws when `pid`'s
 * descriptors cannot be read.
 */
export type Holder = "none" | "pid" | "other";

export async function inetHolder(proto: "tcp" | "udp", host: string, port: number, pid: number): Promise<Holder> {
  const all = await inetSockets(proto, new Set([port]));
  const inodes = new Set(
    socketsOn(proto === "tcp" ? all.filter((s) => s.state === TCP_LISTEN) : all, host, port).map((s) => s.inode),
  );
  if (inodes.size === 0) return "none";
  return (await heldBy(pid, inodes)).size === inodes.size ? "pid" : "other";
}

/** Whether process `pid` listens on the unix socket at `absPath` (its relative bind read from its working directory). */
export async function listensAtPath(pid: number, absPath: string): Promise<boolean> {
  const cwd = await readlink(`/proc/${pid}/cwd`);
  const inodes = new Set(
    unixSocketsAt(parseProcNetUnix(await readOr("/proc/net/unix", "")), absPath, cwd).map((e) => e.inode),
  );
  return (await heldBy(pid, inodes)).size > 0;
}
