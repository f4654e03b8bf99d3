// The takeover socket's requests (src/server/handover.ts): what a line may
// say, and who may be handed over to — fed values, no socket.
import { describe, expect, test } from "bun:test";
import { parseRequest, requesterError } from "../../src/server/handover";

describe("parseRequest", () => {
  test("hello, prepare and handover with the requester's pid and listener addresses", () => {
    expect(parseRequest('{"op":"hello"}')).toEqual({ op: "hello" });
    expect(parseRequest('{"op":"prepare","pid":1234}')).toEqual({ op: "prepare", pid: 1234 });
    expect(parseRequest('{"op":"handover","pid":1234,"listeners":["127.0.0.1:443","[::1]:443",":8443","127.0.0.1:443"]}')).toEqual({
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
    for (const pid of [0, -1, 1.5, "12", null, 2 ** 40]) expect(typeof parseRequest(JSON.stringify({ op: "prepare", pid }))).toBe("string");
    expect(parseRequest('{"op":"handover","pid":5,"listeners":["127.0.0.1"]}')).toContain("not host:port");
    expect(parseRequest('{"op":"handover","pid":5,"listeners":["127.0.0.1:99999"]}')).toContain("not host:port");
    expect(parseRequest('{"op":"handover","pid":5,"listeners":[443]}')).toContain("not host:port");
    const many = Array.from({ length: 257 }, (_, i) => `:${1000 + i}`);
    expect(parseRequest(JSON.stringify({ op: "handover", pid: 5, listeners: many }))).toContain("1-256");
  });

  test("anything else is not a request; a line over 4096 bytes is refused unread", () => {
    for (const line of ["", "{", "null", "[]", '"hello"', '{"op":"stop"}', '{"op":"HELLO"}']) expect(parseRequest(line)).toBe("not a request");
    expect(parseRequest(`{"op":"hello","x":"${"a".repeat(5000)}"}`)).toContain("4096");
  });
});

describe("requesterError", () => {
  /** A fake view of /proc: which (pid, port) listen. */
  const listening = (held: Record<number, number[]>) => async (pid: number, addrs: readonly { port: number }[]) => addrs.map((a) => held[pid]?.includes(a.port) ?? false);

  test("a process that listens on every address it names may take over", async () => {
    expect(await requesterError(4242, ["127.0.0.1:443", ":8443"], listening({ 4242: [443, 8443] }))).toBeNull();
  });

  test("one that misses any, or holds none, is refused naming the pid and the addresses", async () => {
    expect(await requesterError(4242, ["127.0.0.1:443", ":8443"], listening({ 4242: [443] }))).toBe("pid 4242 holds no listening socket on :8443");
    expect(await requesterError(7, ["127.0.0.1:443", ":8443"], listening({}))).toBe("pid 7 holds no listening socket on 127.0.0.1:443, :8443");
  });

  test("the running process itself is never its own successor", async () => {
    expect(await requesterError(process.pid, ["127.0.0.1:443"], async (_, a) => a.map(() => true))).toBe(`pid ${process.pid} is this process`);
  });

  test("a pid whose sockets cannot be read is refused with the reason", async () => {
    const unreadable = async (): Promise<boolean[]> => {
      throw new Error("ENOENT: no such file or directory, scandir '/proc/99999999/fd'");
    };
    expect(await requesterError(99999999, ["127.0.0.1:443"], unreadable)).toContain("cannot read the sockets of pid 99999999: ENOENT");
  });
});
