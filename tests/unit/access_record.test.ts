// The ALPN list as an access record writes it (src/server/access_record.ts clipAlpn).
import { expect, test } from "bun:test";
import { clipAlpn } from "../../src/server/access_record";

test("up to 8 names of up to 32 characters are written as offered, the same array", () => {
  const a = ["h3", "h2", "http/1.1", "x".repeat(32), "a", "b", "c", "d"];
  expect(clipAlpn(a)).toBe(a);
  expect(clipAlpn([])).toEqual([]);
});

test("past 8 names, a …+N marker; past 32 characters, a name is clipped", () => {
  expect(clipAlpn(Array(8000).fill("%01"))).toEqual([...Array(8).fill("%01"), "…+7992"]);
  expect(clipAlpn(["h3", "y".repeat(40)])).toEqual(["h3", `${"y".repeat(32)}…`]);
  expect(clipAlpn(Array.from({ length: 9 }, (_, i) => `${"z".repeat(33)}${i}`))).toEqual([
    ...Array(8).fill(`${"z".repeat(32)}…`),
    "…+1",
  ]);
});
