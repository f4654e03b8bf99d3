// The admin API's behaviour, independent of gRPC plumbing: bound and
// validate (the rules every source shares: routing/route.ts) → write through
// the ConfigStore (SQLite in a transaction, or an etcd transaction) → the
// store applies what it committed to the control plane (docs/SPEC.md §8), so
// memory always equals the store; a failed write throws before anything in
// memory changes.
//
// Mutations run one at a time, in arrival order (a queue). The data plane
// never waits on the store: a write that meets another process's SQLite
// lock fails at once and is retried from a timer, off the event loop's
// critical path, for up to LOCK_WAIT_MS; then the RPC is UNAVAILABLE and
// nothing has changed. Reads are answered from memory.

import { status } from "@grpc/grpc-js";
import { LIMITS } from "../config/limits";
import { maxConnectionsError } from "../config/ranges";
import {
  alpnError,
  backendError,
  isRoute,
  parseRouteHostname,
  routeName,
  routeProblems,
  routeSetProblems,
} from "../routing/route";
import { OPTION_ROWS, type OptionRow, type RouteDraft, emptyDraft } from "../routing/route_fields";
import { parseRule } from "../firewall/rule_set";
import type { Logger } from "../log/logger";
import type { ListenerView, RuntimeStatus } from "../server/runtime_views";
import { OUTCOMES } from "../server/stats";
import type { ConfigStore } from "../store/config_store";
import { StoreError, type StoredRule } from "../store/config_store";
import { VERSION } from "../version";
import { canBind } from "../routing/pool";
import { type BackendSpec, type BoundRoute, type Route, healthCheckOf, singleBackend } from "../routing/route";
import {
  BACKEND_STATE_ENUM,
  BALANCE_ENUM,
  HEALTH_CHECK_ENUM,
  RULE_TYPE_ENUM,
  SEND_PROXY_ENUM,
  fromEnum,
  shortRuleType,
} from "./protos";
import { clip } from "./clip";
import type {
  BackendMsg,
  FingerprintsReply,
  ListRoutesReply,
  RouteInput,
  RouteMsg,
  RuleMsg,
  StatusReply,
} from "./messages";

/** An RPC failure with its gRPC status code; the message names the field. */
export class AdminError extends Error {
  constructor(
    readonly code: status,
    message: string,
    /** For INTERNAL: what the caller is told instead of the message (which may name files). */
    readonly hint?: string,
  ) {
    super(message);
    this.name = "AdminError";
  }
}

/**
 * Longest accepted value per field, checked before anything else so that a
 * megabyte of input is refused without being parsed or echoed. A host name is
 * at most 253 bytes, plus "*." for a wildcard; a backend is a host name and
 * ":65535"; a listener is a host:port or [v6]:port.
 */
export const MAX_LENGTH = { hostname: 255, backend: 261, listener: 270, ruleValue: 64 } as const;

/** ListFingerprints: entries when the request names no limit, and at most. */
const DEFAULT_FINGERPRINTS = 20;
export const MAX_FINGERPRINTS = 10_000;

/** How long a mutation keeps retrying while another process holds the database's write lock. */
export const LOCK_WAIT_MS = 5000;
const RETRY_MS = 25;

const invalid = (msg: string) => new AdminError(status.INVALID_ARGUMENT, msg);

/** Refuse a value over `max` characters (or not a string) without echoing it whole. */
function bounded(field: string, value: unknown, max: number): string {
  if (value === undefined || value === null) return "";
  if (typeof value !== "string") throw invalid(`${field}: expected a string`);
  if (value.length > max) throw invalid(`${field}: ${clip(value)} is too long (at most ${max} characters)`);
  return value;
}

export interface StatusExtras {
  /** `[grpc] allow_unauthenticated_admin` is on: shown so it cannot go unnoticed. */
  unauthenticatedAdmin: boolean;
  /** This process's takeover generation (1 for a plain start) and pid. */
  generation?: number;
  pid?: number;
}

export class AdminService {
  /** Mutations in arrival order: each starts when the previous one has finished. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly runtime: RuntimeStatus,
    private readonly store: ConfigStore,
    private readonly logger: Logger,
    private readonly extras: StatusExtras = { unauthenticatedAdmin: false },
  ) {}

  listRoutes(req: { listener: string }): ListRoutesReply {
    const name = bounded("listener", req.listener, MAX_LENGTH.listener);
    const targets = name === "" ? this.runtime.listeners : [this.listener(name)];
    return {
      listeners: targets.map((l) => ({ listener: l.name, routes: l.table.routes().map((r) => this.routeMsg(r)) })),
    };
  }

  addRoute(req: { listener: string; route: RouteInput | null }): Promise<{ route: RouteMsg; replaced: boolean }> {
    const listener = bounded("listener", req.listener, MAX_LENGTH.listener);
    const rawHost = bounded("route.hostname", req.route?.hostname, MAX_LENGTH.hostname);
    const backend = bounded("route.backend", req.route?.backend, MAX_LENGTH.backend);
    const list = req.route?.backends ?? [];
    const maxBackends = LIMITS["routes.backends"].max;
    if (list.length > maxBackends)
      throw invalid(`route.backends: ${list.length} backends; at most ${maxBackends} per route`);
    const specs: BackendSpec[] = list.map((b, i) => ({
      addr: bounded(`route.backends[${i}].addr`, b.addr, MAX_LENGTH.backend),
      weight: b.weight || 1,
      backup: b.backup === true,
    }));
    const l = this.listener(listener);
    if (req.route === null || req.route === undefined) throw invalid("route: required");
    const hostname = this.hostname("route.hostname", rawHost);
    let backends: BackendSpec[];
    if (specs.length > 0) {
      backends = specs;
    } else {
      if (backend === "") throw invalid("route.backend: required (host:port), or route.backends for a pool");
      const err = backendError(backend);
      if (err !== null) throw invalid(`route.backend: ${clip(backend)}: ${err}`);
      backends = singleBackend(backend);
    }
    const alpn = this.alpn("route.alpn", req.route.alpn);
    const name = routeName({ hostname, alpn });
    const existing = l.table.find(name);
    const route = { ...this.options(req.route, existing), hostname, alpn, backends } as unknown as Route;
    const { sendProxyProtocol, balance } = route;
    // The same rules as the config file and etcd values (routing/route.ts).
    const bad = routeProblems(route, "route");
    if (bad.length > 0) throw invalid(bad[0]!);
    return this.mutate(async () => {
      const next = [...l.table.routes().filter((r) => !isRoute(r, route)), route];
      const clash = routeSetProblems(next, "route.alpn");
      if (clash.length > 0)
        throw new AdminError(status.ALREADY_EXISTS, `${clash[0]!}; remove or change that route first`);
      // Checked before anything is written: a full backend table changes nothing.
      if (!canBind(this.runtime.backends, l.index, next, l.table.defaultRoute?.route ?? null)) {
        throw new AdminError(
          status.RESOURCE_EXHAUSTED,
          `route.backends: the backend table is full (${this.runtime.backends.slots} route backends in all); nothing changed — remove routes or backends first`,
        );
      }
      const { replaced } = await this.store.upsertRoute(l.name, route);
      const now = this.runtime.listener(l.name)!.table.find(name);
      return {
        route:
          now === undefined
            ? // Not in this instance's table (only when its store lags): say what was written.
              {
                hostname,
                backend: backends[0]!.addr,
                send_proxy_protocol: SEND_PROXY_ENUM[sendProxyProtocol],
                backends: [],
                balance: BALANCE_ENUM[balance],
                health_check: HEALTH_CHECK_ENUM[healthCheckOf(route)],
                alpn: [...alpn],
                allow: [...route.allow],
                deny: [...route.deny],
                max_connections: route.maxConnections,
                active_connections: 0,
              }
            : this.routeMsg(now),
        replaced,
      };
    });
  }

  setBackendState(req: {
    listener: string;
    hostname: string;
    alpn?: string[];
    addr: string;
    state: string;
    reset_connections: boolean;
  }): Promise<{ backend: BackendMsg; connections_reset: number }> {
    const listener = bounded("listener", req.listener, MAX_LENGTH.listener);
    const rawHost = bounded("hostname", req.hostname, MAX_LENGTH.hostname);
    const addr = bounded("addr", req.addr, MAX_LENGTH.backend);
    const l = this.listener(listener);
    const key = { hostname: this.hostname("hostname", rawHost), alpn: this.alpn("alpn", req.alpn) };
    const hostname = routeName(key);
    const state = fromEnum(BACKEND_STATE_ENUM, req.state, "enabled");
    if (state == null)
      throw invalid(`state: ${clip(String(req.state))} must be BACKEND_STATE_ENABLED, _DRAIN or _DISABLED`);
    if (req.reset_connections && state !== "disabled")
      throw invalid("reset_connections: only with BACKEND_STATE_DISABLED");
    return this.mutate(async () => {
      if (!(await this.store.setBackendState(l.name, key, addr, state)))
        throw new AdminError(
          status.NOT_FOUND,
          `addr: route ${clip(hostname)} on ${clip(l.name)} has no backend ${clip(addr)}`,
        );
      const pool = this.runtime.listener(l.name)!.table.find(hostname)!;
      const i = pool.backends.findIndex((b) => b.addr === addr);
      const reset = req.reset_connections ? await this.runtime.applyBackendReset(pool.refs[i]!) : 0;
      return { backend: this.backendMsg(pool, i), connections_reset: reset };
    });
  }

  private backendMsg(r: BoundRoute, i: number): BackendMsg {
    const b = r.backends[i]!;
    const h = this.runtime.backends.health(r.refs[i]!);
    return {
      addr: b.addr,
      weight: b.weight,
      backup: b.backup,
      state: BACKEND_STATE_ENUM[h.state],
      health: {
        up: h.up,
        last_check: h.lastCheck,
        last_check_unix_seconds: h.lastCheckAt,
        consecutive_failures: h.consecutiveFailures,
      },
      active_connections: h.active,
    };
  }

  private routeMsg(r: BoundRoute): RouteMsg {
    return {
      hostname: r.hostname,
      backend: r.backends[0]!.addr,
      send_proxy_protocol: SEND_PROXY_ENUM[r.sendProxyProtocol],
      backends: r.backends.map((_, i) => this.backendMsg(r, i)),
      balance: BALANCE_ENUM[r.balance],
      health_check: HEALTH_CHECK_ENUM[healthCheckOf(r)],
      alpn: [...r.alpn],
      allow: [...r.allow],
      deny: [...r.deny],
      max_connections: r.maxConnections,
      active_connections: this.runtime.backends.active(r.countRef),
    };
  }

  removeRoute(req: { listener: string; hostname: string; alpn?: string[] }): Promise<Record<string, never>> {
    const listener = bounded("listener", req.listener, MAX_LENGTH.listener);
    const rawHost = bounded("hostname", req.hostname, MAX_LENGTH.hostname);
    const l = this.listener(listener);
    const key = { hostname: this.hostname("hostname", rawHost), alpn: this.alpn("alpn", req.alpn) };
    return this.mutate(async () => {
      if (!(await this.store.removeRoute(l.name, key)))
        throw new AdminError(
          status.NOT_FOUND,
          `hostname: no route ${clip(routeName(key))} on listener ${clip(l.name)}`,
        );
      return {};
    });
  }

  getFirewallRules(): { rules: RuleMsg[] } {
    return { rules: this.store.rules().map((r) => ({ type: RULE_TYPE_ENUM[r.type], value: r.value })) };
  }

  addFirewallRule(req: { rule: RuleMsg | null }): Promise<{ rule: RuleMsg; added: boolean }> {
    const rule = this.rule(req.rule);
    if (rule.type === "country" && !this.runtime.geoipConfigured) {
      throw new AdminError(
        status.FAILED_PRECONDITION,
        `rule.value: country rules need firewall.geoip_db in the config; ${rule.value} would never match`,
      );
    }
    return this.mutate(async () => {
      const added = await this.store.addRule(rule);
      return { rule: { type: RULE_TYPE_ENUM[rule.type], value: rule.value }, added };
    });
  }

  removeFirewallRule(req: { rule: RuleMsg | null }): Promise<Record<string, never>> {
    const rule = this.rule(req.rule);
    return this.mutate(async () => {
      if (!(await this.store.removeRule(rule)))
        throw new AdminError(status.NOT_FOUND, `rule: no ${rule.type} rule ${clip(rule.value)}`);
      return {};
    });
  }

  setListenerMaxConnections(req: {
    listener: string;
    max_connections: number;
  }): Promise<{ listener: string; max_connections: number }> {
    const l = this.listener(bounded("listener", req.listener, MAX_LENGTH.listener));
    const n = req.max_connections;
    const bad = maxConnectionsError(n, "max_connections");
    if (bad !== null) throw invalid(bad);
    return this.mutate(async () => {
      await this.store.setMaxConnections(l.name, n);
      return { listener: l.name, max_connections: n };
    });
  }

  async listFingerprints(req: { limit?: number }): Promise<FingerprintsReply> {
    const limit = req.limit || DEFAULT_FINGERPRINTS;
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_FINGERPRINTS)
      throw invalid(`limit: ${Number(req.limit)} must be 1-${MAX_FINGERPRINTS} (0 means ${DEFAULT_FINGERPRINTS})`);
    const v = await this.runtime.fingerprints(limit);
    return {
      fingerprints: v.entries.map((e) => ({
        ja4: e.key,
        connections: e.count,
        blocked: e.blocked,
        error: e.error,
        client_networks: e.clientPrefixes,
        client_networks_at_least: e.clientPrefixesSaturated,
        first_seen_unix_ms: e.firstSeen,
        last_seen_unix_ms: e.lastSeen,
      })),
      window_seconds: Math.round(v.windowMs / 1000),
      capacity: v.capacity,
      workers: v.loops,
    };
  }

  async getStatus(): Promise<StatusReply & { workers: unknown }> {
    const s = await this.runtime.snapshot();
    const closed = s.listeners.reduce((n, l) => n + l.closed.reduce((a, b) => a + b, 0), 0);
    const active = s.listeners.reduce((n, l) => n + l.active, 0);
    return {
      version: VERSION,
      uptime_seconds: Math.floor((Date.now() - s.startedAt) / 1000),
      started_at_unix_seconds: Math.floor(s.startedAt / 1000),
      total_connections: closed + active,
      active_connections: active,
      outcomes: OUTCOMES.map((outcome, i) => ({
        outcome,
        count: s.listeners.reduce((n, l) => n + l.closed[i]!, 0),
      })).filter((o) => o.count > 0),
      // QUIC listeners follow the TCP ones: addr "ADDR/quic", the name (and routes) of the listener whose routes they use.
      listeners: s.listeners.map((l) => ({
        addr: l.addr,
        name: l.name,
        protocol: l.protocol,
        route_count: l.routes,
        active_connections: l.active,
        max_connections: l.maxConnections,
        proxy_protocol: l.proxyProtocol,
        trusted_proxies: l.trustedProxies,
        routes: (this.runtime.listener(l.name)?.table.routes() ?? []).map((r) => this.routeMsg(r)),
      })),
      connection_cap: s.connectionCap,
      unauthenticated_admin: this.extras.unauthenticatedAdmin,
      workers: s.workers,
      store: this.store.describe(),
      generation: this.extras.generation ?? 1,
      pid: this.extras.pid ?? process.pid,
    };
  }

  /**
   * Run `write` after every earlier mutation, retrying while another process
   * holds the database lock. The database part of each attempt is
   * synchronous (bun:sqlite with busy_timeout 0), so it never blocks the loop
   * for more than one write; applying the result to the data plane may wait
   * for every worker to confirm.
   */
  private mutate<T>(write: () => Promise<T>): Promise<T> {
    const run = async (): Promise<T> => {
      const giveUpAt = performance.now() + LOCK_WAIT_MS;
      for (;;) {
        try {
          return await write();
        } catch (e) {
          if (!(e instanceof StoreError)) throw e;
          if (e.busy && performance.now() < giveUpAt) {
            await Bun.sleep(RETRY_MS);
            continue;
          }
          this.logger.error("admin: store write failed; nothing changed", { error: e.message });
          if (e.busy)
            throw new AdminError(
              status.UNAVAILABLE,
              `database is locked by another process (waited ${LOCK_WAIT_MS} ms); nothing changed, retry: ${e.message}`,
            );
          if (e.unavailable) throw new AdminError(status.UNAVAILABLE, e.message);
          if (e.notApplied) throw new AdminError(status.DEADLINE_EXCEEDED, e.message);
          throw new AdminError(status.INTERNAL, e.message, "the database write failed; nothing changed");
        }
      }
    };
    const next = this.queue.then(run, run);
    this.queue = next.catch(() => {});
    return next;
  }

  private listener(addr: string): ListenerView {
    if (addr === "") throw invalid("listener: required (the listener's addr as configured)");
    const l = this.runtime.listener(addr);
    if (l === undefined) {
      throw new AdminError(
        status.NOT_FOUND,
        `listener: ${clip(addr)} not found (listeners: ${this.runtime.listeners.map((x) => (x.name === x.addr ? x.addr : `${x.name} (${x.addr})`)).join(", ")})`,
      );
    }
    return l;
  }

  private hostname(field: string, value: string): string {
    if (value === "") throw invalid(`${field}: required`);
    const h = parseRouteHostname(value);
    if (!h.ok) throw invalid(`${field}: ${clip(value)}: ${h.error}`);
    return h.value;
  }

  /** An ALPN list from a request: the one rule (routing/route.ts), as given. */
  private alpn(field: string, v: string[] | undefined): string[] {
    const list = v ?? [];
    const err = alpnError(list, field);
    if (err !== null) throw invalid(err);
    return list;
  }

  /**
   * The route's options from a request, by the field table
   * (routing/route_fields.ts): an enum by its name (UNSPECIFIED: unset), a
   * list in canonical form; an option the API does not carry keeps the
   * route's own (or is unset). Ranges are routeProblems'.
   */
  private options(msg: RouteInput, existing: Route | undefined): RouteDraft {
    const d = emptyDraft();
    for (const row of OPTION_ROWS)
      row.put(d, row.proto === null ? (existing === undefined ? row.unset : row.get(existing)) : this.option(row, msg));
    return d;
  }

  private option(row: OptionRow, msg: RouteInput): unknown {
    const { field, enumPrefix, values } = row.proto!;
    const raw = (msg as Record<string, unknown>)[field];
    const at = `route.${field}`;
    if (enumPrefix !== undefined) {
      if (raw === undefined || raw === null || raw === "" || raw === `${enumPrefix}_UNSPECIFIED`) return row.unset;
      const v = values!.find((x) => `${enumPrefix}_${x.toUpperCase()}` === raw);
      if (v === undefined)
        throw invalid(
          `${at}: ${clip(String(raw))} must be ${values!.map((x) => `${enumPrefix}_${x.toUpperCase()}`).join(", ")}`,
        );
      return v;
    }
    if (raw === undefined || raw === null) return row.unset;
    if (Array.isArray(raw)) for (const [i, e] of raw.entries()) bounded(`${at}[${i}]`, e, MAX_LENGTH.ruleValue);
    if (row.canonical === undefined) return raw;
    const c = row.canonical(raw, at);
    if (!c.ok) throw invalid(c.error);
    return c.value;
  }

  private rule(msg: RuleMsg | null): StoredRule {
    const value = bounded("rule.value", msg?.value, MAX_LENGTH.ruleValue);
    if (msg === null || msg === undefined) throw invalid("rule: required");
    const type = shortRuleType(msg.type);
    if (type === undefined)
      throw invalid(`rule.type: ${clip(String(msg.type))} must be FIREWALL_RULE_TYPE_IP, _CIDR, _COUNTRY or _JA4`);
    if (value === "") throw invalid("rule.value: required");
    const r = parseRule(type, value);
    if (!r.ok) throw invalid(`rule.value: ${r.error}`);
    return { type, value: r.value };
  }
}
