// The admin API's behaviour, independent of gRPC plumbing: validate → write
// to SQLite in a transaction → swap the in-memory table (SPEC §8). The swap
// is built from what the store now holds, so memory always equals the
// database; a failed write throws before anything in memory changes.
//
// Handlers are synchronous (bun:sqlite is), so two mutations never
// interleave: each runs to completion within one turn of the event loop.

import { status } from "@grpc/grpc-js";
import { backendError, parseRouteHostname } from "../config/config";
import { parseCidrRule, parseCountryRule, parseIpRule } from "../firewall/address";
import type { FirewallRules } from "../firewall/firewall";
import type { Logger } from "../log/logger";
import type { ListenerRuntime } from "../server/context";
import type { Server } from "../server/server";
import { type Store, StoreError, type StoredRule } from "../store/store";
import { VERSION } from "../version";
import { RULE_TYPE_ENUM, shortRuleType } from "./protos";

/** An RPC failure with its gRPC status code; the message names the field. */
export class AdminError extends Error {
  constructor(
    readonly code: status,
    message: string,
  ) {
    super(message);
    this.name = "AdminError";
  }
}


interface RouteMsg {
  hostname: string;
  backend: string;
}
interface RuleMsg {
  type: string;
  value: string;
}

const invalid = (msg: string) => new AdminError(status.INVALID_ARGUMENT, msg);

export class AdminService {
  constructor(
    private readonly server: Server,
    private readonly store: Store,
    private readonly logger: Logger,
  ) {}

  listRoutes(req: { listener: string }): { listeners: { listener: string; routes: RouteMsg[] }[] } {
    const targets = req.listener === "" ? this.server.listeners : [this.listener(req.listener)];
    return { listeners: targets.map((l) => ({ listener: l.addr, routes: l.table.routes() })) };
  }

  addRoute(req: { listener: string; route: RouteMsg | null }): { route: RouteMsg; replaced: boolean } {
    const l = this.listener(req.listener);
    if (req.route === null || req.route === undefined) throw invalid("route: required");
    const hostname = this.hostname("route.hostname", req.route.hostname);
    const backend = req.route.backend;
    if (backend === "") throw invalid("route.backend: required (host:port)");
    const err = backendError(backend);
    if (err !== null) throw invalid(`route.backend: ${JSON.stringify(backend)}: ${err}`);
    const route = { hostname, backend };
    const replaced = this.write(() => this.store.upsertRoute(l.addr, route));
    this.reloadRoutes(l);
    this.logger.info("admin: route added", { listener: l.addr, hostname, backend, replaced });
    return { route, replaced };
  }

  removeRoute(req: { listener: string; hostname: string }): Record<string, never> {
    const l = this.listener(req.listener);
    const hostname = this.hostname("hostname", req.hostname);
    const removed = this.write(() => this.store.removeRoute(l.addr, hostname));
    if (!removed) throw new AdminError(status.NOT_FOUND, `hostname: no route for ${JSON.stringify(hostname)} on listener ${JSON.stringify(l.addr)}`);
    this.reloadRoutes(l);
    this.logger.info("admin: route removed", { listener: l.addr, hostname });
    return {};
  }

  getFirewallRules(): { rules: RuleMsg[] } {
    return { rules: this.store.rules().map((r) => ({ type: RULE_TYPE_ENUM[r.type], value: r.value })) };
  }

  addFirewallRule(req: { rule: RuleMsg | null }): { rule: RuleMsg; added: boolean } {
    const rule = this.rule(req.rule);
    if (rule.type === "country" && this.server.firewall.geoipPath === null) {
      throw new AdminError(status.FAILED_PRECONDITION, `rule.value: country rules need firewall.geoip_db in the config; ${rule.value} would never match`);
    }
    const added = this.write(() => this.store.addRule(rule));
    this.reloadRules();
    this.logger.info("admin: firewall rule added", { type: rule.type, value: rule.value, added });
    return { rule: { type: RULE_TYPE_ENUM[rule.type], value: rule.value }, added };
  }

  removeFirewallRule(req: { rule: RuleMsg | null }): Record<string, never> {
    const rule = this.rule(req.rule);
    const removed = this.write(() => this.store.removeRule(rule));
    if (!removed) throw new AdminError(status.NOT_FOUND, `rule: no ${rule.type} rule ${JSON.stringify(rule.value)}`);
    this.reloadRules();
    this.logger.info("admin: firewall rule removed", { type: rule.type, value: rule.value });
    return {};
  }

  setListenerMaxConnections(req: { listener: string; max_connections: number }): { listener: string; max_connections: number } {
    const l = this.listener(req.listener);
    const n = req.max_connections;
    if (!Number.isSafeInteger(n) || n < 0 || n > 2_147_483_647) throw invalid(`max_connections: ${n} must be 0 (unlimited) to 2147483647`);
    this.write(() => this.store.setMaxConnections(l.addr, n));
    l.maxConnections = n;
    this.logger.info("admin: max_connections set", { listener: l.addr, max_connections: n });
    return { listener: l.addr, max_connections: n };
  }

  getStatus(): object {
    const s = this.server.status();
    return {
      version: VERSION,
      uptime_seconds: Math.floor((Date.now() - s.startedAt) / 1000),
      started_at_unix_seconds: Math.floor(s.startedAt / 1000),
      total_connections: s.closed + s.active,
      active_connections: s.active,
      outcomes: Object.entries(s.outcomes).map(([outcome, count]) => ({ outcome, count })),
      listeners: s.listeners.map((l) => ({ addr: l.addr, route_count: l.routes, active_connections: l.active, max_connections: l.maxConnections })),
    };
  }

  private listener(addr: string): ListenerRuntime {
    if (addr === "" || addr === undefined) throw invalid("listener: required (the listener's addr as configured)");
    const l = this.server.listener(addr);
    if (l === undefined) {
      throw new AdminError(status.NOT_FOUND, `listener: ${JSON.stringify(addr)} not found (listeners: ${this.server.listeners.map((x) => x.addr).join(", ")})`);
    }
    return l;
  }

  private hostname(field: string, value: string): string {
    if (value === "" || value === undefined) throw invalid(`${field}: required`);
    const h = parseRouteHostname(value);
    if (typeof h !== "string") throw invalid(`${field}: ${JSON.stringify(value)}: ${h.error}`);
    return h;
  }

  private rule(msg: RuleMsg | null): StoredRule {
    if (msg === null || msg === undefined) throw invalid("rule: required");
    const type = shortRuleType(msg.type);
    if (type === undefined) throw invalid(`rule.type: ${JSON.stringify(msg.type)} must be FIREWALL_RULE_TYPE_IP, FIREWALL_RULE_TYPE_CIDR or FIREWALL_RULE_TYPE_COUNTRY`);
    if (msg.value === "") throw invalid("rule.value: required");
    if (type === "ip") {
      const r = parseIpRule(msg.value);
      if (typeof r !== "string") throw invalid(`rule.value: ${r.error}`);
      return { type, value: r };
    }
    if (type === "cidr") {
      const r = parseCidrRule(msg.value);
      if ("error" in r) throw invalid(`rule.value: ${r.error}`);
      return { type, value: `${r.address}/${r.prefix}` };
    }
    const r = parseCountryRule(msg.value);
    if (typeof r !== "string") throw invalid(`rule.value: ${r.error}`);
    return { type, value: r };
  }

  private write<T>(fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      if (e instanceof StoreError) {
        this.logger.error("admin: database write failed; nothing changed", { error: e.message });
        throw new AdminError(status.INTERNAL, e.message);
      }
      throw e;
    }
  }

  private reloadRoutes(l: ListenerRuntime): void {
    this.server.setRoutes(l, this.store.listener(l.addr)?.routes ?? []);
  }

  private reloadRules(): void {
    this.server.firewall.replaceRules(rulesFromStore(this.store.rules()));
  }
}

export function rulesFromStore(rules: readonly StoredRule[]): FirewallRules {
  return {
    blockedIps: rules.filter((r) => r.type === "ip").map((r) => r.value),
    blockedCidrs: rules.filter((r) => r.type === "cidr").map((r) => r.value),
    blockedCountries: rules.filter((r) => r.type === "country").map((r) => r.value),
  };
}
