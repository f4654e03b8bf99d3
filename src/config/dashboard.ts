// The [dashboard] section and its [[dashboard.users]] tables (docs/DASHBOARD.md):
// where the web dashboard listens, its TLS, how long a login lasts, and who
// may log in with which role. Secure by default: plain HTTP only on a
// loopback address or a unix socket, at least one user, each password an
// argon2id hash (`mc-proxy passwd`), never a password.

import { isIP } from "node:net";
import { type HostPort, parseHostPort } from "../net/host_port";
import { parseIpText } from "../net/ip";
import { formatDuration } from "./duration";
import { LIMITS, defaultOf, outOfRange } from "./limits";
import { collides } from "./sections";
import { SECTIONS, type Table, checkKeys, isTable, show, typed } from "./toml";
import type { DashboardConfig, DashboardRole, DashboardUser, GrpcConfig, ListenerConfig, MetricsConfig } from "./types";

export const DASHBOARD_ROLES: readonly DashboardRole[] = ["reader", "operator", "admin"];
/** A user's name: it is the audit line's identity (`dashboard:NAME`), so plain characters only. */
const USER_NAME = /^[A-Za-z0-9._@-]{1,64}$/;
/** An argon2id PHC string (the form Bun.password.hash writes): parameters, a salt of ≥ 8 bytes, a hash of ≥ 16. */
const ARGON2ID = /^\$argon2id\$v=19\$m=\d{1,10},t=\d{1,10},p=\d{1,3}\$[A-Za-z0-9+/]{11,}\$[A-Za-z0-9+/]{22,}$/;
/** Users at most: each login checks one hash; the table is read at start. */
const MAX_USERS = 1000;
const USER_KEYS = { name: 1, role: 1, password_hash: 1 };

/** Whether a dashboard host is this machine only: 127.0.0.0/8, ::1, or "localhost" (RFC 6761 §6.3). */
export function isLoopbackHost(host: string): boolean {
  if (host.toLowerCase() === "localhost") return true;
  if (isIP(host) === 0) return false;
  const ip = parseIpText(host);
  return ip !== null && (ip === "::1" || ip.startsWith("127."));
}

/** Everything else the process binds, for the collision check. */
export interface OtherAddresses {
  listeners: readonly ListenerConfig[];
  grpc: GrpcConfig | null;
  metrics: MetricsConfig | null;
}

export function validateDashboard(
  root: Table,
  pathOf: (p: string) => string,
  others: OtherAddresses,
  problems: string[],
): DashboardConfig | null {
  const raw = root.dashboard;
  if (raw === undefined) return null;
  if (!isTable(raw)) {
    problems.push(`dashboard: expected a table [dashboard], got ${show(raw)}`);
    return null;
  }
  const keys = SECTIONS.dashboard!;
  checkKeys(raw, { ...keys, users: 1 }, "dashboard.", problems);
  const sec: Table = {};
  for (const [k, kind] of Object.entries(keys))
    if (raw[k] !== undefined) sec[k] = typed(kind, raw[k], `dashboard.${k}`, problems);
  const opt = (k: string): string | null =>
    typeof sec[k] === "string" && sec[k] !== "" ? pathOf(sec[k] as string) : null;
  const d: DashboardConfig = {
    addr: (sec.addr as string | undefined) ?? "",
    tlsCert: opt("tls_cert"),
    tlsKey: opt("tls_key"),
    sessionTtlMs: (sec.session_ttl as number | undefined) ?? defaultOf("dashboard.session_ttl"),
    users: validateUsers(raw.users, problems),
  };
  if ((d.tlsCert === null) !== (d.tlsKey === null))
    problems.push(`dashboard.tls_cert, dashboard.tls_key: set both (HTTPS) or neither`);
  const ttl = LIMITS["dashboard.session_ttl"];
  if (outOfRange("dashboard.session_ttl", d.sessionTtlMs))
    problems.push(
      `dashboard.session_ttl: ${formatDuration(d.sessionTtlMs)} is out of range ${formatDuration(ttl.min)}-${formatDuration(ttl.max)}`,
    );
  if (d.addr === "") {
    problems.push(`dashboard.addr: required when [dashboard] is present (host:port, or unix:/path/to/dashboard.sock)`);
  } else if (d.addr.startsWith("unix:")) {
    if (d.addr.length === "unix:".length) problems.push(`dashboard.addr: ${show(d.addr)} names no socket path`);
    else d.addr = `unix:${pathOf(d.addr.slice(5))}`;
    if (others.grpc?.addr === d.addr) problems.push(`dashboard.addr: ${show(d.addr)} is the admin API's (grpc.addr)`);
    if (others.metrics?.addr === d.addr)
      problems.push(`dashboard.addr: ${show(d.addr)} is the metrics' (metrics.addr)`);
  } else {
    const hp = parseHostPort(d.addr, { allowEmptyHost: true });
    if (!hp.ok) problems.push(`dashboard.addr: ${show(d.addr)}: ${hp.error}`);
    else {
      // Secure by default: a password and a session cookie in clear text only where nobody else can listen.
      if (d.tlsCert === null && !isLoopbackHost(hp.value.host))
        problems.push(
          `dashboard.tls_cert, dashboard.tls_key: required for ${show(d.addr)} (plain HTTP carries passwords and session cookies in clear: only a loopback address or a unix: socket may go without TLS)`,
        );
      collisions(d.addr, hp.value, others, problems);
    }
  }
  return d;
}

function collisions(addr: string, hp: HostPort, others: OtherAddresses, problems: string[]): void {
  others.listeners.forEach((l, i) => {
    if (l.protocol === "tcp" && l.addr !== "" && collides(hp, l.bind))
      problems.push(`dashboard.addr: ${show(addr)} is the address of listeners[${i}] (${show(l.addr)})`);
  });
  for (const [key, other] of [
    ["grpc.addr", others.grpc?.addr],
    ["metrics.addr", others.metrics?.addr],
  ] as const) {
    if (other === undefined || other.startsWith("unix:")) continue;
    const o = parseHostPort(other, { allowEmptyHost: true });
    if (o.ok && collides(hp, o.value)) problems.push(`dashboard.addr: ${show(addr)} is the address of ${key}`);
  }
}

function validateUsers(raw: unknown, problems: string[]): DashboardUser[] {
  const need = `at least one [[dashboard.users]] table is required (name, role, password_hash from mc-proxy passwd)`;
  if (raw === undefined) {
    problems.push(`dashboard.users: ${need}`);
    return [];
  }
  if (!Array.isArray(raw) || !raw.every(isTable)) {
    problems.push(`dashboard.users: expected [[dashboard.users]] tables, got ${show(raw)}`);
    return [];
  }
  if (raw.length === 0) problems.push(`dashboard.users: ${need}`);
  if (raw.length > MAX_USERS) problems.push(`dashboard.users: ${raw.length} users; at most ${MAX_USERS}`);
  const users: DashboardUser[] = [];
  const seen = new Set<string>();
  raw.slice(0, MAX_USERS).forEach((t, i) => {
    const at = `dashboard.users[${i}].`;
    checkKeys(t, USER_KEYS, at, problems);
    const name = typed("string", t.name ?? "", `${at}name`, problems) as string | undefined;
    const role = typed("string", t.role ?? "", `${at}role`, problems) as string | undefined;
    const hash = typed("string", t.password_hash ?? "", `${at}password_hash`, problems) as string | undefined;
    if (name === undefined || role === undefined || hash === undefined) return;
    let bad = false;
    const problem = (p: string) => {
      problems.push(p);
      bad = true;
    };
    if (!USER_NAME.test(name))
      problem(`${at}name: ${show(name)} must be 1-64 characters of letters, digits and . _ @ -`);
    else if (seen.has(name)) problem(`${at}name: ${show(name)} is already a user's name (names are unique)`);
    seen.add(name);
    if (!DASHBOARD_ROLES.includes(role as DashboardRole))
      problem(`${at}role: ${show(role)} is not one of ${DASHBOARD_ROLES.join(", ")}`);
    // The hash is not echoed: it is a secret of sorts.
    if (!ARGON2ID.test(hash))
      problem(
        `${at}password_hash: not an argon2id hash ("$argon2id$v=19$m=…,t=…,p=…$salt$hash"); make one with mc-proxy passwd`,
      );
    if (!bad) users.push({ name, role: role as DashboardRole, passwordHash: hash });
  });
  return users;
}
