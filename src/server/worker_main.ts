// A worker thread's entry point ([proxy] workers > 1): one EventLoop, driven
// by the control plane's messages (loop_protocol.ts) and answering each.
// Its log lines go to the main thread, which writes them whole (no
// interleaved partial lines).
//
// Compiled into the binary as a second entry point (scripts/build.ts).

import { Logger } from "../log/logger";
import { EventLoop } from "./event_loop";
import type { FromWorker, LoopInit, ToWorker } from "./loop_protocol";
import { collectStartupGarbage } from "./startup_gc";

declare const self: Worker;
const post = (m: FromWorker) => self.postMessage(m);

let loop: EventLoop | null = null;
let log: Logger | null = null;

async function start(init: LoopInit): Promise<void> {
  const logger = (log = new Logger(init.config.log.level, init.config.log.format, {
    write: (text) => post({ type: "log", text }),
    flush: () => {},
  }));
  try {
    loop = new EventLoop(init, logger);
    collectStartupGarbage(logger, `worker ${init.id}`);
    await loop.start();
  } catch (e) {
    logger.flush();
    post({ type: "failed", error: (e as Error).message });
    return;
  }
  const l = loop;
  void l.done.then(() => {
    logger.flush();
    post({ type: "stopped", snapshot: l.localSnapshot() });
  });
  post({ type: "ready", thread: (require("node:worker_threads") as typeof import("node:worker_threads")).threadId });
}

self.onmessage = (e: MessageEvent<ToWorker>) => {
  const m = e.data;
  if (m.type === "init") return void start(m.init);
  const l = loop;
  if (l === null) return;
  switch (m.type) {
    case "change":
      try {
        return post({ type: "reply", seq: m.seq, reply: l.apply(m.change) });
      } catch (err) {
        // A change this loop could not apply is a bug: say so and answer, never die of it.
        log?.error("worker: applying a change failed", { worker: l.workerId, change: m.change.type, error: (err as Error).message, stack: (err as Error).stack });
        log?.flush();
        return post({ type: "reply", seq: m.seq, reply: {} });
      }
    case "drain":
      return l.shutdown();
    case "crash":
      // Fault injection for the tests (MC_PROXY_TEST_WORKER_CRASH): an uncaught error, as a bug would throw.
      setTimeout(() => {
        throw new Error(`worker ${l.workerId}: crash requested (test fault injection)`);
      }, 0);
      return;
  }
};
