import { expect, test } from "bun:test";
import { Logger, SHED_ALL_CHARS, SHED_INFO_CHARS, logRecordsDropped } from "../../src/log/logger";

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
  lg.info("hello world", {
    a: "plain",
    b: "has space",
    c: 'q"uote',
    d: "new\nline",
    e: "",
    f: 42,
    g: null,
    h: ["x", "y"],
    i: undefined,
  });
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

/** A sink whose reader stalls until `drain()`: each flush answers with a Promise settled then (Bun's FileSink on a full pipe). */
function stalledSink() {
  const out: string[] = [];
  let stalled = true;
  let waiters: (() => void)[] = [];
  return {
    out,
    text: () => out.join(""),
    sink: {
      write: (t: string) => void out.push(t),
      flush: () => (stalled ? new Promise<void>((r) => waiters.push(r)) : undefined),
    },
    drain: async () => {
      stalled = false;
      for (const w of waiters) w();
      waiters = [];
      await Bun.sleep(0);
    },
  };
}

test("a stalled sink: what waits is bounded, info dropped first, warnings kept to the hard bound, one drop record once it drains", async () => {
  const s = stalledSink();
  const lg = new Logger("info", "json", s.sink);
  const before = logRecordsDropped();
  const pad = "x".repeat(1000);
  for (let i = 0; i < 6000; i++) lg.info("access", { i, pad });
  lg.flush();
  const afterInfo = s.text().length;
  expect(afterInfo).toBeLessThanOrEqual(SHED_INFO_CHARS);
  expect(afterInfo).toBeGreaterThan(SHED_INFO_CHARS - 2000);
  const droppedInfo = logRecordsDropped() - before;
  expect(droppedInfo).toBeGreaterThan(1500);
  // Warnings still pass, up to the hard bound; then they are dropped too.
  for (let i = 0; i < 6000; i++) lg.warn("trouble", { i, pad });
  expect(s.text().length).toBeLessThanOrEqual(SHED_ALL_CHARS);
  expect(s.text().length).toBeGreaterThan(SHED_ALL_CHARS - 2000);
  expect(s.text()).toContain('"msg":"trouble"');
  const dropped = logRecordsDropped() - before;
  expect(dropped).toBeGreaterThan(droppedInfo);
  expect(s.text()).not.toContain("log lines dropped");
  // The reader catches up: one record says how many were dropped, and records pass again.
  await s.drain();
  const recs = s
    .text()
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  const notes = recs.filter((r) => r.msg === "log lines dropped");
  expect(notes.length).toBe(1);
  expect(notes[0]).toMatchObject({ level: "warn", dropped });
  lg.info("after");
  lg.flush();
  expect(s.text()).toContain('"msg":"after"');
  // Every record was either written or counted: 12,000 logged, one note added.
  expect(recs.length - 1 + dropped).toBe(12_000);
});

test("a worker's batch forwarded to a stalled sink past the bound keeps its warnings and drops its access records", async () => {
  const s = stalledSink();
  const lg = new Logger("info", "text", s.sink);
  const worker = capture("text");
  const pad = "y".repeat(2000);
  for (let i = 0; i < 2500; i++) worker.lg.info("access", { i, pad });
  worker.lg.error("worker trouble", { pad });
  const batch = worker.text();
  lg.forward(batch);
  lg.forward(batch);
  lg.forward(batch);
  const got = s.text();
  expect(got.length).toBeLessThanOrEqual(SHED_INFO_CHARS + batch.length);
  expect(got.split('msg="worker trouble"').length - 1).toBe(3);
  await s.drain();
  expect(s.text()).toMatch(/level=warn msg="log lines dropped" dropped=\d+/);
});

test("a sink that keeps up drops nothing, however much is logged", () => {
  const before = logRecordsDropped();
  const { lg, text } = capture("json");
  const pad = "z".repeat(1000);
  for (let i = 0; i < 20_000; i++) lg.info("access", { i, pad });
  expect(text().split("\n").length - 1).toBe(20_000);
  expect(logRecordsDropped()).toBe(before);
});
