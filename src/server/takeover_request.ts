// One request line of the takeover socket (handover.ts has the protocol):
// the line splitter both sides use, and the parser of what a requester may
// ask, which names what is wrong with anything else. Text a requester sent
// is clipped where a refusal repeats it (src/admin/clip.ts).

import type { Socket } from "node:net";
import { clip } from "../admin/clip";
import { parseHostPort } from "../net/host_port";

/** The longest line either side reads. */
export const MAX_LINE = 4096;
/** Listener addresses one handover request may name. */
const MAX_LISTENERS = 256;

export type Request =
  | { op: "hello" }
  | { op: "reload"; config: string }
  | { op: "prepare"; pid: number }
  | { op: "handover"; pid: number; listeners: string[] };

export const isPid = (v: unknown): v is number =>
  typeof v === "number" && Number.isSafeInteger(v) && v > 0 && v <= 0x3fffffff;

/** Parse one request line: the request, or why it is not one. */
export function parseRequest(line: string): Request | string {
  if (line.length > MAX_LINE) return `line longer than ${MAX_LINE} bytes`;
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return "not a request";
  }
  if (typeof v !== "object" || v === null) return "not a request";
  const o = v as Record<string, unknown>;
  if (o.op === "hello") return { op: "hello" };
  if (o.op === "reload") {
    if (typeof o.config !== "string" || !o.config.startsWith("/") || o.config.includes("\0"))
      return 'reload: "config" must be the absolute path of the config file the running process runs';
    return { op: "reload", config: o.config };
  }
  if (o.op !== "prepare" && o.op !== "handover") return "not a request";
  if (!isPid(o.pid)) return `${o.op}: "pid" must be the requesting process's id`;
  if (o.op === "prepare") return { op: "prepare", pid: o.pid };
  const ls = o.listeners;
  if (!Array.isArray(ls) || ls.length === 0 || ls.length > MAX_LISTENERS)
    return `handover: "listeners" must name the 1-${MAX_LISTENERS} TCP listener addresses the requester listens on`;
  for (const l of ls) {
    if (typeof l !== "string" || !parseHostPort(l, { allowEmptyHost: true }).ok)
      return `handover: listener ${clip(typeof l === "string" ? l : JSON.stringify(l))} is not host:port`;
  }
  return { op: "handover", pid: o.pid, listeners: [...new Set(ls as string[])] };
}

/** Split a stream into lines, refusing one longer than MAX_LINE; the function returned stops reading (what is buffered is dropped). */
export function lines(socket: Socket, onLine: (line: string) => void, onTooLong: () => void): () => void {
  let buf = "";
  let stopped = false;
  socket.setEncoding("utf8");
  socket.on("data", (chunk: string) => {
    if (stopped) return;
    buf += chunk;
    for (;;) {
      const nl = buf.indexOf("\n");
      if (nl < 0 || stopped) break;
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      onLine(line);
    }
    if (stopped) buf = "";
    else if (buf.length > MAX_LINE) {
      buf = "";
      onTooLong();
    }
  });
  return () => {
    stopped = true;
    buf = "";
  };
}
