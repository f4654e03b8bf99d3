// The descriptor budget as the docs state it is the one the code computes
// (src/server/host_limits.ts reservedFds / connectionCap): RUNBOOK.md §12's
// examples and docs/SECURITY.md "Connection cap from the open-file limit".
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { type FdNeeds, MIN_NEEDS, connectionCap, reservedFds } from "../../src/server/host_limits";

const ROOT = join(import.meta.dir, "../..");
const read = (f: string) => readFileSync(join(ROOT, f), "utf8").replace(/\s+/g, " ");
const num = (s: string) => Number(s.replaceAll(",", ""));

test("RUNBOOK: the cap is ⌊(LimitNOFILE − reserve) / 2⌋, and its two examples are what connectionCap gives", () => {
  const runbook = read("RUNBOOK.md");
  expect(runbook).toContain("⌊(LimitNOFILE − reserve) / 2⌋");
  const m =
    /`LimitNOFILE=(\d+)`, one listener on two workers with the admin API and metrics keeps back ([\d,]+) \(cap ([\d,]+)\); once a pool may retry, ([\d,]+) \(cap ([\d,]+)\)/.exec(
      runbook,
    );
  expect(m).not.toBeNull();
  const soft = num(m![1]!);
  const needs: FdNeeds = { ...MIN_NEEDS, loops: 2, listeners: 1, admin: true, metrics: true };
  const retrying: FdNeeds = { ...needs, retries: true };
  const limits = { soft, hard: soft };
  expect([num(m![2]!), num(m![3]!)]).toEqual([reservedFds(needs, soft), connectionCap(limits, needs)]);
  expect([num(m![4]!), num(m![5]!)]).toEqual([reservedFds(retrying, soft), connectionCap(limits, retrying)]);
  // The unit the RUNBOOK speaks of sets that limit.
  expect(readFileSync(join(ROOT, "examples/systemd/mc-proxy.service"), "utf8")).toContain(`LimitNOFILE=${soft}`);
});

test("SECURITY.md: the formula, and its worked numbers, are the code's", () => {
  const doc = read("docs/SECURITY.md");
  expect(doc).toContain("connection_cap = ⌊(nofile − reserve) / 2⌋");
  // "A single loop with one listener and nothing else keeps back 23".
  const single = /A single loop with one listener and nothing else keeps back (\d+)/.exec(doc);
  expect(num(single![1]!)).toBe(reservedFds(MIN_NEEDS, 256));
  // "with nofile=256 … (two workers: reserve 30), 113 are served"; "nofile=1024 … (497 served)".
  const two: FdNeeds = { ...MIN_NEEDS, loops: 2 };
  const measured = /`nofile=256`.*?\(two workers: reserve (\d+)\), (\d+) are served/.exec(doc);
  expect(num(measured![1]!)).toBe(reservedFds(two, 256));
  expect(num(measured![2]!)).toBe(connectionCap({ soft: 256, hard: 256 }, two));
  const big = /`nofile=1024` with [\d,]+ clients \((\d+) served\)/.exec(doc);
  expect(num(big![1]!)).toBe(connectionCap({ soft: 1024, hard: 1024 }, two));
});
