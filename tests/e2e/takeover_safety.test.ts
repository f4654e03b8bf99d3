// Takeover safety against the compiled binary (docs/ARCHITECTURE.md
// "Takeover"): a new process that cannot serve everything fails before the
// handover and leaves the running one serving; only a process holding the
// listeners is handed over to; SIGUSR2 starts the binary now at the path the
// process was started from; concurrent reloads leave one server with
// distinct generations, and every reload's message is true.
import { describe, expect, test } from "bun:test";
import {
  chmodSync,
  closeSync,
  copyFileSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  renameSync,
  writeFileSync,
} from "node:fs";
import { createConnection } from "node:net";
import { join } from "node:path";
import { Database } from "bun:sqlite";
import { AdminClient } from "../../src/cli/admin_client";
import type { StatusReply } from "../../src/admin/messages";
import type { GrpcConfig } from "../../src/config/config";
import { grpcConfig, unixGrpcConfig } from "../helpers/admin";
import { type AdminPki, adminPki, testCert } from "../helpers/certs";
import { freePort, waitFor } from "../helpers/net";
import { BINARY, type LogRecord, RunningProxy, cleanEnv, ensureBinary, startProxy, tempDir } from "../helpers/proxy";
import { tlsBackend, tlsGet } from "../helpers/tls";

const HOST = "alpha.example.com";

/** mc-proxy reload: its exit code and its own output (DIR/reload-N.log; the new server writes where the running one does). */
let reloads = 0;
async function reload(
  dir: string,
  args: string[] = [],
): Promise<{ code: number; out: string; log: string; file: string }> {
  const file = join(dir, `reload-${++reloads}.log`);
  const fd = openSync(file, "a");
  try {
    const code = await Bun.spawn([BINARY, "reload", "-c", join(dir, "mc-proxy.toml"), ...args], {
      cwd: dir,
      env: cleanEnv(),
      stdin: "ignore",
      stdout: fd,
      stderr: fd,
    }).exited;
    const log = readFileSync(file, "utf8");
    return {
      code,
      out: log
        .split("\n")
        .filter((l) => l.startsWith("reloaded") || l.startsWith("mc-proxy: reload"))
        .join("\n"),
      log,
      file,
    };
  } finally {
    closeSync(fd);
  }
}

async function status(cfg: GrpcConfig): Promise<StatusReply> {
  const admin = new AdminClient(cfg);
  try {
    return await admin.call<StatusReply>("GetStatus");
  } finally {
    admin.close();
  }
}

/** The pids of running processes whose command line names `needle`. */
function processesWith(needle: string): number[] {
  const out: number[] = [];
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (readFileSync(`/proc/${e}/cmdline`, "utf8").includes(needle)) out.push(Number(e));
    } catch {}
  }
  return out;
}

/** JSON log records in a file written by several processes. */
function recordsIn(text: string): LogRecord[] {
  const out: LogRecord[] = [];
  for (const line of text.split("\n")) {
    if (!line.startsWith("{")) continue;
    try {
      out.push(JSON.parse(line) as LogRecord);
    } catch {}
  }
  return out;
}

/** A config with the admin API on TCP (mTLS) and metrics, one listener. */
function tcpAdminConfig(
  pki: AdminPki,
  p: { listener: number; grpc: number; metrics: number; backend: number },
  o: { key?: string; metrics?: number; grpc?: number; extraListener?: string } = {},
): string {
  return `[[listeners]]
addr = "127.0.0.1:${p.listener}"
  [[listeners.routes]]
  hostname = "${HOST}"
  backend = "127.0.0.1:${p.backend}"
${o.extraListener ?? ""}
[grpc]
addr = "127.0.0.1:${o.grpc ?? p.grpc}"
tls_cert = "${pki.serverCert}"
tls_key = "${o.key ?? pki.serverKey}"
client_ca = "${pki.ca}"
[metrics]
addr = "127.0.0.1:${o.metrics ?? p.metrics}"
[proxy]
shutdown_timeout = "3s"
[log]
level = "info"
format = "json"
`;
}

describe("takeover safety (binary)", () => {
  test("a reload that cannot serve — admin key not matching its certificate, metrics or admin port held, a listener held, a store that cannot open — fails before the handover: the old process serves, and reload says so", async () => {
    ensureBinary();
    const pki = adminPki();
    const be = tlsBackend("be", testCert());
    const ports = { listener: freePort(), grpc: freePort(), metrics: freePort(), backend: be.port };
    const dir = tempDir();
    const file = join(dir, "mc-proxy.toml");
    const good = tcpAdminConfig(pki, ports);
    const proxy = await startProxy("binary", good, { dir });
    const admin = grpcConfig(pki, ports.grpc);
    const serving = async (why: string) => {
      const s = await status(admin);
      expect({ why, pid: s.pid, generation: s.generation }).toEqual({ why, pid: proxy.pid, generation: 1 });
      expect((await tlsGet(ports.listener, HOST, testCert())).body).toContain("hello from be");
      expect((await fetch(`http://127.0.0.1:${ports.metrics}/readyz`)).status).toBe(200);
    };
    const refused = async (why: string, reason: RegExp) => {
      const from = proxy.output.length;
      const r = await reload(dir);
      expect({ why, code: r.code }).toEqual({ why, code: 1 });
      await serving(why);
      // The message says who serves, as asked after the failure; the new process's log, in the running server's output, says why.
      expect(r.out).toContain(`pid ${proxy.pid} (generation 1) serves`);
      await waitFor(() => reason.test(proxy.output.slice(from)), 5000, `${why}: the reason in the server's output`);
    };
    const blocker = Bun.listen({ hostname: "127.0.0.1", port: freePort(), socket: { data() {} } });
    try {
      await serving("before");
      // The admin key rotated to one that does not match the certificate: check refuses it, and so does the takeover.
      writeFileSync(file, tcpAdminConfig(pki, ports, { key: pki.clientKey }));
      await refused("mismatched admin key", /grpc\.tls_key[^\n]*does not match/);
      const chk = Bun.spawnSync([BINARY, "check", "-c", file], {
        cwd: dir,
        env: cleanEnv(),
        stdout: "pipe",
        stderr: "pipe",
      });
      expect(chk.exitCode).toBe(1);
      expect(chk.stderr.toString()).toContain("grpc.tls_key");
      expect(chk.stderr.toString()).toContain("does not match");
      // A plain start says the same, not "cannot listen".
      const other = tempDir();
      writeFileSync(
        join(other, "mc-proxy.toml"),
        tcpAdminConfig(
          pki,
          { ...ports, listener: freePort(), grpc: freePort(), metrics: freePort() },
          { key: pki.clientKey },
        ),
      );
      const plain = Bun.spawnSync([BINARY, "server", "-c", join(other, "mc-proxy.toml")], {
        cwd: other,
        env: cleanEnv(),
        stdout: "pipe",
        stderr: "pipe",
      });
      expect(plain.exitCode).not.toBe(0);
      expect(plain.stderr.toString()).toMatch(/grpc\.tls_key \([^)]*\) does not match grpc\.tls_cert/);
      expect(plain.stderr.toString()).not.toContain("cannot listen");
      // The metrics address moved to a port another program holds.
      writeFileSync(file, tcpAdminConfig(pki, ports, { metrics: blocker.port }));
      await refused("metrics port held", new RegExp(`metrics\\.addr[^\\n]*127\\.0\\.0\\.1:${blocker.port}`));
      // The admin address moved to a port another program holds.
      writeFileSync(file, tcpAdminConfig(pki, ports, { grpc: blocker.port }));
      await refused("admin port held", new RegExp(`grpc\\.addr[^\\n]*127\\.0\\.0\\.1:${blocker.port}`));
      // A new listener on a port another program holds without SO_REUSEPORT.
      writeFileSync(
        file,
        tcpAdminConfig(pki, ports, { extraListener: `[[listeners]]\naddr = "127.0.0.1:${blocker.port}"\n` }),
      );
      await refused("listener held", new RegExp(`127\\.0\\.0\\.1:${blocker.port}`));
      // A store this binary cannot open (a schema from a newer release).
      writeFileSync(file, good);
      const db = new Database(join(dir, "mc-proxy.db"));
      const version = db.query<{ user_version: number }, []>("PRAGMA user_version").get()!.user_version;
      db.run("PRAGMA user_version = 999");
      try {
        await refused("store", /999|newer/);
      } finally {
        db.run(`PRAGMA user_version = ${version}`);
        db.close();
      }
      expect(proxy.records().some((x) => x.msg.startsWith("handing over"))).toBe(false);
      // With everything in order the same ports move to the new process (they were the old one's, not a stranger's).
      const r = await reload(dir);
      expect(r.code).toBe(0);
      const after = await status(admin);
      expect(after.generation).toBe(2);
      expect(r.out).toContain(`reloaded: pid ${proxy.pid} (generation 1) → pid ${after.pid} (generation 2)`);
      expect((await tlsGet(ports.listener, HOST, testCert())).body).toContain("hello from be");
      expect(await proxy.exited).toBe(0);
    } finally {
      blocker.stop(true);
      for (const pid of processesWith(file)) process.kill(pid, "SIGKILL");
      await proxy.stop();
      be.stop();
    }
  }, 120_000);

  test("a stray handover request from a process that holds no listener is refused and logged; the proxy keeps serving", async () => {
    const be = tlsBackend("be", testCert());
    const port = freePort();
    const dir = tempDir();
    const toml = `[[listeners]]\naddr = "127.0.0.1:${port}"\n  [[listeners.routes]]\n  hostname = "${HOST}"\n  backend = "127.0.0.1:${be.port}"\n[grpc]\naddr = "unix:admin.sock"\n`;
    const proxy = await startProxy("binary", toml, { dir });
    const control = join(dir, "mc-proxy.db.control");
    /** Send lines on one connection; the answers, one per line sent. */
    const converse = (lines: object[]) =>
      new Promise<Record<string, unknown>[]>((resolve, reject) => {
        const s = createConnection({ path: control });
        const answers: Record<string, unknown>[] = [];
        let buf = "";
        const t = setTimeout(() => {
          s.destroy();
          resolve(answers);
        }, 5000);
        s.on("error", (e) => {
          clearTimeout(t);
          reject(e);
        });
        s.on("connect", () => s.write(`${JSON.stringify(lines[0])}\n`));
        s.on("data", (d) => {
          buf += d.toString();
          for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
            answers.push(JSON.parse(buf.slice(0, nl)) as Record<string, unknown>);
            buf = buf.slice(nl + 1);
            if (answers.length < lines.length && answers.at(-1)!.ok === true)
              s.write(`${JSON.stringify(lines[answers.length])}\n`);
            else {
              clearTimeout(t);
              s.destroy();
              return resolve(answers);
            }
          }
        });
        s.on("close", () => {
          clearTimeout(t);
          resolve(answers);
        });
      });
    const serving = async () => {
      const s = await status(unixGrpcConfig(join(dir, "admin.sock")));
      expect({ pid: s.pid, generation: s.generation }).toEqual({ pid: proxy.pid, generation: 1 });
      expect((await tlsGet(port, HOST, testCert())).body).toContain("hello from be");
    };
    try {
      await serving();
      // The one line any process of this user could send.
      const bare = await converse([{ op: "handover" }]);
      expect(bare.at(-1)!.ok).toBe(false);
      await serving();
      // A process that says who it is and names the listener, but holds no listening socket on it (this test process).
      const stray = await converse([
        { op: "prepare", pid: process.pid },
        { op: "handover", pid: process.pid, listeners: [`127.0.0.1:${port}`] },
      ]);
      expect(stray.at(-1)!.ok).toBe(false);
      expect(String(stray.at(-1)!.error)).toContain(`pid ${process.pid}`);
      await serving();
      // A process that names the running one's own pid (which does hold the listener).
      const own = await converse([
        { op: "prepare", pid: proxy.pid },
        { op: "handover", pid: proxy.pid, listeners: [`127.0.0.1:${port}`] },
      ]);
      expect(own.at(-1)!.ok).toBe(false);
      await serving();
      // A process of this user listening on an unrelated port, naming only that port (this test process).
      const unrelated = Bun.listen({ hostname: "127.0.0.1", port: freePort(), socket: { data() {} } });
      try {
        const answers = await converse([
          { op: "prepare", pid: process.pid },
          { op: "handover", pid: process.pid, listeners: [`127.0.0.1:${unrelated.port}`] },
        ]);
        expect(answers.at(-1)!.ok).toBe(false);
        expect(String(answers.at(-1)!.error)).toContain(
          `pid ${process.pid}: its command line is not "mc-proxy server -c FILE --takeover"`,
        );
      } finally {
        unrelated.stop(true);
      }
      await serving();
      // One that binds the proxy's own listener port beside it (SO_REUSEPORT) and names it, but is no
      // mc-proxy --takeover of this config.
      const beside = Bun.serve({
        hostname: "127.0.0.1",
        port,
        reusePort: true,
        fetch: () => new Response("not mc-proxy"),
      });
      try {
        const answers = await converse([
          { op: "prepare", pid: process.pid },
          { op: "handover", pid: process.pid, listeners: [`127.0.0.1:${port}`] },
        ]);
        expect(answers.at(-1)!.ok).toBe(false);
        expect(String(answers.at(-1)!.error)).toContain(`pid ${process.pid}: its command line is not`);
      } finally {
        beside.stop(true);
      }
      await serving();
      const refusals = proxy.records().filter((x) => x.msg.startsWith("takeover refused"));
      expect(refusals.length).toBeGreaterThanOrEqual(4);
      expect(
        refusals.filter((x) => x.requester_pid === process.pid && String(x.msg).includes("its command line is not"))
          .length,
      ).toBeGreaterThanOrEqual(2);
      expect(refusals.some((x) => x.requester_pid === process.pid && x.level === "warn")).toBe(true);
      expect(proxy.records().some((x) => x.msg.startsWith("handing over"))).toBe(false);
      // A real takeover still works afterwards.
      const r = await reload(dir);
      expect(r.code).toBe(0);
      expect((await status(unixGrpcConfig(join(dir, "admin.sock")))).generation).toBe(2);
      const granted = proxy.records().find((x) => x.msg.startsWith("handing over"));
      expect(typeof granted?.requester_pid).toBe("number");
      // Each prepare is logged with the requester's pid and command line.
      const prepared = proxy.records().find((x) => x.msg === "takeover prepared");
      expect(prepared?.requester_pid).toBe(granted?.requester_pid);
      expect(String(prepared?.requester_cmdline)).toContain(`server -c ${join(dir, "mc-proxy.toml")} --takeover`);
    } finally {
      for (const pid of processesWith(join(dir, "mc-proxy.toml"))) process.kill(pid, "SIGKILL");
      await proxy.stop();
      be.stop();
    }
  }, 60_000);

  test("a process that holds the prepared takeover: a refused reload names its pid and since when; the prepare was logged with its command line", async () => {
    const be = tlsBackend("be", testCert());
    const port = freePort();
    const dir = tempDir();
    const file = join(dir, "mc-proxy.toml");
    const toml = `[[listeners]]\naddr = "127.0.0.1:${port}"\n  [[listeners.routes]]\n  hostname = "${HOST}"\n  backend = "127.0.0.1:${be.port}"\n[grpc]\naddr = "unix:admin.sock"\n[proxy]\nshutdown_timeout = "3s"\n`;
    const proxy = await startProxy("binary", toml, { dir });
    // A script run as "bun hold.ts server -c FILE --takeover" (its command line passes the check): it prepares and holds.
    const script = join(dir, "hold.ts");
    writeFileSync(
      script,
      `const s = require("node:net").createConnection({ path: ${JSON.stringify(join(dir, "mc-proxy.db.control"))} });
s.on("connect", () => s.write(JSON.stringify({ op: "prepare", pid: process.pid }) + "\\n"));
s.on("data", (d) => process.stdout.write(d));
setTimeout(() => process.exit(0), 60000);
`,
    );
    const holder = Bun.spawn([process.execPath, script, "server", "-c", file, "--takeover"], {
      cwd: dir,
      env: cleanEnv(),
      stdin: "ignore",
      stdout: "ignore",
      stderr: "ignore",
    });
    try {
      await waitFor(() => proxy.records().some((x) => x.msg === "takeover prepared"), 10_000, "the holder's prepare");
      const prepared = proxy.records().find((x) => x.msg === "takeover prepared")!;
      expect(prepared.requester_pid).toBe(holder.pid);
      expect(String(prepared.requester_cmdline)).toContain(`hold.ts server -c ${file} --takeover`);
      // --timeout 3: reload waits that long (at least 15 s) for the takeover in progress to end before it answers.
      const r = await reload(dir, ["--timeout", "3"]);
      expect(r.code).toBe(1);
      expect(r.log).toMatch(
        new RegExp(
          `a takeover is in progress by pid ${holder.pid} \\(prepared at \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z, \\d+ s ago`,
        ),
      );
      expect(r.out).toContain(
        `pid ${proxy.pid} (generation 1) serves, while a takeover by pid ${holder.pid} is in progress`,
      );
      expect((await tlsGet(port, HOST, testCert())).body).toContain("hello from be");
    } finally {
      holder.kill("SIGKILL");
      for (const pid of processesWith(file)) process.kill(pid, "SIGKILL");
      await proxy.stop();
      be.stop();
    }
  }, 90_000);

  test("SIGUSR2 after the binary was replaced by rename starts the new binary (generation 2); a binary that cannot start leaves the old process serving, with the reason logged", async () => {
    ensureBinary();
    const be = tlsBackend("be", testCert());
    const port = freePort();
    const dir = tempDir();
    mkdirSync(join(dir, "bin"));
    const bin = join(dir, "bin/mc-proxy");
    copyFileSync(BINARY, bin);
    chmodSync(bin, 0o755);
    const file = join(dir, "mc-proxy.toml");
    writeFileSync(
      file,
      `[[listeners]]\naddr = "127.0.0.1:${port}"\n  [[listeners.routes]]\n  hostname = "${HOST}"\n  backend = "127.0.0.1:${be.port}"\n[grpc]\naddr = "unix:admin.sock"\n[proxy]\nshutdown_timeout = "3s"\n[log]\nlevel = "info"\nformat = "json"\n`,
    );
    // Started by its path, as systemd's ExecStart does.
    const proxy = new RunningProxy(
      Bun.spawn([bin, "server", "-c", file], {
        cwd: dir,
        env: cleanEnv(),
        stdin: "ignore",
        stdout: "pipe",
        stderr: "pipe",
      }),
      file,
    );
    const admin = unixGrpcConfig(join(dir, "admin.sock"));
    /** Replace the binary as install(1), package managers and mv do: a new file renamed over the old path. */
    const replace = (write: (tmp: string) => void) => {
      const tmp = join(dir, "bin/.mc-proxy.new");
      write(tmp);
      renameSync(tmp, bin);
    };
    try {
      await waitFor(() => proxy.records().some((x) => x.msg === "started"), 15_000, "the first process");
      replace((tmp) => {
        copyFileSync(BINARY, tmp);
        chmodSync(tmp, 0o755);
      });
      expect(readlinkSync(`/proc/${proxy.pid}/exe`)).toEndWith("(deleted)");
      proxy.signal("SIGUSR2");
      let s: StatusReply | null = null;
      const t0 = Date.now();
      while (Date.now() - t0 < 20_000 && (s === null || s.generation !== 2)) {
        s = await status(admin).catch(() => null);
        if (s?.generation !== 2) await Bun.sleep(100);
      }
      expect(s?.generation).toBe(2);
      const second = s!.pid;
      expect(second).not.toBe(proxy.pid);
      expect(readlinkSync(`/proc/${second}/exe`)).toBe(bin);
      expect(await proxy.exited).toBe(0);
      expect((await tlsGet(port, HOST, testCert())).body).toContain("hello from be");
      // A binary that cannot be executed (no exec permission), then one that starts and fails.
      const failures = () => proxy.records().filter((x) => x.msg.startsWith("SIGUSR2 reload failed"));
      replace((tmp) => {
        writeFileSync(tmp, "not a program\n");
        chmodSync(tmp, 0o644);
      });
      process.kill(second, "SIGUSR2");
      await waitFor(() => failures().length >= 1, 10_000, "the first failure's log line");
      expect(failures()[0]).toMatchObject({ level: "error", command: bin });
      expect(String(failures()[0]!.error)).toMatch(/EACCES|permission/i);
      replace((tmp) => {
        writeFileSync(tmp, "#!/bin/sh\necho 'this binary cannot start' >&2\nexit 3\n");
        chmodSync(tmp, 0o755);
      });
      process.kill(second, "SIGUSR2");
      await waitFor(() => failures().length >= 2, 10_000, "the second failure's log line");
      expect(failures()[1]).toMatchObject({ level: "error", command: bin, exit_code: 3 });
      expect(proxy.output).toContain("this binary cannot start");
      const now = await status(admin);
      expect({ pid: now.pid, generation: now.generation }).toEqual({ pid: second, generation: 2 });
      expect((await tlsGet(port, HOST, testCert())).body).toContain("hello from be");
    } finally {
      for (const pid of processesWith(file)) process.kill(pid, "SIGKILL");
      await proxy.stop();
      be.stop();
    }
  }, 60_000);

  test("two reloads at once, three times: one server remains, generations distinct and increasing, every reload's message true", async () => {
    const be = tlsBackend("be", testCert());
    const port = freePort();
    const dir = tempDir();
    const file = join(dir, "mc-proxy.toml");
    const toml = `[[listeners]]\naddr = "127.0.0.1:${port}"\n  [[listeners.routes]]\n  hostname = "${HOST}"\n  backend = "127.0.0.1:${be.port}"\n[grpc]\naddr = "unix:admin.sock"\n[proxy]\nshutdown_timeout = "3s"\n`;
    const proxy = await startProxy("binary", toml, { dir });
    const admin = unixGrpcConfig(join(dir, "admin.sock"));
    const messages: { code: number; out: string; file: string }[] = [];
    try {
      for (let round = 0; round < 3; round++) {
        const rs = await Promise.all([reload(dir), reload(dir)]);
        messages.push(...rs);
        expect(rs.some((r) => r.code === 0)).toBe(true);
        const s = await status(admin);
        // Each message names the server as it was when the reload returned (a refusal returns at once):
        // the one serving now, or its predecessor while the one serving now was starting or taking over.
        for (const r of rs) {
          if (r.code === 0) expect(r.out).toMatch(/→ pid \d+ \(generation \d+\)/);
          else
            expect(r.out).toMatch(
              new RegExp(
                `pid ${s.pid} \\(generation ${s.generation}\\) serves|pid \\d+ \\(generation ${s.generation - 1}\\) serves, while (its successor pid ${s.pid} is starting|a takeover by pid ${s.pid} is in progress)`,
              ),
            );
        }
        // One server remains once the old ones drained.
        await waitFor(() => processesWith(file).length === 1, 15_000, "one server left");
        expect(processesWith(file)).toEqual([s.pid]);
        expect((await tlsGet(port, HOST, testCert())).body).toContain("hello from be");
      }
      // The new processes log where the first server does (its pipes, which they inherit); the reloads' files are read too.
      const logs = proxy.output + messages.map((m) => readFileSync(m.file, "utf8")).join("");
      const started = recordsIn(logs).filter((x) => x.msg === "started");
      const gens = started.map((x) => x.generation as number);
      expect(new Set(gens).size).toBe(gens.length);
      const byPid = new Map(started.map((x) => [x.pid as number, x.generation as number]));
      // Every "took over" line names the true predecessor: the process of the generation before.
      for (const t of recordsIn(logs).filter((x) => x.msg === "took over"))
        expect(byPid.get(t.from_pid as number)).toBe((t.generation as number) - 1);
      // Every success names a predecessor and successor that exist with those generations.
      for (const m of messages.filter((x) => x.code === 0)) {
        const [, a, g, b, h] = /pid (\d+) \(generation (\d+)\) → pid (\d+) \(generation (\d+)\)/
          .exec(m.out)!
          .map(Number);
        expect(byPid.get(a!)).toBe(g);
        expect(byPid.get(b!)).toBe(h);
        expect(h).toBe(g! + 1);
      }
      console.log(`concurrent reloads: ${messages.map((m) => `exit ${m.code}: ${m.out}`).join(" | ")}`);
      const final = await status(admin);
      expect(final.generation).toBe(Math.max(...gens));
    } finally {
      for (const pid of processesWith(file)) process.kill(pid, "SIGKILL");
      await proxy.stop();
      be.stop();
    }
  }, 120_000);
});
