// One full garbage collection when a thread has finished starting.
//
// Start-up (parsing the config and the admin .proto, opening the database,
// building the tables, compiling code) leaves garbage that nothing collects
// until the heap's own timer fires some 10 s later: measured, a two-worker
// process sat ~8.6 MiB above its steady RSS (86.0 against 77.4 MiB) for
// those seconds, and a memory reading taken then is off by that much. One
// blocking collection per thread at the end of start-up costs a few
// milliseconds once (2–5 ms per worker, 8–10 ms on the main thread): a
// worker runs it before it starts listening; the main thread after its
// admin API is up, so with workers = 1 connections that arrive meanwhile
// wait those milliseconds in the accept queue.

import type { Logger } from "../log/logger";

export function collectStartupGarbage(logger: Logger, thread: string): void {
  const t0 = performance.now();
  Bun.gc(true);
  logger.debug("start-up garbage collected", { thread, ms: Math.round((performance.now() - t0) * 10) / 10 });
}
