import { expect, test } from "bun:test";
import { DeadlineWheel, type Timed } from "../../src/relay/deadline_wheel";

interface Item extends Timed {
  id: number;
}

function item(id: number, deadline: number): Item {
  return { id, deadline, wheelSlot: null };
}

test("fires each item once, no earlier than its deadline and within one tick", () => {
  const fired: [number, number][] = [];
  let now = 1_000_000;
  const w = new DeadlineWheel<Item>(
    100,
    (it) => fired.push([it.id, now]),
    () => now,
  );
  const a = item(1, now + 250);
  const b = item(2, now + 1000);
  w.schedule(a);
  w.schedule(b);
  for (let t = 0; t < 1500; t += 10) {
    now += 10;
    w.advance(now);
  }
  expect(fired.map((f) => f[0])).toEqual([1, 2]);
  expect(fired[0]![1]).toBeGreaterThanOrEqual(1_000_250);
  expect(fired[0]![1]).toBeLessThanOrEqual(1_000_350);
  expect(fired[1]![1]).toBeLessThanOrEqual(1_001_100);
});

test("moving a deadline forward (traffic) postpones the expiry without re-filing", () => {
  const fired: number[] = [];
  let now = 0;
  const w = new DeadlineWheel<Item>(
    100,
    (_it) => fired.push(now),
    () => now,
  );
  const a = item(1, 500);
  w.schedule(a);
  for (now = 0; now <= 5000; now += 50) {
    if (now < 2000) a.deadline = now + 500; // touched on every step until t=2000
    w.advance(now);
  }
  expect(fired.length).toBe(1);
  expect(fired[0]!).toBeGreaterThanOrEqual(2450);
  expect(fired[0]!).toBeLessThanOrEqual(2600);
});

test("deadlines beyond one wheel turn still fire on time", () => {
  const fired: number[] = [];
  let now = 0;
  const w = new DeadlineWheel<Item>(
    100,
    () => fired.push(now),
    () => now,
  );
  w.schedule(item(1, 5 * 60_000)); // 5 minutes: several turns of a 512 × 100 ms wheel
  for (now = 0; now <= 6 * 60_000; now += 100) w.advance(now);
  expect(fired).toEqual([300_000]);
});

test("cancel prevents the expiry; a long stall still fires what is due", () => {
  const fired: number[] = [];
  let now = 0;
  const w = new DeadlineWheel<Item>(
    100,
    (it) => fired.push(it.id),
    () => now,
  );
  const a = item(1, 300);
  const b = item(2, 400);
  w.schedule(a);
  w.schedule(b);
  w.cancel(a);
  now = 100_000; // the event loop was blocked for 100 s
  w.advance(now);
  expect(fired).toEqual([2]);
});

test("after(): a deadline set from the coarse clock never fires early", () => {
  let real = 1_000_000;
  const fired: number[] = [];
  const w = new DeadlineWheel<Item>(
    100,
    () => fired.push(real),
    () => real,
  );
  // The wheel's clock was last updated 99 ms ago.
  w.advance(real);
  real += 99;
  const it = item(1, w.after(500));
  const setAt = real;
  w.schedule(it);
  for (; real < setAt + 1000; real += 10) w.advance(real);
  expect(fired.length).toBe(1);
  expect(fired[0]! - setAt).toBeGreaterThanOrEqual(500);
  expect(fired[0]! - setAt).toBeLessThanOrEqual(500 + 200);
});
