// A TOML syntax error names its line and column (src/config/toml.ts: Bun's
// parser gives no position, so the shortest failing prefix places it), and
// the admin commands read the [grpc] section alone (src/config/config.ts
// loadGrpcSection): a file half edited elsewhere still names the admin API.
import { describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, examineConfig, loadGrpcSection } from "../../src/config/config";
import { parseToml, syntaxErrorAt } from "../../src/config/toml";
import { readRoutes } from "../../src/routing/route_config";

const problem = (text: string): string => {
  const r = parseToml(text);
  if (r.ok) throw new Error("expected a syntax error");
  return r.error;
};

describe("TOML syntax errors: line and column", () => {
  test("a key without '=' on line 4: 4:5, the parser's words, and that nothing else was checked", () => {
    const p = problem(`a = 1\n\n[s]\nkey 7\n`);
    expect(p).toStartWith("4:5: not valid TOML: Expected '=' after a key but found '7'");
    expect(p).toContain("nothing else is checked");
  });

  test.each([
    ["an unclosed table header", `[[listeners]\naddr = ":1"\n`, "1:13: "],
    ["a value missing", `a = 1\nb = \n`, "2:5: "],
    ["an unquoted string, indented", `[t]\n  k = 1\n  k2 = tru\n`, "3:10: "],
    ["a key defined twice", `a = 1\nb = 2\na = 3\n`, "3:"],
    ["an array left open, found at the next key", `x = [1, 2\ny = 3\n`, "2:1: "],
    ["an error after a multi-line array", `x = [\n 1,\n 2,\n]\n[y\n`, "5:"],
    ["CRLF line ends", `a = 1\r\nb c\r\n`, "2:3: "],
  ])("%s", (_what, text, at) => {
    expect(problem(text)).toStartWith(at);
  });

  test("a line break the parser reports as (0x0A) is named in words", () => {
    expect(problem(`[[listeners]\n`)).toContain("found the end of the line");
  });

  test("a 250 KB file with its error on the last line is placed with a bounded number of parses (binary search)", () => {
    let text = "";
    for (let i = 0; text.length < 250_000; i++)
      text += `[[listeners]]\naddr = "127.0.0.1:${1000 + i}"\n  [[listeners.routes]]\n  hostname = "h${i}.test"\n  backend = "127.0.0.1:9"\n`;
    const lines = text.split("\n").length;
    text += "broken line\n";
    const real = Bun.TOML.parse;
    let parses = 0;
    (Bun.TOML as { parse: typeof real }).parse = (t: Parameters<typeof real>[0]) => {
      parses++;
      return real(t);
    };
    try {
      const r = parseToml(text);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.error).toStartWith(`${lines}:8: not valid TOML`);
    } finally {
      (Bun.TOML as { parse: typeof real }).parse = real;
    }
    // A line-by-line search made one parse per line (10,000 here: 17 s); the binary search about 2 × log2(lines).
    expect(parses).toBeGreaterThan(5);
    expect(parses).toBeLessThan(40);
  });

  test("a text whose one parse is slow is not searched: one parse, no place (Bun's parser is superlinear in tables)", () => {
    const real = Bun.TOML.parse;
    let parses = 0;
    (Bun.TOML as { parse: typeof real }).parse = (t: Parameters<typeof real>[0]) => {
      parses++;
      const end = performance.now() + 30;
      while (performance.now() < end) {}
      return real(t);
    };
    try {
      const r = parseToml("[a]\n[b]\n[a]\n");
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.error).toStartWith("not valid TOML: ");
    } finally {
      (Bun.TOML as { parse: typeof real }).parse = real;
    }
    expect(parses).toBe(1);
  });

  test("syntaxErrorAt: null when no prefix fails with that message (the text is valid)", () => {
    expect(syntaxErrorAt("a = 1\n", "anything")).toBeNull();
  });

  test("examineConfig reports it as the one problem, with no config", () => {
    const r = examineConfig(`[[listeners]]\naddr = ":1"\n[grpc]\naddr "x"\n`, "c.toml", readRoutes);
    expect(r.config).toBeNull();
    expect(r.problems).toEqual([expect.stringMatching(/^4:6: not valid TOML: Expected '=' after a key/)]);
  });

  test("ConfigError prints a placed problem as FILE:LINE:COL:, others as FILE: problem", () => {
    expect(new ConfigError("c.toml", ["4:6: not valid TOML: x", "grpc.addr: y"]).message).toBe(
      "c.toml:4:6: not valid TOML: x\nc.toml: grpc.addr: y",
    );
  });
});

describe("loadGrpcSection: the admin commands' one section", () => {
  const file = (text: string) => {
    const f = join(mkdtempSync(join(tmpdir(), "mcproxy-grpc-")), "c.toml");
    writeFileSync(f, text);
    return f;
  };
  const GRPC = `[grpc]\naddr = "unix:admin.sock"\n`;

  test("broken routes and listeners do not matter; a relative socket path is taken from the file's folder", () => {
    const f = file(
      `[[listeners]]\naddr = "nonsense"\n  [[listeners.routes]]\n  hostname = 7\n${GRPC}[proxy]\nworkers = -1\n`,
    );
    const g = loadGrpcSection(f, {});
    expect(g?.addr).toBe(`unix:${join(f, "..", "admin.sock")}`);
  });

  test("a TOML syntax error outside [grpc] does not matter either", () => {
    const f = file(`[[listeners]\naddr = \n${GRPC}[firewall]\nblocked_ips = [\n`);
    expect(loadGrpcSection(f, {})?.addr).toEndWith("/admin.sock");
  });

  test("a syntax error inside [grpc] is the file's, placed", () => {
    const f = file(`[[listeners]]\naddr = ":1"\n[grpc]\naddr "x"\n`);
    expect(() => loadGrpcSection(f, {})).toThrow(/c\.toml:4:6: not valid TOML/);
  });

  test("the section's own problems are named; no [grpc] is null; MCPROXY_GRPC_* applies, other variables are not looked at", () => {
    expect(() => loadGrpcSection(file(`[grpc]\naddr = "127.0.0.1:1"\n`), {})).toThrow(/grpc\.tls_cert, grpc\.tls_key/);
    expect(loadGrpcSection(file(`[[listeners]]\naddr = ":1"\n`), {})).toBeNull();
    const g = loadGrpcSection(file(GRPC), { MCPROXY_GRPC_ADDR: "unix:/run/x.sock", MCPROXY_NOPE: "1" });
    expect(g?.addr).toBe("unix:/run/x.sock");
  });
});
