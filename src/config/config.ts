// The one config loader: TOML text → validated Config, or a ConfigError that
// lists every problem with the file, the key and the bad value (docs/SPEC.md §7).
// Nothing binds before this returns. Unknown keys are errors. Each section
// is read beside what it configures: sections.ts, listeners.ts, and the
// routes in routing/route_config.ts.

import { readFileSync } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";
import type { LogFormat, LogLevel } from "../log/logger";
import { validateDashboard } from "./dashboard";
import { LIMITS, type LimitKey, defaultOf, outOfRange } from "./limits";
import { validateListeners, validateQuicListeners } from "./listeners";
import { validateDns } from "./dns";
import { validateEtcd, validateFingerprints, validateFirewall, validateGrpc, validateMetrics } from "./sections";
import { SECTIONS, type Table, applyEnvOverrides, checkKeys, parseToml, readSection, show } from "./toml";
import { type Config, ConfigError, type GrpcConfig, type ProxyConfig, type RouteReader } from "./types";

export * from "./types";
export { POOL_DEFAULTS, readGrpcFile } from "./sections";

/**
 * What reading a config file found: every problem, and the config as far as
 * it could be read (null when the file is unreadable or not TOML). With
 * problems, its values are only those that passed their own key's check
 * (a wrongly typed key is left at its default): `check` inspects the files
 * it names, and nothing serves it.
 */
export interface ConfigRead<R> {
  config: Config<R> | null;
  problems: string[];
}

/** Read, parse and validate a config file, applying MCPROXY_* overrides from env; every problem, none thrown. */
export function readConfig<R>(
  file: string,
  readRoutes: RouteReader<R>,
  env: Record<string, string | undefined> = process.env,
): ConfigRead<R> {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    return { config: null, problems: [`cannot read config file: ${(e as Error).message}`] };
  }
  return examineConfig(text, file, readRoutes, env);
}

/** Parse and validate config text: every problem, none thrown. */
export function examineConfig<R>(
  text: string,
  file: string,
  readRoutes: RouteReader<R>,
  env: Record<string, string | undefined> = {},
): ConfigRead<R> {
  const parsed = parseToml(text);
  if (!parsed.ok) return { config: null, problems: [parsed.error] };
  const problems: string[] = [];
  const root = parsed.value;
  applyEnvOverrides(root, env, problems);
  const config = validate(root, file, problems, readRoutes);
  return { config, problems };
}

/**
 * The [grpc] section alone, for the admin commands (docs/COMMAND_LINE.md):
 * a file half edited elsewhere — a broken route, even a TOML syntax error
 * outside [grpc] — still reaches the admin API. Null when there is no
 * [grpc]; a ConfigError naming the section's own problems.
 */
export function loadGrpcSection(
  file: string,
  env: Record<string, string | undefined> = process.env,
): GrpcConfig | null {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new ConfigError(file, [`cannot read config file: ${(e as Error).message}`]);
  }
  let parsed = parseToml(text, false);
  // Not TOML as a whole: the [grpc] table's own lines may still be (and only if not is the error placed).
  if (!parsed.ok) {
    const own = parseToml(sectionText(text, "grpc"), false);
    if (!own.ok) throw new ConfigError(file, [(parseToml(text) as { error: string }).error]);
    parsed = own;
  }
  const problems: string[] = [];
  const root: Table = { grpc: parsed.value.grpc };
  const grpcEnv = Object.fromEntries(Object.entries(env).filter(([k]) => k.startsWith("MCPROXY_GRPC_")));
  applyEnvOverrides(root, grpcEnv, problems);
  const base = dirname(resolve(file));
  const grpc = validateGrpc(root, (p) => (isAbsolute(p) ? p : resolve(base, p)), problems);
  if (problems.length > 0) throw new ConfigError(file, problems);
  return grpc;
}

/** The lines of one top-level [name] table: from its header to the next header (or the end). */
function sectionText(text: string, name: string): string {
  const lines = text.split("\n");
  const start = lines.findIndex((l) => new RegExp(`^\\s*\\[\\s*${name}\\s*\\]\\s*(#.*)?\\r?$`).test(l));
  if (start < 0) return "";
  const next = lines.findIndex((l, i) => i > start && /^\s*\[/.test(l));
  return lines.slice(start, next < 0 ? undefined : next).join("\n");
}

/** readConfig, or a ConfigError listing every problem. */
export function loadConfig<R>(
  file: string,
  readRoutes: RouteReader<R>,
  env: Record<string, string | undefined> = process.env,
): Config<R> {
  return valid(readConfig(file, readRoutes, env), file);
}

/** examineConfig, or a ConfigError listing every problem. */
export function parseConfig<R>(
  text: string,
  file: string,
  readRoutes: RouteReader<R>,
  env: Record<string, string | undefined> = {},
): Config<R> {
  return valid(examineConfig(text, file, readRoutes, env), file);
}

function valid<R>(r: ConfigRead<R>, file: string): Config<R> {
  if (r.config === null || r.problems.length > 0) throw new ConfigError(file, r.problems);
  return r.config;
}

function validate<R>(root: Table, file: string, problems: string[], readRoutes: RouteReader<R>): Config<R> {
  const base = dirname(resolve(file));
  const pathOf = (p: string): string => (isAbsolute(p) ? p : resolve(base, p));
  checkKeys(root, { ...SECTIONS, listeners: 1 }, "", problems);

  const database = readSection(root, "database", problems) ?? {};
  const databasePath = pathOf((database.path as string | undefined) || "mc-proxy.db");

  const proxySec = readSection(root, "proxy", problems) ?? {};
  // Each [proxy] number: as written, or the default of config/limits.ts.
  const num = (k: string): number => (proxySec[k] as number | undefined) ?? defaultOf(`proxy.${k}` as LimitKey);
  const dur = (k: string): number => {
    const v = num(k);
    if (v === 0 && LIMITS[`proxy.${k}` as LimitKey].min > 0) problems.push(`proxy.${k}: must be greater than zero`);
    return v;
  };
  const proxy: ProxyConfig = {
    connectTimeoutMs: dur("connect_timeout"),
    idleTimeoutMs: dur("idle_timeout"),
    quicIdleTimeoutMs: dur("quic_idle_timeout"),
    helloTimeoutMs: dur("hello_timeout"),
    maxHelloBytes: num("max_hello_bytes"),
    shutdownTimeoutMs: dur("shutdown_timeout"),
    drainTimeoutMs: dur("drain_timeout"),
    workers: (proxySec.workers as number | "auto" | undefined) ?? LIMITS["proxy.workers"].default,
    pool: {
      check: {
        intervalMs: dur("health_check_interval"),
        timeoutMs: dur("health_check_timeout"),
        rise: num("health_check_rise"),
        fall: num("health_check_fall"),
      },
      retries: num("retries"),
    },
  };
  for (const k of ["health_check_rise", "health_check_fall", "retries"] as const) {
    const l = LIMITS[`proxy.${k}`];
    if (outOfRange(`proxy.${k}`, num(k))) problems.push(`proxy.${k}: ${num(k)} must be ${l.min}-${l.max}`);
  }
  const hello = LIMITS["proxy.max_hello_bytes"];
  if (outOfRange("proxy.max_hello_bytes", proxy.maxHelloBytes))
    problems.push(`proxy.max_hello_bytes: ${proxy.maxHelloBytes} is out of range ${hello.min}-${hello.max}`);

  const logSec = readSection(root, "log", problems) ?? {};
  const level = (logSec.level as string | undefined) ?? "info";
  const format = (logSec.format as string | undefined) ?? "text";
  if (!["debug", "info", "warn", "error"].includes(level))
    problems.push(`log.level: ${show(level)} is not one of debug, info, warn, error`);
  if (!["text", "json"].includes(format)) problems.push(`log.format: ${show(format)} is not one of text, json`);

  const firewall = validateFirewall(readSection(root, "firewall", problems) ?? {}, pathOf, problems);
  const fingerprints = validateFingerprints(readSection(root, "fingerprints", problems) ?? {}, problems);
  const dns = validateDns(root, problems);
  const grpc = validateGrpc(root, pathOf, problems);
  const listeners = validateListeners(root.listeners, problems, readRoutes);
  const quicListeners = validateQuicListeners(root.listeners, listeners, problems, readRoutes);
  const metrics = validateMetrics(root, pathOf, listeners, grpc, problems);
  const dashboard = validateDashboard(root, pathOf, { listeners, grpc, metrics }, problems);
  const storeSec = readSection(root, "store", problems) ?? {};
  const store = ((storeSec.backend as string | undefined) ?? "sqlite") as "sqlite" | "etcd";
  if (store !== "sqlite" && store !== "etcd") problems.push(`store.backend: ${show(store)} must be "sqlite" or "etcd"`);
  const etcd = validateEtcd(root, pathOf, store, problems);

  return {
    file,
    databasePath,
    listeners,
    quicListeners,
    grpc,
    metrics,
    dashboard,
    store,
    etcd,
    firewall,
    fingerprints,
    dns,
    proxy,
    log: { level: level as LogLevel, format: format as LogFormat },
    warnings: listeners.flatMap((l, i) =>
      l.trustedProxies.some((t) => t === "0.0.0.0/0" || t === "::/0")
        ? [
            `listeners[${i}].trusted_proxies: ${JSON.stringify(l.trustedProxies.filter((t) => t === "0.0.0.0/0" || t === "::/0"))} trusts every address: any client can send a PROXY header and choose the source address the firewall judges and the backends see; list only your load balancers`,
          ]
        : [],
    ),
  };
}
