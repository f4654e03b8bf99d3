// `mc-proxy reload` asks the running server to start its successor
// (docs/TAKEOVER.md), against the compiled binary: the successor writes
// where the server writes (its /proc/PID/fd/1 and 2), has the server's
// environment, and is not the reload command's child — even when the
// reload's own output goes to a deleted file; SIGUSR2 is the same start; a
// reload naming another config file is refused; a successor that fails at
// start makes reload exit non-zero with its exit code and who serves;
// `status` shows the serving pid and generation; a running 0.3.0 (no reload
// request) is reloaded as before, saying where the new server's logs go. A
// stopping server starts no successor; a successor that never prepares is
// stopped by the server after START_MS and by reload at its --timeout, a
// refusal returns at once; a takeover socket at its connection limit is
// waited for, not taken for a server gone; one connection writes one
// refusal to the log.
import { describe, expect, test } from "bun:test";
import {
  chmodSync,
  closeSync,
  copyFileSync,
  openSync,
  readFileSync,
  readlinkSync,
  readSync,
  renameSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { type Socket, createConnection } from "node:net";
import { join } from "node:path";
import { connect as tlsConnect } from "node:tls";
import type { Subprocess } from "bun";
import { AdminClient } from "../../src/cli/admin_client";
import type { StatusReply } from "../../src/admin/messages";
import { unixGrpcConfig } from "../helpers/admin";
import { testCert } from "../helpers/certs";
import { freePort, waitFor } from "../helpers/net";
import { buildRef } from "../../scripts/build_ref";
import { BINARY, ROOT, cleanEnv, ensureBinary, tempDir } from "../helpers/proxy";
import { tlsBackend, tlsGet } from "../helpers/tls";

const HOST = "alpha.example.com";
/** Release 0.3.0 (CHANGELOG): a takeover socket without the reload request. */
const RELEASE_0_3_0 = "bc30452";
/** Set in the server's environment only: the successor must have it, the reload command does not. */
const MARK = "RELOAD_SUCCESSOR_TEST_MARK";

function config(port: number, backend: number, extra = "", shutdownTimeout = "3s"): string {
  return `[[listeners]]\naddr = "127.0.0.1:${port}"\n  [[listeners.routes]]\n  hostname = "${HOST}"\n  backend = "127.0.0.1:${backend}"\n${extra}[grpc]\naddr = "unix:admin.sock"\n[proxy]\nshutdown_timeout = "${shutdownTimeout}"\n[log]\nlevel = "info"\nformat = "json"\n`;
}

/** A server started with its stdout and stderr to files (as under a journal or a log file): its process and those paths. */
async function startServer(
  dir: string,
  binary = ensureBinary(),
): Promise<{ proc: Subprocess; out: string; err: string }> {
  const out = join(dir, "server.out");
  const err = join(dir, "server.err");
  const [o, e] = [openSync(out, "a"), openSync(err, "a")];
  const proc = Bun.spawn([binary, "server", "-c", join(dir, "mc-proxy.toml")], {
    cwd: dir,
    env: cleanEnv({ [MARK]: "from-the-server" }),
    stdin: "ignore",
    stdout: o,
    stderr: e,
  });
  closeSync(o);
  closeSync(e);
  await waitFor(
    () => proc.exitCode !== null || readFileSync(err, "utf8").includes('"msg":"started"'),
    15_000,
    "the server's started line",
  );
  if (proc.exitCode !== null) throw new Error(`the server exited ${proc.exitCode}: ${readFileSync(err, "utf8")}`);
  return { proc, out, err };
}

/**
 * mc-proxy reload with its stdout and stderr on a file deleted before it
 * runs: its pid, exit code and what it wrote (read back through the fd this
 * test keeps).
 */
async function reloadToDeletedFile(
  dir: string,
  file = join(dir, "mc-proxy.toml"),
  args: string[] = [],
): Promise<{ pid: number; code: number; out: string }> {
  const path = join(dir, `reload-${Date.now()}.log`);
  const fd = openSync(path, "w+");
  unlinkSync(path);
  try {
    const p = Bun.spawn([BINARY, "reload", "-c", file, ...args], {
      cwd: dir,
      env: cleanEnv(),
      stdin: "ignore",
      stdout: fd,
      stderr: fd,
    });
    const code = await p.exited;
    const buf = Buffer.alloc(1 << 20);
    const n = readSync(fd, buf, 0, buf.length, 0);
    return { pid: p.pid, code, out: buf.subarray(0, n).toString() };
  } finally {
    closeSync(fd);
  }
}

async function status(dir: string): Promise<StatusReply> {
  const admin = new AdminClient(unixGrpcConfig(join(dir, "admin.sock")));
  try {
    return await admin.call<StatusReply>("GetStatus");
  } finally {
    admin.close();
  }
}

/** Where a process's stdout and stderr point, from /proc. */
const fds = (pid: number) => [readlinkSync(`/proc/${pid}/fd/1`), readlinkSync(`/proc/${pid}/fd/2`)];
/** Its parent's pid: /proc/PID/stat field 4 (proc(5)), read after the command name in parentheses. */
const parentOf = (pid: number) => Number(readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")[1]);
const environOf = (pid: number) => readFileSync(`/proc/${pid}/environ`, "utf8").split("\0");

/** Log records in a file several processes write. */
function records(path: string): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const line of readFileSync(path, "utf8").split("\n")) {
    if (!line.startsWith("{")) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {}
  }
  return out;
}

/** The pids of running processes whose command line names `needle`. */
function processesWith(needle: string): number[] {
  const out: number[] = [];
  for (const e of require("node:fs").readdirSync("/proc") as string[]) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (readFileSync(`/proc/${e}/cmdline`, "utf8").includes(needle)) out.push(Number(e));
    } catch {}
  }
  return out;
}

describe("reload: the running server starts its successor (binary)", () => {
  test("reload with its output on a deleted file: the successor writes where the server writes, has its environment, is not the reload's child; SIGUSR2 the same; status shows pid and generation", async () => {
    const be = tlsBackend("be", testCert());
    const port = freePort();
    const dir = tempDir();
    const file = join(dir, "mc-proxy.toml");
    writeFileSync(file, config(port, be.port));
    const server = await startServer(dir);
    try {
      const first = server.proc.pid;
      const where = fds(first);
      expect(where).toEqual([server.out, server.err]);
      const r = await reloadToDeletedFile(dir);
      const now = await status(dir);
      // One line naming both processes, then what the new one applied from the file, when it says.
      expect(r.code).toBe(0);
      const [line, ...rest] = r.out.split("\n");
      expect(line).toBe(
        `reloaded: pid ${first} (generation 1) → pid ${now.pid} (generation 2); the old process drains`,
      );
      expect(rest.join("\n")).toMatch(/^(applied: [^\n]+\n)?$/);
      const second = now.pid;
      expect(second).not.toBe(first);
      expect(fds(second)).toEqual(where);
      expect(parentOf(second)).not.toBe(r.pid);
      expect(environOf(second)).toContain(`${MARK}=from-the-server`);
      // Its log lines are in the server's log file: "took over" and "started" with its pid.
      await waitFor(
        () => records(server.err).some((x) => x.msg === "started" && x.pid === second && x.generation === 2),
        10_000,
        "the successor's started line in the server's log",
      );
      expect(records(server.err).some((x) => x.msg === "took over" && x.from_pid === first)).toBe(true);
      expect(records(server.err).find((x) => x.msg === "starting a successor")).toMatchObject({
        trigger: "reload",
        successor_pid: second,
      });
      expect(await server.proc.exited).toBe(0);
      expect((await tlsGet(port, HOST, testCert())).body).toContain("hello from be");
      // status, in its text form, names the pid and generation serving.
      const st = Bun.spawnSync([BINARY, "status", "-c", file], { cwd: dir, env: cleanEnv(), stdout: "pipe" });
      expect(st.stdout.toString()).toContain(`serving: pid ${second}, generation 2`);
      // SIGUSR2 is the same start: the third process writes there too, with the same environment.
      process.kill(second, "SIGUSR2");
      let third: StatusReply | null = null;
      const t0 = Date.now();
      while (Date.now() - t0 < 20_000 && third?.generation !== 3) {
        third = await status(dir).catch(() => null);
        if (third?.generation !== 3) await Bun.sleep(100);
      }
      expect(third?.generation).toBe(3);
      expect(fds(third!.pid)).toEqual(where);
      expect(environOf(third!.pid)).toContain(`${MARK}=from-the-server`);
      await waitFor(
        () => records(server.err).some((x) => x.msg === "started" && x.pid === third!.pid && x.generation === 3),
        10_000,
        "the third process's started line in the server's log",
      );
      expect(
        records(server.err).find((x) => x.msg === "starting a successor" && x.trigger === "SIGUSR2"),
      ).toMatchObject({ successor_pid: third!.pid });
    } finally {
      for (const pid of processesWith(file)) process.kill(pid, "SIGKILL");
      server.proc.kill("SIGKILL");
      be.stop();
    }
  }, 90_000);

  test("a reload naming another config file is refused by the server, which keeps serving", async () => {
    const be = tlsBackend("be", testCert());
    const port = freePort();
    const dir = tempDir();
    const file = join(dir, "mc-proxy.toml");
    writeFileSync(file, config(port, be.port));
    // The same text in another file beside it: the same database, so the same takeover socket.
    const other = join(dir, "other.toml");
    writeFileSync(other, config(port, be.port));
    const server = await startServer(dir);
    try {
      const r = await reloadToDeletedFile(dir, other);
      expect(r.code).toBe(1);
      expect(r.out).toContain(
        `mc-proxy: reload failed: the running process refused: ${JSON.stringify(other)} is not the config file this process runs (${file})`,
      );
      expect(r.out).toContain(`pid ${server.proc.pid} (generation 1) serves`);
      expect(records(server.err).some((x) => String(x.msg).startsWith("reload refused:"))).toBe(true);
      expect(records(server.err).some((x) => x.msg === "starting a successor")).toBe(false);
      const s = await status(dir);
      expect({ pid: s.pid, generation: s.generation }).toEqual({ pid: server.proc.pid, generation: 1 });
      expect((await tlsGet(port, HOST, testCert())).body).toContain("hello from be");
    } finally {
      for (const pid of processesWith(file)) process.kill(pid, "SIGKILL");
      server.proc.kill("SIGKILL");
      be.stop();
    }
  }, 60_000);

  test("a successor that fails at start (a new listener's port is taken): reload exits 1 with its exit code and who serves; the reason is in the server's log", async () => {
    const be = tlsBackend("be", testCert());
    const port = freePort();
    const dir = tempDir();
    const file = join(dir, "mc-proxy.toml");
    writeFileSync(file, config(port, be.port));
    const server = await startServer(dir);
    const blocker = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    try {
      writeFileSync(file, config(port, be.port, `[[listeners]]\naddr = "127.0.0.1:${blocker.port}"\n`));
      const r = await reloadToDeletedFile(dir);
      expect(r.code).toBe(1);
      const m =
        /the new process \(pid (\d+)\) exited with code (\d+) before taking over \(the running process's log says why\); pid (\d+) \(generation 1\) serves/.exec(
          r.out,
        );
      expect(m, r.out).not.toBeNull();
      const [, failed, code, serving] = m!.map(Number);
      expect(code).not.toBe(0);
      expect(serving).toBe(server.proc.pid);
      // The server logged it, and the successor's own reason is in the server's log, not the reload's output.
      expect(
        records(server.err).find((x) => String(x.msg).startsWith("reload failed") && x.successor_pid === failed),
      ).toMatchObject({ level: "error", exit_code: code });
      expect(readFileSync(server.err, "utf8")).toContain(`127.0.0.1:${blocker.port}`);
      expect(r.out).not.toContain(`127.0.0.1:${blocker.port}`);
      const s = await status(dir);
      expect({ pid: s.pid, generation: s.generation }).toEqual({ pid: server.proc.pid, generation: 1 });
      expect((await tlsGet(port, HOST, testCert())).body).toContain("hello from be");
      // With the port free again the same reload succeeds.
      blocker.stop(true);
      const ok = await reloadToDeletedFile(dir);
      expect(ok.code).toBe(0);
      expect(ok.out).toContain(`reloaded: pid ${server.proc.pid} (generation 1) → pid `);
    } finally {
      blocker.stop(true);
      for (const pid of processesWith(file)) process.kill(pid, "SIGKILL");
      server.proc.kill("SIGKILL");
      be.stop();
    }
  }, 60_000);

  test(`a running ${RELEASE_0_3_0} (0.3.0) refuses the reload request it does not know: reload starts the new server itself, as before, and says where its logs go`, async () => {
    let old: string;
    try {
      old = buildRef(RELEASE_0_3_0, join(ROOT, ".cache/releases"));
    } catch (e) {
      return void console.warn(
        `SKIP reload from 0.3.0: cannot build ${RELEASE_0_3_0}: ${(e as Error).message.slice(0, 300)}`,
      );
    }
    const be = tlsBackend("be", testCert());
    const port = freePort();
    const dir = tempDir();
    const file = join(dir, "mc-proxy.toml");
    writeFileSync(file, config(port, be.port));
    const server = await startServer(dir, old);
    try {
      const r = await reloadToDeletedFile(dir);
      const now = await status(dir);
      expect(r.code).toBe(0);
      expect(r.out).toContain(
        `mc-proxy: the running process (pid ${server.proc.pid}, version 0.3.0) is an older release that cannot start its successor: this command starts it, so the new server's logs go to this command's stdout and stderr`,
      );
      expect(r.out).toContain(
        `reloaded: pid ${server.proc.pid} (generation 1) → pid ${now.pid} (generation 2); the old process drains`,
      );
      // As before: the new server writes where this reload does, and its "took over" line is in the reload's output.
      expect(r.out).toContain('"msg":"took over"');
      expect(fds(now.pid)).not.toEqual([server.out, server.err]);
      expect((await tlsGet(port, HOST, testCert())).body).toContain("hello from be");
      // The next reload is started by the new server itself.
      const again = await reloadToDeletedFile(dir);
      expect(again.code).toBe(0);
      const third = await status(dir);
      expect(third.generation).toBe(3);
      expect(again.out).not.toContain("older release");
      expect(parentOf(third.pid)).not.toBe(again.pid);
    } finally {
      for (const pid of processesWith(file)) process.kill(pid, "SIGKILL");
      server.proc.kill("SIGKILL");
      be.stop();
    }
  }, 180_000);
});

/** Replace the file at `path` as an upgrade does (a new file renamed over it); `text` null: the real binary again. */
function replaceBinary(path: string, text: string | null): void {
  const tmp = `${path}.new`;
  if (text === null) copyFileSync(BINARY, tmp);
  else writeFileSync(tmp, text);
  chmodSync(tmp, 0o755);
  renameSync(tmp, path);
}

/** A TLS connection through the listener, handshaken with the backend and then held open (no request sent). */
function heldConnection(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: "127.0.0.1", port, servername: HOST, ca: testCert().cert });
    s.once("secureConnect", () => resolve(s));
    s.once("error", reject);
  });
}

describe("reload: what the takeover socket refuses, bounds and waits for (binary)", () => {
  test("a stopping server (SIGTERM, draining a held connection) refuses the reload request: no successor takes over", async () => {
    const be = tlsBackend("be", testCert());
    const port = freePort();
    const dir = tempDir();
    const file = join(dir, "mc-proxy.toml");
    writeFileSync(file, config(port, be.port, "", "30s"));
    const server = await startServer(dir);
    const held = await heldConnection(port);
    try {
      process.kill(server.proc.pid, "SIGTERM");
      await waitFor(
        () => records(server.err).some((x) => x.msg === "signal received" && x.signal === "SIGTERM"),
        10_000,
        "the server's signal line",
      );
      const r = await reloadToDeletedFile(dir);
      expect(r.code).toBe(1);
      expect(r.out).toContain(
        "mc-proxy: reload failed: the running process refused: this process is stopping (signal SIGTERM); it starts no successor",
      );
      expect(r.out).toContain(`pid ${server.proc.pid} (generation 1) drains and stops (signal SIGTERM)`);
      expect(records(server.err).some((x) => x.msg === "starting a successor")).toBe(false);
      // Only the stopping server holds the takeover socket: no other process of this config.
      expect(processesWith(file).filter((p) => p !== server.proc.pid)).toEqual([]);
      expect(server.proc.exitCode).toBeNull();
    } finally {
      held.destroy();
      for (const pid of processesWith(file)) process.kill(pid, "SIGKILL");
      server.proc.kill("SIGKILL");
      be.stop();
    }
  }, 60_000);

  test("a successor that never prepares: reload --timeout 5 stops it within its timeout; a refusal returns at once; the server stops one started by SIGUSR2 after 60 s", async () => {
    const be = tlsBackend("be", testCert());
    const port = freePort();
    const dir = tempDir();
    const file = join(dir, "mc-proxy.toml");
    writeFileSync(file, config(port, be.port));
    const bin = join(dir, "mc-proxy-bin");
    replaceBinary(bin, null);
    const server = await startServer(dir, bin);
    try {
      replaceBinary(bin, "#!/bin/sh\nexec sleep 90\n");
      // The reload that asked: bounded by its --timeout, the hanging successor stopped.
      let t0 = Date.now();
      const timedOut = await reloadToDeletedFile(dir, file, ["--timeout", "5"]);
      const took = Date.now() - t0;
      expect(timedOut.code).toBe(1);
      expect(timedOut.out).toMatch(
        /did not take over within --timeout 5 s; it was stopped; pid \d+ \(generation 1\) serves/,
      );
      expect(took).toBeLessThan(8000);
      // SIGUSR2 starts one more; a reload meanwhile is refused at once, saying who is starting.
      process.kill(server.proc.pid, "SIGUSR2");
      await waitFor(
        () => records(server.err).some((x) => x.msg === "starting a successor" && x.trigger === "SIGUSR2"),
        10_000,
        "the SIGUSR2 successor",
      );
      const hanging = records(server.err).find((x) => x.msg === "starting a successor" && x.trigger === "SIGUSR2")!
        .successor_pid as number;
      t0 = Date.now();
      const refused = await reloadToDeletedFile(dir, file, ["--timeout", "5"]);
      expect(refused.code).toBe(1);
      expect(refused.out).toContain(
        `the running process refused: a successor is starting: pid ${hanging} (started by SIGUSR2`,
      );
      expect(refused.out).toContain(`while its successor pid ${hanging} is starting`);
      expect(Date.now() - t0).toBeLessThan(4000);
      // The server bounds it: stopped 60 s after its start, logged, and the next reload works.
      await waitFor(
        () =>
          records(server.err).some(
            (x) =>
              x.msg === "the successor did not prepare its takeover in time; stopping it" &&
              x.successor_pid === hanging,
          ),
        80_000,
        "the server stopping the hanging successor",
      );
      await waitFor(
        () =>
          records(server.err).some(
            (x) =>
              String(x.msg).startsWith("SIGUSR2 reload failed") &&
              x.successor_pid === hanging &&
              x.signal === "SIGTERM",
          ),
        10_000,
        "the hanging successor's end logged",
      );
      replaceBinary(bin, null);
      const ok = await reloadToDeletedFile(dir);
      expect(ok.code).toBe(0);
      expect(ok.out).toContain(`reloaded: pid ${server.proc.pid} (generation 1) → pid `);
    } finally {
      for (const pid of processesWith(file)) process.kill(pid, "SIGKILL");
      for (const pid of processesWith("sleep 90")) process.kill(pid, "SIGKILL");
      server.proc.kill("SIGKILL");
      be.stop();
    }
  }, 150_000);

  test("a takeover socket with every connection held is waited for, not taken for a server gone; one connection's bad lines are one log line", async () => {
    const be = tlsBackend("be", testCert());
    const port = freePort();
    const dir = tempDir();
    const file = join(dir, "mc-proxy.toml");
    writeFileSync(file, config(port, be.port));
    const server = await startServer(dir);
    const control = join(dir, "mc-proxy.db.control");
    const held: Socket[] = [];
    try {
      // 2,000 bad lines in one write, then an HTTP/2 client's preface: one refusal each.
      for (const data of ["{}\n".repeat(2000), "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"]) {
        const s = createConnection({ path: control });
        s.on("error", () => {});
        await new Promise<void>((resolve) => {
          s.on("connect", () => s.write(data));
          s.on("close", () => resolve());
          s.on("data", () => {});
        });
      }
      await waitFor(
        () => records(server.err).filter((x) => String(x.msg).startsWith("takeover refused")).length >= 2,
        5000,
        "the refusals logged",
      );
      await Bun.sleep(300);
      expect(records(server.err).filter((x) => String(x.msg).startsWith("takeover refused")).length).toBe(2);
      // Every connection the socket takes held (16, idle), released 1.5 s after the reload started.
      for (let i = 0; i < 16; i++) {
        const s = createConnection({ path: control });
        s.on("error", () => {});
        held.push(s);
        await new Promise((r) => s.once("connect", r));
      }
      const reloading = reloadToDeletedFile(dir);
      await Bun.sleep(1500);
      for (const s of held.splice(0)) s.destroy();
      const r = await reloading;
      expect(r.out).not.toContain("no running mc-proxy answers");
      expect(r.code).toBe(0);
      expect(r.out).toContain(`reloaded: pid ${server.proc.pid} (generation 1) → pid `);
    } finally {
      for (const s of held) s.destroy();
      for (const pid of processesWith(file)) process.kill(pid, "SIGKILL");
      server.proc.kill("SIGKILL");
      be.stop();
    }
  }, 60_000);
});
