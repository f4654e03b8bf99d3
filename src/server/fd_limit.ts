// The process's file-descriptor budget, and the connection cap derived from
// it (issue 7). At EMFILE Bun's accept loop retries at once and spins a core
// while clients wait in the backlog; a proxy that never lets its descriptors
// run out accepts and resets instead, as HAProxy does by deriving maxconn
// from `ulimit -n`.
//
// Bun raises the soft RLIMIT_NOFILE to the hard limit itself at start
// (measured on 1.4.4; tests/platform/bun_sockets.test.ts keeps it), so there
// is nothing to raise here: the limits are read and reported.

import { readFileSync } from "node:fs";

export interface FdLimits {
  soft: number;
  hard: number;
}

/**
 * Descriptors kept back from the connection budget: stdio, the event loop's
 * epoll/eventfd, the database and its -wal/-shm, the GeoIP file, the admin
 * and metrics listeners and their clients, health checks and log pipes. An
 * idle mc-proxy with the admin API holds 13; 64 leaves room for the rest.
 */
export const RESERVED_FDS = 64;

/** Each proxied connection holds two descriptors: the client and the backend. */
export const FDS_PER_CONNECTION = 2;

/** Parse the "Max open files" line of /proc/self/limits ("unlimited" → Infinity). */
export function parseProcLimits(text: string): FdLimits | null {
  const m = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)\s+files/m.exec(text);
  if (m === null) return null;
  const n = (s: string) => (s === "unlimited" ? Number.POSITIVE_INFINITY : Number(s));
  return { soft: n(m[1]!), hard: n(m[2]!) };
}

/** This process's descriptor limits, or null where /proc cannot tell. */
export function readFdLimits(): FdLimits | null {
  try {
    return parseProcLimits(readFileSync("/proc/self/limits", "utf8"));
  } catch {
    return null;
  }
}

/** Connections the process may hold open at once: ⌊(soft − RESERVED_FDS) / 2⌋, at least 1; 0 = no cap. */
export function connectionCap(limits: FdLimits | null): number {
  if (limits === null || !Number.isFinite(limits.soft)) return 0;
  return Math.max(1, Math.floor((limits.soft - RESERVED_FDS) / FDS_PER_CONNECTION));
}

/**
 * A warning when the listeners' max_connections together need more
 * descriptors than the limit allows (nginx warns about worker_connections
 * the same way); null when they fit. Unlimited listeners (0) add nothing:
 * the cap alone bounds them.
 */
export function capacityWarning(maxConnections: readonly number[], limits: FdLimits | null): string | null {
  if (limits === null || !Number.isFinite(limits.soft)) return null;
  const cap = connectionCap(limits);
  const sum = maxConnections.reduce((a, b) => a + b, 0);
  if (sum <= cap) return null;
  return (
    `the listeners' max_connections add up to ${sum}, which needs ${sum * FDS_PER_CONNECTION + RESERVED_FDS} file descriptors, ` +
    `but the open-file limit is ${limits.soft}: at most ${cap} connections will be served at once ` +
    `(raise LimitNOFILE / ulimit -n, or lower max_connections)`
  );
}
