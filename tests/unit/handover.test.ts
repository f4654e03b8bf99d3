// The takeover socket's requests (src/server/handover.ts): what a line may
// say, and who may be handed over to (src/server/successor.ts) — fed
// values and a fake /proc, no socket.
import { describe, expect, test } from "bun:test";
import { parseRequest } from "../../src/server/takeover_request";
import { type ProcView, shownCmdline, splitCmdline, successorError, takeoverConfig } from "../../src/server/successor";

describe("parseRequest", () => {
  test("hello, prepare and handover with the requester's pid and listener addresses", () => {
    expect(parseRequest('{"op":"hello"}')).toEqual({ op: "hello" });
    expect(parseRequest('{"op":"prepare","pid":1234}')).toEqual({ op: "prepare", pid: 1234 });
    expect(
      parseRequest('{"op":"handover","pid":1234,"listeners":["127.0.0.1:443","[::1]:443",":8443","127.0.0.1:443"]}'),
    ).toEqual({
      op: "handover",
      pid: 1234,
      listeners: ["127.0.0.1:443", "[::1]:443", ":8443"],
    });
  });

  test("a bare handover (any process of the user could send it) is refused, naming what is missing", () => {
    expect(parseRequest('{"op":"handover"}')).toContain('"pid"');
    expect(parseRequest('{"op":"handover","pid":1234}')).toContain('"listeners"');
    expect(parseRequest('{"op":"handover","pid":1234,"listeners":[]}')).toContain('"listeners"');
  });

  test("pids and addresses are checked with the same rules as everywhere (host_port.ts)", () => {
    for (const pid of [0, -1, 1.5, "12", null, 2 ** 40])
      expect(typeof parseRequest(JSON.stringify({ op: "prepare", pid }))).toBe("string");
    expect(parseRequest('{"op":"handover","pid":5,"listeners":["127.0.0.1"]}')).toContain("not host:port");
    expect(parseRequest('{"op":"handover","pid":5,"listeners":["127.0.0.1:99999"]}')).toContain("not host:port");
    expect(parseRequest('{"op":"handover","pid":5,"listeners":[443]}')).toContain("not host:port");
    const many = Array.from({ length: 257 }, (_, i) => `:${1000 + i}`);
    expect(parseRequest(JSON.stringify({ op: "handover", pid: 5, listeners: many }))).toContain("1-256");
  });

  test("reload names the config file by its absolute path; anything else is refused, saying so", () => {
    expect(parseRequest('{"op":"reload","config":"/srv/mc-proxy/mc-proxy.toml"}')).toEqual({
      op: "reload",
      config: "/srv/mc-proxy/mc-proxy.toml",
    });
    for (const config of [undefined, "", "mc-proxy.toml", "./a.toml", 5, null, "/a\u0000b"])
      expect(parseRequest(JSON.stringify({ op: "reload", config }))).toContain(
        'reload: "config" must be the absolute path',
      );
  });

  test("anything else is not a request; a line over 4096 bytes is refused unread", () => {
    for (const line of ["", "{", "null", "[]", '"hello"', '{"op":"stop"}', '{"op":"HELLO"}'])
      expect(parseRequest(line)).toBe("not a request");
    expect(parseRequest(`{"op":"hello","x":"${"a".repeat(5000)}"}`)).toContain("4096");
  });
});

describe("takeoverConfig: the config an mc-proxy server --takeover command line names", () => {
  test("the compiled binary, under any name, and a run from source; every spelling of the config flag", () => {
    expect(takeoverConfig(["/usr/local/bin/mc-proxy", "server", "-c", "/srv/mc-proxy.toml", "--takeover"])).toEqual({
      config: "/srv/mc-proxy.toml",
    });
    expect(takeoverConfig(["/opt/proxy-v3", "server", "--takeover", "--config", "conf/a.toml"])).toEqual({
      config: "conf/a.toml",
    });
    expect(takeoverConfig(["mc-proxy", "server", "--config=a.toml", "--takeover"])).toEqual({ config: "a.toml" });
    expect(takeoverConfig(["mc-proxy", "server", "-ca.toml", "--takeover"])).toEqual({ config: "a.toml" });
    expect(takeoverConfig(["/usr/bin/bun", "/src/mc/src/main.ts", "server", "-c", "a.toml", "--takeover"])).toEqual({
      config: "a.toml",
    });
    expect(takeoverConfig(["bun", "run", "/src/mc/src/main.ts", "server", "-c", "a.toml", "--takeover"])).toEqual({
      config: "a.toml",
    });
  });

  test("a plain server, another command, an unknown flag, a positional, no config, or another program is none", () => {
    const none = [
      ["mc-proxy", "server", "-c", "a.toml"],
      ["mc-proxy", "reload", "-c", "a.toml", "--takeover"],
      ["mc-proxy", "server", "-c", "a.toml", "--takeover", "--json"],
      ["mc-proxy", "server", "-c", "a.toml", "--takeover", "extra"],
      ["mc-proxy", "server", "--takeover"],
      ["mc-proxy", "server", "-c", "", "--takeover"],
      ["mc-proxy", "server", "--takeover", "-c"],
      ["bun", "stray_handover.ts"],
      ["python3", "-m", "http.server", "21003"],
      ["/bin/sh", "-c", "mc-proxy server -c a.toml --takeover"],
      [],
    ];
    for (const argv of none) expect(takeoverConfig(argv)).toHaveProperty("error");
    expect(takeoverConfig(["bun", "stray_handover.ts"])).toEqual({
      error: 'its command line is not "mc-proxy server -c FILE --takeover": bun stray_handover.ts',
    });
  });

  test("/proc's cmdline text splits on NUL; a long one is clipped where it is shown", () => {
    expect(splitCmdline("mc-proxy\0server\0-c\0a b.toml\0--takeover\0")).toEqual([
      "mc-proxy",
      "server",
      "-c",
      "a b.toml",
      "--takeover",
    ]);
    expect(splitCmdline("")).toEqual([]);
    expect(shownCmdline(["x", "y".repeat(300)])).toBe(`x ${"y".repeat(198)}…`);
  });
});

describe("successorError: who may prepare and be handed over to", () => {
  const CONFIG = "/srv/mc/mc-proxy.toml";
  /** A fake /proc: each pid's command line, the config files each resolves to the same file as ours, and its listening ports. */
  const proc = (ps: Record<number, { argv: string[]; same?: boolean; ports?: number[] }>): ProcView => ({
    cmdline: async (pid) => {
      const p = ps[pid];
      if (p === undefined) throw new Error(`ENOENT: no such file or directory, open '/proc/${pid}/cmdline'`);
      return p.argv;
    },
    sameFile: async (pid) => ps[pid]?.same ?? false,
    listens: async (pid, addrs) => addrs.map((a) => ps[pid]?.ports?.includes(a.port) ?? false),
  });
  const successor = {
    argv: ["mc-proxy", "server", "-c", "mc-proxy.toml", "--takeover"],
    same: true,
    ports: [443, 8443],
  };

  test("an mc-proxy server --takeover of the same config, listening on every address it names, may take over", async () => {
    expect(await successorError(4242, CONFIG, null, proc({ 4242: successor }))).toBeNull();
    expect(await successorError(4242, CONFIG, ["127.0.0.1:443", ":8443"], proc({ 4242: successor }))).toBeNull();
  });

  test("one that misses any listener, or holds none, is refused naming the pid and the addresses", async () => {
    const p = proc({ 4242: { ...successor, ports: [443] }, 7: { ...successor, ports: [] } });
    expect(await successorError(4242, CONFIG, ["127.0.0.1:443", ":8443"], p)).toBe(
      "pid 4242 holds no listening socket on :8443",
    );
    expect(await successorError(7, CONFIG, ["127.0.0.1:443", ":8443"], p)).toBe(
      "pid 7 holds no listening socket on 127.0.0.1:443, :8443",
    );
    expect(await successorError(7, CONFIG, [], p)).toBe("pid 7 names no listener");
  });

  test("a process listening on what it names but not a takeover of this config is refused: a stray, a plain server, another config", async () => {
    const stray = { argv: ["bun", "stray_handover.ts"], same: false, ports: [21003] };
    const p = proc({
      10: stray,
      11: { ...successor, argv: ["mc-proxy", "server", "-c", "mc-proxy.toml"] },
      12: { ...successor, same: false },
    });
    expect(await successorError(10, CONFIG, ["127.0.0.1:21003"], p)).toBe(
      'pid 10: its command line is not "mc-proxy server -c FILE --takeover": bun stray_handover.ts',
    );
    expect(await successorError(11, CONFIG, ["127.0.0.1:443"], p)).toContain("pid 11: its command line is not");
    expect(await successorError(12, CONFIG, ["127.0.0.1:443"], p)).toBe(
      `pid 12 runs another config (mc-proxy.toml, not ${CONFIG})`,
    );
    expect(await successorError(12, CONFIG, null, p)).toBe(`pid 12 runs another config (mc-proxy.toml, not ${CONFIG})`);
  });

  test("the running process itself is never its own successor", async () => {
    expect(await successorError(process.pid, CONFIG, ["127.0.0.1:443"], proc({ [process.pid]: successor }))).toBe(
      `pid ${process.pid} is this process`,
    );
  });

  test("a pid whose command line, config or sockets cannot be read is refused with the reason", async () => {
    expect(await successorError(99999999, CONFIG, null, proc({}))).toContain(
      "cannot read the command line of pid 99999999: ENOENT",
    );
    const noConfig: ProcView = { ...proc({ 5: successor }), sameFile: async () => Promise.reject(new Error("ENOENT")) };
    expect(await successorError(5, CONFIG, null, noConfig)).toBe("pid 5: cannot open its config mc-proxy.toml: ENOENT");
    const unreadable: ProcView = {
      ...proc({ 5: successor }),
      listens: async () => Promise.reject(new Error("EACCES: /proc/5/fd")),
    };
    expect(await successorError(5, CONFIG, ["127.0.0.1:443"], unreadable)).toContain(
      "cannot read the sockets of pid 5: EACCES",
    );
  });

  test("against this process's /proc: the test runner is no takeover", async () => {
    expect(await successorError(process.ppid, CONFIG, null)).toMatch(/^pid \d+: (its command line is not|cannot)/);
  });
});
