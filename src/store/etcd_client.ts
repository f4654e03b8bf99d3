// The etcd client as mc-proxy uses it: TLS (an IP endpoint included),
// authentication, a circuit breaker and bounded calls that fail as
// "unreachable" (or say which setting to check when no retry can help); and
// the offline work on a fleet's state — one consistent read (`snapshot`) and
// an import into an empty prefix (`store import`).

import { readFileSync } from "node:fs";
import { ConsecutiveBreaker, ExponentialBackoff, type IBackoff, circuitBreaker, handleWhen, retry } from "cockatiel";
import { Etcd3, type IKeyValue, isRecoverableError } from "etcd3";
import type { EtcdConfig } from "../config/config";
import { ipTls } from "../net/grpc_tls";
import { RULE_VALUE, SCHEMA_VERSION, keys, listenerValue, stateFrom } from "./etcd_layout";
import { encodeRoute } from "./route_codec";
import { StoreError, type StoreState } from "./config_store";

/** Debian's etcd 3.4 refuses transactions of more than 128 operations (--max-txn-ops). */
export const MAX_TXN_OPS = 128;

/** A failure that no retry fixes (TLS or authentication): refuse to start, saying what to check. */
export function fatal(e: unknown): string | null {
  const m = (e as Error).message ?? String(e);
  if (/certificate|self[- ]signed|SSL|TLS|CERT_|unable to verify|handshake/i.test(m))
    return `etcd: the TLS handshake failed — check etcd.ca, etcd.cert and etcd.key: ${m}`;
  if (/authentication failed|invalid auth|user name|password/i.test(m))
    return `etcd: authentication failed — check etcd.username and etcd.password: ${m}`;
  return null;
}

export function etcdClient(cfg: EtcdConfig): Etcd3 {
  const read = (what: string, p: string | null) => {
    if (p === null) return undefined;
    try {
      return readFileSync(p);
    } catch (e) {
      throw new Error(`etcd.${what}: cannot read ${p}: ${(e as Error).message}`);
    }
  };
  const tls = cfg.endpoints.some((u) => u.startsWith("https://"));
  const ip = tls
    ? ipTls(
        cfg.endpoints.map((u) => new URL(u).hostname.replace(/^\[|\]$/g, "")),
        "mc-proxy-etcd.invalid",
      )
    : null;
  const verifyOptions = ip === null ? undefined : { checkServerIdentity: ip.checkServerIdentity };
  return new Etcd3({
    hosts: cfg.endpoints,
    ...(tls
      ? {
          credentials: {
            rootCertificate: read("ca", cfg.ca) ?? Buffer.alloc(0),
            privateKey: read("key", cfg.key),
            certChain: read("cert", cfg.cert),
            verifyOptions,
          } as never,
        }
      : {}),
    ...(cfg.username !== null ? { auth: { username: cfg.username, password: cfg.password ?? "" } } : {}),
    dialTimeout: cfg.dialTimeoutMs,
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + cfg.dialTimeoutMs }),
    // etcd disconnects clients that ping more often than every 5 s (too_many_pings).
    // A member that fails three calls in a row is skipped for a second (etcd3's
    // default is 5 s: with one endpoint that outlasts etcd's own restart);
    // calls retry on the other members, and bounded() caps the whole at dial_timeout.
    faultHandling: {
      host: () =>
        circuitBreaker(handleWhen(isRecoverableError), { halfOpenAfter: 1000, breaker: new ConsecutiveBreaker(3) }),
      global: retry(handleWhen(isRecoverableError), { maxAttempts: Math.max(2, cfg.endpoints.length) }),
      // The watch reconnects at most a second after etcd is back (etcd3's
      // default backoff grows to 30 s: after an outage of a few seconds a
      // member stayed stale for several more, measured by the fleet outage test).
      // (etcd3 types this as a backoff but calls next() on it first, as on its own default: a factory.)
      watchBackoff: new ExponentialBackoff({ initialDelay: 100, maxDelay: 1000 }) as unknown as IBackoff<unknown>,
    },
    grpcOptions: {
      "grpc.keepalive_time_ms": 30_000,
      "grpc.keepalive_timeout_ms": 10_000,
      ...(ip?.channelOptions ?? {}),
    },
  });
}

/** Run `op` within `ms`, or fail as "unreachable". */
export async function bounded<T>(ms: number, what: string, op: () => Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | null = null;
  try {
    return await Promise.race([
      op(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
      }),
    ]);
  } catch (e) {
    const why = fatal(e);
    throw new StoreError(
      why ??
        `the store (etcd) is unreachable (${what}: ${(e as Error).message}); nothing changed, routing goes on from memory`,
      { unavailable: why === null, cause: e },
    );
  } finally {
    if (timer !== null) clearTimeout(timer);
  }
}

/** The fleet's whole state at one revision (for `snapshot` in etcd mode). */
export async function readFleet(cfg: EtcdConfig): Promise<{ state: StoreState; revision: number }> {
  const client = etcdClient(cfg);
  try {
    const r = await bounded(cfg.dialTimeoutMs, "read", () => client.getAll().prefix(cfg.prefix).exec());
    return {
      state: stateFrom(
        cfg.prefix,
        r.kvs.map((kv: IKeyValue) => ({ key: kv.key.toString(), value: kv.value.toString() })),
      ),
      revision: Number(r.header.revision),
    };
  } finally {
    client.close();
  }
}

/** Load a snapshot into an empty prefix (`mc-proxy store import`). */
export async function importFleet(cfg: EtcdConfig, state: StoreState): Promise<number> {
  const client = etcdClient(cfg);
  const p = cfg.prefix;
  try {
    const existing = await bounded(cfg.dialTimeoutMs, "check the prefix", () => client.getAll().prefix(p).count());
    if (existing > 0)
      throw new StoreError(`etcd prefix ${p} holds ${existing} key(s): import only into an empty prefix`);
    const claim = await bounded(cfg.dialTimeoutMs, "import", () =>
      client
        .if(keys.seeded(p), "Create", "==", 0)
        .then(
          client
            .put(keys.seeded(p))
            .value(JSON.stringify({ version: 1, at: new Date().toISOString(), imported: true })),
          client.put(keys.schema(p)).value(SCHEMA_VERSION),
        )
        .commit(),
    );
    if (!claim.succeeded) throw new StoreError(`etcd prefix ${p} was seeded meanwhile; nothing imported`);
    const puts: [string, string][] = [];
    for (const [name, l] of state.listeners) {
      puts.push([keys.listener(p, name), listenerValue(l.maxConnections)]);
      for (const r of l.routes) puts.push([keys.route(p, name, r), encodeRoute(r)]);
    }
    for (const r of state.rules) puts.push([keys.rule(p, r), RULE_VALUE]);
    for (let i = 0; i < puts.length; i += MAX_TXN_OPS) {
      const chunk = puts.slice(i, i + MAX_TXN_OPS);
      await bounded(cfg.dialTimeoutMs, "import", () =>
        client
          .if(keys.seeded(p), "Create", ">", 0)
          .then(...chunk.map(([k, v]) => client.put(k).value(v)))
          .commit(),
      );
    }
    return puts.length;
  } finally {
    client.close();
  }
}
