// Firewall rules on JA4: the shape of each part, and exact and pattern matching.
import { describe, expect, test } from "bun:test";
import { Ja4Rules, parseJa4Rule } from "../../src/firewall/ja4_rule";
import { parseRoutedConfig } from "../../src/routing/route_config";
import { parseEntry } from "../../src/store/etcd_layout";

const FP = "t13d1516h2_8daaf6152771_e5627efa2ab1";

describe("ja4 rules", () => {
  test("exact fingerprints and part-wise patterns are accepted; every malformed part is named", () => {
    for (const ok of [
      FP,
      "t13d*_8daaf6152771_*",
      "*_8daaf6152771_*",
      "t12*_*_e5627efa2ab1",
      "q13i0000000_000000000000_000000000000".replace("0000000", "000000"),
      "t13d1516h2_8daa*_*",
    ])
      expect(parseJa4Rule(ok)).toEqual({ ok: true, value: ok });
    expect(parseJa4Rule("*_*_*")).toEqual({ ok: false, error: expect.stringContaining("every client") });
    expect(parseJa4Rule("t13d1516h2_8daaf6152771")).toEqual({
      ok: false,
      error: expect.stringContaining("three parts"),
    });
    expect(parseJa4Rule("t13d1516h2_8DAAF6152771_e5627efa2ab1")).toEqual({
      ok: false,
      error: expect.stringContaining("part b"),
    });
    expect(parseJa4Rule("x13d1516h2_8daaf6152771_e5627efa2ab1")).toEqual({
      ok: false,
      error: expect.stringContaining("part a"),
    });
    expect(parseJa4Rule("t13d1516h2_8daaf6152771_e5627efa2ab")).toEqual({
      ok: false,
      error: expect.stringContaining("part c"),
    });
    expect(parseJa4Rule("t1*3d_8daaf6152771_*")).toEqual({
      ok: false,
      error: expect.stringContaining("only at its end"),
    });
    expect(parseJa4Rule(`${"a".repeat(100)}_*_*`)).toEqual({ ok: false, error: expect.stringContaining("part a") });
  });

  test("matching: exact, prefix parts, whole-part wildcards; nothing matches the empty fingerprint", () => {
    const r = new Ja4Rules([FP, "t12*_*_*", "*_aaaaaaaaaaaa_*"]);
    expect(r.matches(FP)).toBe(true);
    expect(r.matches("t13d1516h2_8daaf6152771_000000000000")).toBe(false);
    expect(r.matches("t12d2807h1_d943125447b4_e7e480e5a997")).toBe(true);
    expect(r.matches("t13i0000h1_aaaaaaaaaaaa_e7e480e5a997")).toBe(true);
    expect(r.matches("")).toBe(false);
    expect(new Ja4Rules(["t13d*_8daaf6152771_*"]).matches(FP)).toBe(true);
    expect(new Ja4Rules(["t13i*_8daaf6152771_*"]).matches(FP)).toBe(false);
  });

  test("the same validator for the config file and etcd values", () => {
    const cfg = parseRoutedConfig(
      `[[listeners]]\naddr = "127.0.0.1:21443"\n[firewall]\nblocked_ja4 = ["${FP}", "t12*_*_*"]\n`,
      "t.toml",
    );
    expect(cfg.firewall.blockedJa4).toEqual([FP, "t12*_*_*"]);
    expect(() =>
      parseRoutedConfig(`[[listeners]]\naddr = "127.0.0.1:21443"\n[firewall]\nblocked_ja4 = ["*_*_*"]\n`, "t.toml"),
    ).toThrow(/blocked_ja4\[0\]/);
    expect(parseEntry("/p/", `/p/rules/ja4/${encodeURIComponent("t12*_*_*")}`, '{"version":1}')).toEqual({
      kind: "rule",
      rule: { type: "ja4", value: "t12*_*_*" },
      keep: false,
    });
    expect(parseEntry("/p/", "/p/rules/ja4/nope", '{"version":1}')).toMatchObject({ kind: "invalid" });
  });
});

test("SQLite keeps ja4 rules (schema 6) beside the others", async () => {
  const { SqliteDatabase } = await import("../../src/store/sqlite_database");
  const { tempDir } = await import("../helpers/proxy");
  const s = SqliteDatabase.open(`${tempDir()}/r.db`);
  try {
    expect(s.addRule({ type: "ja4", value: FP }).changed).toBe(true);
    expect(s.addRule({ type: "ip", value: "192.0.2.1" }).rules).toEqual([
      { type: "ip", value: "192.0.2.1" },
      { type: "ja4", value: FP },
    ]);
    expect(s.removeRule({ type: "ja4", value: FP }).changed).toBe(true);
  } finally {
    s.close();
  }
});
