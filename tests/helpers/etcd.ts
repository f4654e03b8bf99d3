// etcd on loopback for the fleet tests (Debian's etcd-server, installed when
// missing): one member or a cluster of three, in temp dirs, on free ports.
import type { Subprocess } from "bun";
import { join } from "node:path";
import { freePort, sleep } from "./net";
import { ensureCommands } from "./packages";
import { tempDir } from "./proxy";

export function etcdMissing(): string | null {
  return ensureCommands(["etcd"], ["etcd-server"]);
}

export interface EtcdMember {
  name: string;
  clientPort: number;
  peerPort: number;
  dir: string;
  proc: Subprocess | null;
  log: string;
}

export class EtcdCluster {
  readonly members: EtcdMember[];
  private readonly cluster: string;

  constructor(
    size: number,
    private readonly tls: { cert: string; key: string; ca: string } | null = null,
  ) {
    this.members = Array.from({ length: size }, (_, i) => ({
      name: `m${i}`,
      clientPort: freePort(),
      peerPort: freePort(),
      dir: tempDir("mcproxy-etcd-"),
      proc: null,
      log: "",
    }));
    this.cluster = this.members.map((m) => `${m.name}=http://127.0.0.1:${m.peerPort}`).join(",");
  }

  get endpoints(): string[] {
    return this.members.map((m) => `${this.tls === null ? "http" : "https"}://127.0.0.1:${m.clientPort}`);
  }

  start(m: EtcdMember, state: "new" | "existing" = "new"): void {
    const scheme = this.tls === null ? "http" : "https";
    const args = [
      "etcd",
      "--name",
      m.name,
      "--data-dir",
      join(m.dir, "data"),
      "--listen-client-urls",
      `${scheme}://127.0.0.1:${m.clientPort}`,
      "--advertise-client-urls",
      `${scheme}://127.0.0.1:${m.clientPort}`,
      "--listen-peer-urls",
      `http://127.0.0.1:${m.peerPort}`,
      "--initial-advertise-peer-urls",
      `http://127.0.0.1:${m.peerPort}`,
      "--initial-cluster",
      this.cluster,
      "--initial-cluster-state",
      state,
      "--initial-cluster-token",
      "mc-proxy-test",
      "--heartbeat-interval",
      "50",
      "--election-timeout",
      "500",
      ...(this.tls === null
        ? []
        : [
            "--cert-file",
            this.tls.cert,
            "--key-file",
            this.tls.key,
            "--trusted-ca-file",
            this.tls.ca,
            "--client-cert-auth",
          ]),
    ];
    const p = Bun.spawn(args, { stdout: "ignore", stderr: "pipe" });
    m.proc = p;
    void (async () => {
      for await (const c of p.stderr as ReadableStream<Uint8Array>) m.log += new TextDecoder().decode(c);
    })();
  }

  async startAll(): Promise<void> {
    for (const m of this.members) this.start(m);
    await this.ready();
  }

  /** Until a client request through every running member succeeds. */
  async ready(ms = 20_000): Promise<void> {
    const end = Date.now() + ms;
    for (const m of this.members) {
      if (m.proc === null) continue;
      while (!m.log.includes("ready to serve client requests")) {
        if (Date.now() > end) throw new Error(`etcd ${m.name} not ready:\n${m.log.slice(-2000)}`);
        await sleep(50);
      }
    }
    // A leader too.
    await sleep(300);
  }

  async stop(m: EtcdMember): Promise<void> {
    m.proc?.kill("SIGTERM");
    await m.proc?.exited;
    m.proc = null;
    m.log = "";
  }

  async stopAll(): Promise<void> {
    for (const m of this.members) await this.stop(m);
  }
}

/** A route value as etcd layout version 1 writes it (releases up to 0.2.0): one enabled backend at `addr`, `over` on top. */
export function v1RouteValue(addr: string, over: Record<string, unknown> = {}): string {
  return JSON.stringify({
    version: 1,
    backends: [{ addr, weight: 1, backup: false, state: "enabled" }],
    balance: "round_robin",
    health_check: null,
    check: {},
    retries: null,
    send_proxy_protocol: "off",
    ...over,
  });
}
