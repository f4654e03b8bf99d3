// The admin API's behaviour, independent of gRPC plumbing: bound and
// validate (request_fields.ts; the rules every source shares: routing/route.ts)
// → write through the ConfigStore (SQLite in a transaction, or an etcd
// transaction), one mutation at a time (mutation_queue.ts) → the store applies
// what it committed to the control plane (docs/SPEC.md §8), so memory always
// equals the store; a failed write throws before anything in memory changes.
// Reads are answered from memory (replies.ts).

import { status } from "@grpc/grpc-js";
import { LIMITS } from "../config/limits";
import { maxConnectionsError } from "../config/ranges";
import type { Logger } from "../log/logger";
import { canBind } from "../routing/pool";
import {
  type BackendSpec,
  type Route,
  backendError,
  isRoute,
  placeholdersOf,
  routeName,
  routeProblems,
  routeSetProblems,
  singleBackend,
} from "../routing/route";
import type { ListenerView, RuntimeStatus } from "../server/runtime_views";
import type { Snapshot } from "../server/snapshot";
import type { ConfigStore } from "../store/config_store";
import { AdminError, invalid } from "./admin_error";
import { clip } from "./clip";
import type {
  AddRouteReply,
  BackendMsg,
  FingerprintsReply,
  ListRoutesReply,
  RouteInput,
  RuleMsg,
  StatusReply,
} from "./messages";
import { MutationQueue } from "./mutation_queue";
import { BACKEND_STATE_ENUM, RULE_TYPE_ENUM, fromEnum } from "./protos";
import { type StatusExtras, backendMsg, fingerprintsReply, routeMsg, statusReply, writtenRouteMsg } from "./replies";
import {
  DEFAULT_FINGERPRINTS,
  MAX_FINGERPRINTS,
  MAX_LENGTH,
  alpnField,
  bounded,
  hostnameField,
  routeKeyField,
  routeOptions,
  ruleField,
} from "./request_fields";

export class AdminService {
  private readonly mutations: MutationQueue;

  constructor(
    private readonly runtime: RuntimeStatus,
    private readonly store: ConfigStore,
    logger: Logger,
    private readonly extras: StatusExtras = { unauthenticatedAdmin: false },
  ) {
    this.mutations = new MutationQueue(logger);
  }

  listRoutes(req: { listener: string }): ListRoutesReply {
    const name = bounded("listener", req.listener, MAX_LENGTH.listener);
    const targets = name === "" ? this.runtime.listeners : [this.listener(name)];
    return {
      listeners: targets.map((l) => ({
        listener: l.name,
        routes: l.table.routes().map((r) => routeMsg(this.runtime.backends, r, this.runtime.drainTimeoutMs)),
      })),
    };
  }

  addRoute(req: { listener: string; route: RouteInput | null }): Promise<AddRouteReply> {
    const listener = bounded("listener", req.listener, MAX_LENGTH.listener);
    const rawHost = bounded("route.hostname", req.route?.hostname, MAX_LENGTH.hostname);
    const rawPattern = bounded("route.hostname_pattern", req.route?.hostname_pattern, MAX_LENGTH.hostname);
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
    const hostname = routeKeyField(rawHost, rawPattern);
    let backends: BackendSpec[];
    if (specs.length > 0) {
      backends = specs;
    } else {
      if (backend === "") throw invalid("route.backend: required (host:port), or route.backends for a pool");
      const err = backendError(backend, placeholdersOf(hostname));
      if (err !== null) throw invalid(`route.backend: ${clip(backend)}: ${err}`);
      backends = singleBackend(backend);
    }
    const alpn = alpnField("route.alpn", req.route.alpn);
    const name = routeName({ hostname, alpn });
    const existing = l.table.find(name);
    const route = { ...routeOptions(req.route, existing), hostname, alpn, backends } as unknown as Route;
    // The same rules as the config file and etcd values (routing/route.ts).
    const bad = routeProblems(route, "route");
    if (bad.length > 0) throw invalid(bad[0]!);
    return this.mutations.run(async () => {
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
      // What it replaces, as it is now (its pool's health and counters included).
      const was = this.runtime.listener(l.name)?.table.find(name);
      const previous = was === undefined ? null : routeMsg(this.runtime.backends, was, this.runtime.drainTimeoutMs);
      const { replaced } = await this.store.upsertRoute(l.name, route);
      const now = this.runtime.listener(l.name)!.table.find(name);
      return {
        // Not in this instance's table (only when its store lags): say what was written.
        route:
          now === undefined
            ? writtenRouteMsg(route)
            : routeMsg(this.runtime.backends, now, this.runtime.drainTimeoutMs),
        replaced,
        previous: replaced ? previous : null,
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
    const key = { hostname: hostnameField("hostname", rawHost), alpn: alpnField("alpn", req.alpn) };
    const hostname = routeName(key);
    const state = fromEnum(BACKEND_STATE_ENUM, req.state, "enabled");
    if (state == null)
      throw invalid(`state: ${clip(String(req.state))} must be BACKEND_STATE_ENABLED, _DRAIN or _DISABLED`);
    if (req.reset_connections && state !== "disabled")
      throw invalid("reset_connections: only with BACKEND_STATE_DISABLED");
    return this.mutations.run(async () => {
      if (!(await this.store.setBackendState(l.name, key, addr, state))) {
        // Which of the two is missing: the route, or its backend.
        if (this.runtime.listener(l.name)!.table.find(hostname) === undefined)
          throw new AdminError(status.NOT_FOUND, `hostname: no route ${clip(hostname)} on listener ${clip(l.name)}`);
        throw new AdminError(
          status.NOT_FOUND,
          `addr: route ${clip(hostname)} on listener ${clip(l.name)} has no backend ${clip(addr)}`,
        );
      }
      const pool = this.runtime.listener(l.name)!.table.find(hostname)!;
      const i = pool.backends.findIndex((b) => b.addr === addr);
      const reset = req.reset_connections ? await this.runtime.applyBackendReset(pool.refs[i]!) : 0;
      return {
        backend: backendMsg(this.runtime.backends, pool, i, this.runtime.drainTimeoutMs),
        connections_reset: reset,
      };
    });
  }

  removeRoute(req: { listener: string; hostname: string; alpn?: string[] }): Promise<Record<string, never>> {
    const listener = bounded("listener", req.listener, MAX_LENGTH.listener);
    const rawHost = bounded("hostname", req.hostname, MAX_LENGTH.hostname);
    const l = this.listener(listener);
    const key = { hostname: hostnameField("hostname", rawHost), alpn: alpnField("alpn", req.alpn) };
    return this.mutations.run(async () => {
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

  addFirewallRule(req: { rule: RuleMsg | null; keep_established?: boolean }): Promise<{
    rule: RuleMsg;
    added: boolean;
  }> {
    const rule = ruleField(req.rule);
    if (rule.type === "country" && !this.runtime.geoipConfigured) {
      throw new AdminError(
        status.FAILED_PRECONDITION,
        `rule.value: country rules need firewall.geoip_db in the config; ${rule.value} would never match`,
      );
    }
    return this.mutations.run(async () => {
      const added = await this.store.addRule(rule, req.keep_established === true);
      return { rule: { type: RULE_TYPE_ENUM[rule.type], value: rule.value }, added };
    });
  }

  removeFirewallRule(req: { rule: RuleMsg | null }): Promise<Record<string, never>> {
    const rule = ruleField(req.rule);
    return this.mutations.run(async () => {
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
    return this.mutations.run(async () => {
      await this.store.setMaxConnections(l.name, n);
      return { listener: l.name, max_connections: n };
    });
  }

  async listFingerprints(req: { limit?: number }): Promise<FingerprintsReply> {
    const limit = req.limit || DEFAULT_FINGERPRINTS;
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_FINGERPRINTS)
      throw invalid(`limit: ${Number(req.limit)} must be 1-${MAX_FINGERPRINTS} (0 means ${DEFAULT_FINGERPRINTS})`);
    return fingerprintsReply(await this.runtime.fingerprints(limit));
  }

  /** From a snapshot just taken (the dashboard's, which reads its counters too), or a new one. */
  async getStatus(snapshot?: Snapshot): Promise<StatusReply & { workers: unknown }> {
    const s = snapshot ?? (await this.runtime.snapshot());
    return statusReply(s, this.runtime, this.store.describe(), this.extras, Date.now());
  }

  /** The name of the listener a request names by its name or its addr (the audit line's, audit.ts); undefined when none. */
  listenerName(nameOrAddr: string): string | undefined {
    return this.runtime.listener(nameOrAddr)?.name;
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
}
