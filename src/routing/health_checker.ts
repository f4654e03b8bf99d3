// Active health checks, run from one place — the thread that owns
// the backend table (the main thread), never once per worker — and never
// through the firewall or the rate limiter (they are outbound). A check per
// (route, backend) every interval: `tcp` = the connect succeeds within the
// timeout; `tls` = a ClientHello for the route's name gets a ServerHello
// back. `rise` successes in a row bring a backend up, `fall` failures take it
// down. A check sends nothing but the ClientHello, then closes.

import type { Socket } from "bun";
import type { Logger } from "../log/logger";
import type { BackendTable, SlotRef } from "./backend_table";
import { checkServerName, healthCheckHello, isServerHello } from "./health_hello";
import type { RoutePool } from "./pool";
import { checkSettingsOf, healthCheckOf } from "./route";
import type { CheckSettings, PoolDefaults } from "../config/types";
import type { HealthCheckKind } from "./route_fields";
import { splitHostPort } from "../net/host_port";

interface Target {
  key: string;
  listener: string;
  route: string;
  addr: string;
  ref: SlotRef;
  kind: Exclude<HealthCheckKind, "off">;
  settings: CheckSettings;
  timer: ReturnType<typeof setTimeout>;
  running: boolean;
}

/** One check: resolves true when healthy. Never rejects. */
export function checkOnce(
  addr: string,
  kind: "tcp" | "tls",
  serverName: string | null,
  timeoutMs: number,
): Promise<boolean> {
  const { host, port } = splitHostPort(addr);
  return new Promise((resolve) => {
    let done = false;
    let sock: Socket<undefined> | null = null;
    let reply = new Uint8Array(0);
    const finish = (ok: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock?.terminate();
      resolve(ok);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    Bun.connect({
      hostname: host,
      port,
      socket: {
        open: (s) => {
          sock = s;
          if (kind === "tcp") return finish(true);
          s.write(healthCheckHello(serverName));
        },
        data: (_s, d) => {
          const merged = new Uint8Array(reply.length + d.length);
          merged.set(reply);
          merged.set(d, reply.length);
          reply = merged;
          const v = isServerHello(reply);
          if (v !== null) finish(v);
        },
        close: () => finish(false),
        connectError: () => finish(false),
      },
    }).then(
      (s) => {
        sock = s as Socket<undefined>;
        if (done) s.terminate();
      },
      () => finish(false),
    );
  });
}

export class HealthChecker {
  private readonly targets = new Map<string, Target>();
  private stopped = false;

  constructor(
    private readonly table: BackendTable,
    private readonly defaults: PoolDefaults,
    private readonly logger: Logger,
  ) {}

  /** Check exactly these pools' backends from now on (called after every route change). */
  sync(listener: string, pools: readonly RoutePool[]): void {
    const prefix = `${listener}\u0000`;
    const want = new Set<string>();
    for (const p of pools) {
      const kind = healthCheckOf(p.route);
      if (kind === "off") continue;
      const settings = checkSettingsOf(p.route, this.defaults);
      for (let i = 0; i < p.size; i++) {
        const ref = p.ref(i);
        const key = `${prefix}${p.name}\u0000${p.addr(i)}\u0000${ref.slot}.${ref.gen}\u0000${kind}\u0000${JSON.stringify(settings)}`;
        want.add(key);
        if (this.targets.has(key)) continue;
        const t: Target = {
          key,
          listener,
          route: p.name,
          addr: p.addr(i),
          ref,
          kind,
          settings,
          timer: setTimeout(() => {}, 0),
          running: false,
        };
        this.targets.set(key, t);
        // Spread the first checks over the interval rather than all at once.
        this.schedule(t, Math.floor(Math.random() * Math.min(settings.intervalMs, 1000)));
      }
    }
    for (const [key, t] of this.targets) {
      if (key.startsWith(prefix) && !want.has(key)) {
        clearTimeout(t.timer);
        this.targets.delete(key);
      }
    }
  }

  private schedule(t: Target, ms: number): void {
    t.timer = setTimeout(() => void this.run(t), ms);
  }

  private async run(t: Target): Promise<void> {
    if (this.stopped || this.targets.get(t.key) !== t) return;
    const ok = await checkOnce(t.addr, t.kind, checkServerName(t.route), t.settings.timeoutMs);
    if (this.stopped || this.targets.get(t.key) !== t) return;
    const change = this.table.checkResult(t.ref, ok, t.settings.rise, t.settings.fall, Math.floor(Date.now() / 1000));
    if (change === "down")
      this.logger.warn("backend down", { listener: t.listener, route: t.route, backend: t.addr, check: t.kind });
    if (change === "up")
      this.logger.info("backend up", { listener: t.listener, route: t.route, backend: t.addr, check: t.kind });
    this.schedule(t, t.settings.intervalMs);
  }

  /**
   * Check every backend once now and take each result as its state (rise =
   * fall = 1): a process taking over knows which backends answer before it
   * takes traffic. Resolves within the slowest check's timeout; the regular
   * checks go on as scheduled.
   */
  async prime(): Promise<{ checked: number; down: number }> {
    const targets = [...this.targets.values()];
    const results = await Promise.all(
      targets.map(async (t) => {
        const ok = await checkOnce(t.addr, t.kind, checkServerName(t.route), t.settings.timeoutMs);
        if (this.stopped || this.targets.get(t.key) !== t) return true;
        const change = this.table.checkResult(t.ref, ok, 1, 1, Math.floor(Date.now() / 1000));
        if (change === "down")
          this.logger.warn("backend down", { listener: t.listener, route: t.route, backend: t.addr, check: t.kind });
        return ok;
      }),
    );
    return { checked: targets.length, down: results.filter((ok) => !ok).length };
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.targets.values()) clearTimeout(t.timer);
    this.targets.clear();
  }
}
