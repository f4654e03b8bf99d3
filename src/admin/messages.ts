// The admin API's message shapes as JavaScript sees them (proto-loader with
// keepCase, enums as their names: proto/mc_proxy/v1/admin.proto), declared
// once for the service (admin_service.ts) and its client (the CLI).

/** A backend as the admin API reports it. */
export interface BackendMsg {
  addr: string;
  weight: number;
  backup: boolean;
  /** BACKEND_STATE_* */
  state: string;
  health: { up: boolean; last_check: string; last_check_unix_seconds: number; consecutive_failures: number } | null;
  active_connections: number;
  /** In drain or disabled: the connections still open, and when drain_timeout ends them ("" / 0: never, or enabled). */
  draining_connections: number;
  closes_at: string;
  closes_at_unix_seconds: number;
}

/** A route as the admin API reports it. */
export interface RouteMsg {
  /** The route's key: its host name, or for a pattern route its pattern (as RemoveRoute names it). */
  hostname: string;
  /** A pattern route's pattern; "" for the others. */
  hostname_pattern: string;
  /** The first backend (the whole route for a plain `backend = …`). */
  backend: string;
  /** SEND_PROXY_PROTOCOL_* */
  send_proxy_protocol: string;
  backends: BackendMsg[];
  /** BALANCE_* */
  balance: string;
  /** HEALTH_CHECK_* */
  health_check: string;
  alpn: string[];
  allow: string[];
  deny: string[];
  /** The destination guard's lists (docs/SECURITY.md "Destination guard"). */
  allow_destinations: string[];
  deny_destinations: string[];
  max_connections: number;
  active_connections: number;
  /** The route's own check settings: a duration's text, a count; "" / 0 where it takes [proxy]'s. */
  health_check_interval: string;
  health_check_timeout: string;
  health_check_rise: number;
  health_check_fall: number;
  /** The route's own drain_timeout and max_connection_lifetime as duration text; "" where it takes the default. */
  drain_timeout: string;
  max_connection_lifetime: string;
}

/** AddRoute's route as a caller sends it: proto3, so any field may be absent. */
export interface RouteInput {
  hostname?: string;
  hostname_pattern?: string;
  backend?: string;
  send_proxy_protocol?: string;
  backends?: { addr?: string; weight?: number; backup?: boolean }[];
  balance?: string;
  health_check?: string;
  alpn?: string[];
  allow?: string[];
  deny?: string[];
  allow_destinations?: string[];
  deny_destinations?: string[];
  max_connections?: number | string;
  health_check_interval?: string;
  health_check_timeout?: string;
  health_check_rise?: number;
  health_check_fall?: number;
  drain_timeout?: string;
  max_connection_lifetime?: string;
}

/** AddRoute's answer: the route now, and the one it replaced (null when none). */
export interface AddRouteReply {
  route: RouteMsg;
  replaced: boolean;
  previous: RouteMsg | null;
}

export interface RuleMsg {
  /** FIREWALL_RULE_TYPE_* */
  type: string;
  value: string;
}

export interface ListRoutesReply {
  listeners: { listener: string; routes: RouteMsg[] }[];
}

/** ListFingerprints, as the CLI reads it. */
export interface FingerprintsReply {
  fingerprints: {
    ja4: string;
    connections: number;
    blocked: number;
    error: number;
    client_networks: number;
    client_networks_at_least: boolean;
    first_seen_unix_ms: number;
    last_seen_unix_ms: number;
  }[];
  window_seconds: number;
  capacity: number;
  workers: number;
}

/** GetStatus (the fields the CLI prints; the reply has more). */
export interface StatusReply {
  version: string;
  uptime_seconds: number;
  started_at_unix_seconds: number;
  total_connections: number;
  active_connections: number;
  outcomes: { outcome: string; count: number }[];
  listeners: {
    addr: string;
    name: string;
    /** "tcp", or "quic" (its addr is "ADDR/quic"). */
    protocol: string;
    /** Its one name in logs, metrics and status (name, or NAME/quic). */
    label: string;
    route_count: number;
    active_connections: number;
    max_connections: number;
    proxy_protocol: boolean;
    trusted_proxies: readonly string[];
    routes: RouteMsg[];
  }[];
  connection_cap: number;
  unauthenticated_admin: boolean;
  store: string;
  generation: number;
  pid: number;
}
