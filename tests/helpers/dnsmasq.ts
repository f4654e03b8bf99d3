// Debian's dnsmasq as a real resolver for the DNS tests (docs/DNS.md): a
// child on a loopback port below 32768, answering only the names the test
// gives it (--host-record, and an --addn-hosts file reread on SIGHUP), every
// other name under .test NXDOMAIN (--local), nothing forwarded.
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { freePort, sleep } from "./net";

export const DNSMASQ = "/usr/sbin/dnsmasq";

/** Whether dnsmasq is installed; the tests skip with a message naming it otherwise. */
export function haveDnsmasq(): boolean {
  const ok = existsSync(DNSMASQ);
  if (!ok) console.warn(`SKIP: ${DNSMASQ} (Debian package dnsmasq-base) is not installed; the DNS tests do not run`);
  return ok;
}

export class Dnsmasq {
  readonly port: number;
  private proc: Subprocess | null = null;
  private readonly dir = mkdtempSync(join(tmpdir(), "mcproxy-dnsmasq-"));
  private readonly hostsFile = join(this.dir, "hosts");

  /** `ttl`: the TTL of every answer (--local-ttl). */
  constructor(
    private readonly ttl: number,
    hosts: Record<string, string[]> = {},
  ) {
    this.port = freePort();
    this.writeHosts(hosts);
  }

  /** "server" value for mc-proxy's [dns] servers. */
  get server(): string {
    return `127.0.0.1:${this.port}`;
  }

  private writeHosts(hosts: Record<string, string[]>): void {
    const lines = Object.entries(hosts).flatMap(([name, addrs]) => addrs.map((a) => `${a} ${name}`));
    writeFileSync(this.hostsFile, `${lines.join("\n")}\n`);
  }

  async start(): Promise<void> {
    this.proc = Bun.spawn(
      [
        DNSMASQ,
        "--no-resolv",
        "--no-hosts",
        "--keep-in-foreground",
        `--port=${this.port}`,
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        `--local-ttl=${this.ttl}`,
        `--neg-ttl=${this.ttl}`,
        "--local=/test/",
        `--addn-hosts=${this.hostsFile}`,
        "--conf-file=/dev/null",
        `--pid-file=${join(this.dir, "pid")}`,
        "--user=root",
      ],
      { stdout: "ignore", stderr: "pipe" },
    );
    // Up when it answers a query for a name it holds or not (NXDOMAIN is an answer).
    const { Resolver } = await import("node:dns/promises");
    const r = new Resolver({ timeout: 200, tries: 1 });
    r.setServers([this.server]);
    for (let i = 0; i < 100; i++) {
      if (this.proc.exitCode !== null) throw new Error(`dnsmasq exited with ${this.proc.exitCode}`);
      try {
        await r.resolve4("probe.test");
        return;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "ENOTFOUND") return;
      }
      await sleep(50);
    }
    throw new Error("dnsmasq did not answer within 10 s");
  }

  /** Change the records: the hosts file rewritten, then SIGHUP (dnsmasq rereads it and clears its cache). */
  async set(hosts: Record<string, string[]>): Promise<void> {
    this.writeHosts(hosts);
    this.proc?.kill("SIGHUP");
    await sleep(100);
  }

  /** The resolver down: stop it (queries then time out, nothing answers on the port). */
  async stop(): Promise<void> {
    if (this.proc === null) return;
    this.proc.kill("SIGTERM");
    await this.proc.exited;
    this.proc = null;
  }
}
