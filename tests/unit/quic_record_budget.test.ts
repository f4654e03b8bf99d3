// The access records of QUIC refusals after the hello: a token bucket, the rest summed (src/quic/record_budget.ts).
import { expect, test } from "bun:test";
import { RecordBudget } from "../../src/quic/record_budget";

test("a burst of 200, then 100 a second; what is not logged is summed by outcome, once", () => {
  const b = new RecordBudget<string>(100, 200, 0);
  let logged = 0;
  for (let i = 0; i < 1000; i++) if (b.take(i % 4 === 0 ? "route_denied" : "no_route", 0)) logged++;
  expect(logged).toBe(200);
  expect(b.drain()).toEqual({ no_route: 600, route_denied: 200 });
  expect(b.drain()).toBeNull();
  // Half a second refills 50.
  logged = 0;
  for (let i = 0; i < 100; i++) if (b.take("no_route", 500)) logged++;
  expect(logged).toBe(50);
  expect(b.drain()).toEqual({ no_route: 50 });
  // A long quiet spell refills the burst, not more.
  logged = 0;
  for (let i = 0; i < 1000; i++) if (b.take("no_route", 60_000)) logged++;
  expect(logged).toBe(200);
});

test("a clock that goes back adds nothing", () => {
  const b = new RecordBudget<string>(100, 1, 1000);
  expect(b.take("x", 1000)).toBe(true);
  expect(b.take("x", 0)).toBe(false);
  expect(b.take("x", 1005)).toBe(false);
  expect(b.take("x", 1010)).toBe(true);
});
