import { expect, test } from "bun:test";
import { Logger } from "../../src/log/logger";

function capture(format: "text" | "json", level: "debug" | "info" | "warn" | "error" = "info") {
  const out: string[] = [];
  const lg = new Logger(level, format, { write: (t) => void out.push(t), flush() {} });
  return {
    lg,
    text: () => {
      lg.flush();
      return out.join("");
    },
  };
}

test("logfmt: plain values bare, awkward ones quoted and escaped, one line per record", () => {
  const { lg, text } = capture("text");
  lg.info("hello world", { a: "plain", b: "has space", c: 'q"uote', d: "new\nline", e: "", f: 42, g: null, h: ["x", "y"], i: undefined });
  const line = text();
  expect(line.split("\n").length).toBe(2);
  expect(line).toMatch(/^time=\d{4}-\d\d-\d\dT[\d:.]+Z level=info msg="hello world" /);
  expect(line).toContain(' a=plain b="has space" c="q\\"uote" d="new\\nline" e="" f=42 g= h=x,y\n');
  expect(line).not.toContain(" i=");
});

test("json: one object per line with time, level, msg and the fields", () => {
  const { lg, text } = capture("json");
  lg.warn("careful", { n: 1, s: 'a"b', list: ["h2"] });
  const rec = JSON.parse(text().trim());
  expect(rec).toMatchObject({ level: "warn", msg: "careful", n: 1, s: 'a"b', list: ["h2"] });
  expect(typeof rec.time).toBe("string");
});

test("emit takes pre-formatted fields in the logger's format", () => {
  const j = capture("json");
  j.lg.emit("info", "access", ',"outcome":"ok","bytes_in":5');
  expect(JSON.parse(j.text().trim())).toMatchObject({ msg: "access", outcome: "ok", bytes_in: 5 });
  const t = capture("text");
  t.lg.emit("info", "access", " outcome=ok");
  expect(t.text()).toMatch(/ msg=access outcome=ok\n$/);
});

test("levels below the minimum are dropped", () => {
  const { lg, text } = capture("text", "warn");
  lg.info("no");
  lg.debug("no");
  lg.error("yes");
  const out = text();
  expect(out).toContain("msg=yes");
  expect(out).not.toContain("msg=no");
  expect(lg.enabled("info")).toBe(false);
});
