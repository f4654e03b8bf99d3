// The decisions of the successor a running process starts itself
// (src/cli/startup/successor_start.ts, src/server/handover.ts): one at a
// time, only for the config file it runs, and how one ended — fed values,
// no process.
import { describe, expect, test } from "bun:test";
import { sameConfigError, startRefusal } from "../../src/cli/startup/successor_start";
import { type SuccessorReport, endedAs, running } from "../../src/server/handover";

const since = Date.parse("2026-12-07T10:00:00.000Z");
const report = (o: Partial<SuccessorReport> = {}): SuccessorReport => ({
  pid: 4242,
  since,
  trigger: "reload",
  exitCode: null,
  signal: null,
  ...o,
});

describe("startRefusal: one successor at a time", () => {
  test("none started, or the last one ended (with any code or signal): a new one may start", () => {
    expect(startRefusal(null, since, null)).toBeNull();
    expect(startRefusal(report({ exitCode: 1 }), since + 5000, null)).toBeNull();
    expect(startRefusal(report({ exitCode: 0 }), since + 5000, null)).toBeNull();
    expect(startRefusal(report({ signal: "SIGTERM" }), since + 5000, null)).toBeNull();
  });

  test("one still running: refused, naming its pid, what started it and since when", () => {
    expect(startRefusal(report(), since + 12_400, null)).toBe(
      "a successor is starting: pid 4242 (started by a reload request at 2026-12-07T10:00:00.000Z, 12 s ago)",
    );
    expect(startRefusal(report({ trigger: "SIGUSR2" }), since, null)).toContain("started by SIGUSR2 at");
  });

  test("a stopping process starts none, whatever else holds, naming the signal", () => {
    const why = "this process is stopping (signal SIGTERM); it starts no successor";
    expect(startRefusal(null, since, "SIGTERM")).toBe(why);
    expect(startRefusal(report(), since, "SIGTERM")).toBe(why);
    expect(startRefusal(report({ exitCode: 1 }), since, "SIGINT")).toContain("(signal SIGINT)");
  });
});

describe("sameConfigError: a reload request names the file the process runs", () => {
  const id = (dev: number, ino: number) => ({ dev: BigInt(dev), ino: BigInt(ino) });

  test("the same device and inode, under any name (a link, another spelling), is the same file", () => {
    expect(sameConfigError("/etc/mc/a.toml", "/srv/a.toml", { requested: id(1, 7), own: id(1, 7) })).toBeNull();
  });

  test("another file — a copy, the same inode number on another device — is refused, naming both", () => {
    const why = "/srv/b.toml is not the config file this process runs (/srv/a.toml); reload the instance that runs it";
    expect(sameConfigError("/srv/b.toml", "/srv/a.toml", { requested: id(1, 8), own: id(1, 7) })).toBe(why);
    expect(sameConfigError("/srv/b.toml", "/srv/a.toml", { requested: id(2, 7), own: id(1, 7) })).toBe(why);
  });

  test("a file that cannot be read is refused with the reason", () => {
    expect(sameConfigError("/srv/b.toml", "/srv/a.toml", { requested: "ENOENT: no such file", own: id(1, 7) })).toBe(
      "cannot read /srv/b.toml: ENOENT: no such file",
    );
    expect(sameConfigError("/srv/a.toml", "/srv/a.toml", { requested: id(1, 7), own: "EACCES" })).toBe(
      "cannot read this process's config /srv/a.toml: EACCES",
    );
  });
});

describe("how a successor ended", () => {
  test("running until a code or a signal is known; told as an exit code or a signal", () => {
    expect(running(null)).toBe(false);
    expect(running(report())).toBe(true);
    expect(running(report({ exitCode: 3 }))).toBe(false);
    expect(running(report({ signal: "SIGKILL" }))).toBe(false);
    expect(endedAs({ exitCode: 3, signal: null })).toBe("exited with code 3");
    expect(endedAs({ exitCode: null, signal: "SIGKILL" })).toBe("was killed by SIGKILL");
  });
});
