// The one config loader: TOML text → validated Config, or a ConfigError that
// lists every problem with the file, the key and the bad value (docs/SPEC.md §7).
// Nothing binds before this returns. Unknown keys are errors. Each section
// is read beside what it configures: sections.ts, listeners.ts, and the
// routes in routing/route_config.ts.

import { readFileSync } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";
import type { LogFormat, LogLevel } from "../log/logger";
import { parseDuration } from "./duration";
import { validateListeners, validateQuicListeners } from "./listeners";
import { DEFAULTS, POOL_DEFAULTS, validateEtcd, validateFingerprints, validateFirewall, validateGrpc, validateMetrics } from "./sections";
import { SECTIONS, type Table, applyEnvOverrides, checkKeys, readSection, show } from "./toml";
import { type Config, ConfigError, type ProxyConfig, type RouteReader } from "./types";

export * from "./types";
export { DEFAULTS, POOL_DEFAULTS, readGrpcFile } from "./sections";

/** Read, parse and validate a config file, applying MCPROXY_* overrides from env. */
export function loadConfig<R>(file: string, readRoutes: RouteReader<R>, env: Record<string, string | undefined> = process.env): Config<R> {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new ConfigError(file, [`cannot read config file: ${(e as Error).message}`]);
  }
  return parseConfig(text, file, readRoutes, env);
}

export function parseConfig<R>(text: string, file: string, readRoutes: RouteReader<R>, env: Record<string, string | undefined> = {}): Config<R> {
  let raw: unknown;
  try {
    raw = Bun.TOML.parse(text);
  } catch (e) {
    // Bun's TOML errors carry no line or column (docs/BUN-NOTES.md); say what we can.
    throw new ConfigError(file, [`not valid TOML: ${(e as Error).message}`]);
  }
  const problems: string[] = [];
  const root = raw as Table;
  applyEnvOverrides(root, env, problems);
  const cfg = validate(root, file, problems, readRoutes);
  if (problems.length > 0) throw new ConfigError(file, problems);
  return cfg;
}

function validate<R>(root: Table, file: string, problems: string[], readRoutes: RouteReader<R>): Config<R> {
  const base = dirname(resolve(file));
  const pathOf = (p: string): string => (isAbsolute(p) ? p : resolve(base, p));
  checkKeys(root, { ...SECTIONS, listeners: 1 }, "", problems);

  const database = readSection(root, "database", problems) ?? {};
  const databasePath = pathOf((database.path as string | undefined) || "mc-proxy.db");

  const proxySec = readSection(root, "proxy", problems) ?? {};
  const dur = (k: string, def: string, allowZero = false): number => {
    const v = proxySec[k] as number | undefined;
    if (v === undefined) return parseDuration(def)!;
    if (v === 0 && !allowZero) problems.push(`proxy.${k}: must be greater than zero`);
    return v;
  };
  const proxy: ProxyConfig = {
    connectTimeoutMs: dur("connect_timeout", DEFAULTS.connectTimeout),
    idleTimeoutMs: dur("idle_timeout", DEFAULTS.idleTimeout),
    // Chromium's and quic-go's default QUIC idle timeout is 30 s: a flow quiet that long is over at both ends.
    quicIdleTimeoutMs: dur("quic_idle_timeout", "30s"),
    helloTimeoutMs: dur("hello_timeout", DEFAULTS.helloTimeout),
    maxHelloBytes: (proxySec.max_hello_bytes as number | undefined) ?? DEFAULTS.maxHelloBytes,
    shutdownTimeoutMs: dur("shutdown_timeout", DEFAULTS.shutdownTimeout, true),
    workers: (proxySec.workers as number | "auto" | undefined) ?? "auto",
    pool: {
      check: {
        intervalMs: dur("health_check_interval", "5s"),
        timeoutMs: dur("health_check_timeout", "2s"),
        rise: (proxySec.health_check_rise as number | undefined) ?? POOL_DEFAULTS.check.rise,
        fall: (proxySec.health_check_fall as number | undefined) ?? POOL_DEFAULTS.check.fall,
      },
      retries: (proxySec.retries as number | undefined) ?? POOL_DEFAULTS.retries,
    },
  };
  for (const [k, v] of [
    ["health_check_rise", proxy.pool.check.rise],
    ["health_check_fall", proxy.pool.check.fall],
  ] as const) {
    if (v < 1 || v > 100) problems.push(`proxy.${k}: ${v} must be 1-100`);
  }
  if (proxy.pool.retries < 0 || proxy.pool.retries > 30) problems.push(`proxy.retries: ${proxy.pool.retries} must be 0-30`);
  // A ClientHello is a uint24-length handshake message; a cap under 512 bytes
  // would refuse real clients (the smallest captured one is 214 bytes).
  if (proxy.maxHelloBytes < 512 || proxy.maxHelloBytes > 16_777_219) {
    problems.push(`proxy.max_hello_bytes: ${proxy.maxHelloBytes} is out of range 512-16777219`);
  }

  const logSec = readSection(root, "log", problems) ?? {};
  const level = (logSec.level as string | undefined) ?? "info";
  const format = (logSec.format as string | undefined) ?? "text";
  if (!["debug", "info", "warn", "error"].includes(level)) problems.push(`log.level: ${show(level)} is not one of debug, info, warn, error`);
  if (!["text", "json"].includes(format)) problems.push(`log.format: ${show(format)} is not one of text, json`);

  const firewall = validateFirewall(readSection(root, "firewall", problems) ?? {}, pathOf, problems);
  const fingerprints = validateFingerprints(readSection(root, "fingerprints", problems) ?? {}, problems);
  const grpc = validateGrpc(root, pathOf, problems);
  const listeners = validateListeners(root.listeners, problems, readRoutes);
  const quicListeners = validateQuicListeners(root.listeners, listeners, problems);
  const metrics = validateMetrics(root, pathOf, listeners, grpc, problems);
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
    store,
    etcd,
    firewall,
    fingerprints,
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
