// The takeover socket as a requester meets it (src/server/handover.ts,
// src/server/takeover_client.ts, src/cli/startup/successor_start.ts): a
// real HandoverServer on a unix socket in a temp directory, with small fake
// hooks and a logger writing to memory. One refusal per connection, text a
// requester sent clipped, a stopping process hands over to no one, a
// socket at its connection limit is "busy", not "not running"; and a
// successor this process started is stopped when it does not prepare in
// time (a real child process).
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { type Socket, createConnection } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SuccessorStarter } from "../../src/cli/startup/successor_start";
import { Logger } from "../../src/log/logger";
import { HandoverServer, MAX_CONNECTIONS, running } from "../../src/server/handover";
import { Refused, hello } from "../../src/server/takeover_client";
import { waitFor } from "../helpers/net";

/** A logger into memory: its records, once flushed. */
function memoryLogger(): { logger: Logger; records: () => Record<string, unknown>[]; text: () => string } {
  const out: string[] = [];
  const logger = new Logger("debug", "json", { write: (t) => void out.push(t), flush() {} });
  const text = () => {
    logger.flush();
    return out.join("");
  };
  const records = () =>
    text()
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { logger, records, text };
}

const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const f of cleanup.splice(0)) f();
});

/** A takeover socket in a fresh directory; its config file exists there. `stopping` is what hooks.stopping() says. */
async function socketUnderTest(o: { stopping?: () => string | null } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "mc-handover-"));
  const config = join(dir, "mc-proxy.toml");
  writeFileSync(config, "# the config this process runs\n");
  const log = memoryLogger();
  const starter = new SuccessorStarter(config, log.logger, () => null, { command: ["/bin/false"] });
  const path = join(dir, "mc-proxy.db.control");
  const server = await HandoverServer.start(path, {
    self: () => ({
      pid: process.pid,
      version: "test",
      generation: 1,
      startedAt: Date.now(),
      previous: null,
      degraded: [],
      applied: null,
      successor: starter.report(),
    }),
    config,
    handover: async () => ({ active: 0 }),
    reload: (p) => starter.forRequest(p),
    prepared: (pid) => starter.prepared(pid),
    stopping: o.stopping ?? (() => starter.stopping),
    logger: log.logger,
  });
  cleanup.push(() => server.close());
  return { path, config, log, starter };
}

/** Connect, write `data` at once, and collect what comes back until the server closes the connection (bounded). */
function converse(
  path: string,
  data: string | Uint8Array,
  ms = 5000,
): Promise<{ answer: string; closedByServer: boolean }> {
  return new Promise((resolve, reject) => {
    const s: Socket = createConnection({ path });
    let answer = "";
    const t = setTimeout(() => {
      s.destroy();
      resolve({ answer, closedByServer: false });
    }, ms);
    s.on("error", (e) => {
      clearTimeout(t);
      reject(e);
    });
    s.on("connect", () => s.write(data));
    s.on("data", (d) => {
      answer += d.toString();
    });
    s.on("end", () => {
      clearTimeout(t);
      s.destroy();
      resolve({ answer, closedByServer: true });
    });
  });
}

const refusals = (records: Record<string, unknown>[]) => records.filter((r) => String(r.msg).includes("refused"));

describe("the takeover socket: one refusal per connection", () => {
  test("a connection sending 2,000 bad lines at once gets one answer, is closed, and writes one log line", async () => {
    const { path, log } = await socketUnderTest();
    const r = await converse(path, "{}\n".repeat(2000));
    expect(r.closedByServer).toBe(true);
    expect(r.answer.trim().split("\n")).toEqual([JSON.stringify({ ok: false, error: "not a request" })]);
    expect(refusals(log.records())).toHaveLength(1);
  });

  test("an HTTP/2 client (a gRPC client pointed at the socket) gets one refusal and one log line", async () => {
    const { path, log } = await socketUnderTest();
    const preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    // An empty SETTINGS frame and a WINDOW_UPDATE, as a client sends right after the preface (RFC 9113 §3.4).
    const frames = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 4, 8, 0, 0, 0, 0, 0, 0, 0x0f, 0, 1]);
    const r = await converse(path, Buffer.concat([preface, frames]));
    expect(r.closedByServer).toBe(true);
    expect(r.answer.trim().split("\n")).toHaveLength(1);
    expect(log.text().trim().split("\n")).toHaveLength(1);
  });

  test("a reload naming a 4,000-byte path: the answer and the log line repeat it clipped", async () => {
    const { path, log } = await socketUnderTest();
    const long = `/${"A".repeat(4000)}`;
    const r = await converse(path, `${JSON.stringify({ op: "reload", config: long })}\n`);
    const answer = JSON.parse(r.answer) as { ok: boolean; error: string };
    expect(answer.ok).toBe(false);
    expect(answer.error).toContain("cannot read");
    expect(answer.error).toContain("(4001 bytes)");
    expect(answer.error.length).toBeLessThan(300);
    expect(log.text().length).toBeLessThan(600);
    // Sent 40 times, on 40 connections: 40 short lines.
    for (let i = 0; i < 40; i++) await converse(path, `${JSON.stringify({ op: "reload", config: long })}\n`);
    expect(refusals(log.records())).toHaveLength(41);
    expect(log.text().length).toBeLessThan(41 * 600);
  });

  test("a line sent while the first is answered is dropped; hello answers once and closes", async () => {
    const { path, log } = await socketUnderTest();
    const r = await converse(path, '{"op":"hello"}\n{"op":"hello"}\n{"op":"prepare"}\n');
    expect(r.closedByServer).toBe(true);
    const lines = r.answer.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toMatchObject({ ok: true, pid: process.pid, stopping: null });
    expect(refusals(log.records())).toHaveLength(0);
  });
});

describe("a stopping process hands over to no one", () => {
  test("after a stop signal: reload and prepare are refused naming the signal; hello says it stops", async () => {
    const { path, config, log, starter } = await socketUnderTest();
    starter.stop("SIGTERM");
    const reload = await converse(path, `${JSON.stringify({ op: "reload", config })}\n`);
    expect(JSON.parse(reload.answer)).toEqual({
      ok: false,
      error: "this process is stopping (signal SIGTERM); it starts no successor",
    });
    const prepare = await converse(path, `${JSON.stringify({ op: "prepare", pid: 4242 })}\n`);
    expect(JSON.parse(prepare.answer)).toEqual({
      ok: false,
      error: "this process is stopping (signal SIGTERM); it hands over to no successor",
    });
    expect((await hello(path)).stopping).toBe("SIGTERM");
    expect(log.records().some((r) => r.msg === "starting a successor")).toBe(false);
    // The first signal is the one told.
    starter.stop("SIGINT");
    expect(starter.stopping).toBe("SIGTERM");
  });
});

describe("a takeover socket at its connection limit is busy, not gone", () => {
  test("with every connection held, hello is tried again and then refused naming the limit; freed, it answers", async () => {
    const { path } = await socketUnderTest();
    const held: Socket[] = [];
    for (let i = 0; i < MAX_CONNECTIONS; i++) {
      const s = createConnection({ path });
      s.on("error", () => {});
      held.push(s);
      await new Promise((r) => s.once("connect", r));
    }
    try {
      const t0 = Date.now();
      const e = await hello(path, 2000, 1000).catch((x: Error) => x);
      expect(e).toBeInstanceOf(Refused);
      expect((e as Error).message).toContain(`is at its connection limit (${MAX_CONNECTIONS} connections)`);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(800);
      expect(Date.now() - t0).toBeLessThan(4000);
      // Freed while a hello is being tried again: it answers.
      const pending = hello(path, 2000, 5000);
      await Bun.sleep(300);
      for (const s of held.splice(0)) s.destroy();
      expect((await pending).pid).toBe(process.pid);
    } finally {
      for (const s of held) s.destroy();
    }
  });

  test("nothing listening is still an error of its own (not busy)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "mc-handover-"));
    const e = await hello(join(dir, "none.control"), 1000, 1000).catch((x: Error) => x);
    expect(e).not.toBeInstanceOf(Refused);
    expect((e as Error).message).toMatch(/ENOENT|ECONNREFUSED|No such file/i);
  });
});

describe("a successor this process started has START_MS to prepare", () => {
  const dir = mkdtempSync(join(tmpdir(), "mc-successor-"));
  const config = join(dir, "mc-proxy.toml");

  test("one that never prepares is stopped with SIGTERM and logged; the next may start", async () => {
    const log = memoryLogger();
    const starter = new SuccessorStarter(config, log.logger, () => null, {
      command: ["/bin/sh", "-c", "exec sleep 40"],
      startMs: 300,
      killMs: 2000,
    });
    const pid = starter.start("SIGUSR2");
    await waitFor(() => !running(starter.report()), 10_000, "the successor stopped");
    expect(starter.report()).toMatchObject({ pid, signal: "SIGTERM", exitCode: null });
    const stopped = log
      .records()
      .find((r) => r.msg === "the successor did not prepare its takeover in time; stopping it");
    expect(stopped).toMatchObject({ level: "warn", successor_pid: pid, after_ms: 300 });
    await waitFor(
      () => log.records().some((r) => String(r.msg).startsWith("SIGUSR2 reload failed") && r.successor_pid === pid),
      5000,
      "the failure logged",
    );
    expect(() => starter.start("SIGUSR2")).not.toThrow();
    process.kill(starter.report()!.pid, "SIGKILL");
  });

  test("one that ignores SIGTERM is killed after the grace", async () => {
    const log = memoryLogger();
    const starter = new SuccessorStarter(config, log.logger, () => null, {
      command: ["/bin/sh", "-c", "trap '' TERM; exec sleep 40"],
      startMs: 300,
      killMs: 500,
    });
    const pid = starter.start("reload");
    await waitFor(() => !running(starter.report()), 10_000, "the successor killed");
    expect(starter.report()).toMatchObject({ pid, signal: "SIGKILL" });
  });

  test("one that prepared in time is left running", async () => {
    const log = memoryLogger();
    const starter = new SuccessorStarter(config, log.logger, () => null, {
      command: ["/bin/sh", "-c", "exec sleep 40"],
      startMs: 300,
      killMs: 500,
    });
    const pid = starter.start("reload");
    starter.prepared(pid);
    await Bun.sleep(1000);
    expect(running(starter.report())).toBe(true);
    process.kill(pid, "SIGKILL");
    await waitFor(() => !running(starter.report()), 5000, "the successor gone");
  });
});
