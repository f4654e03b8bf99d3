// A worker thread's entry point ([proxy] workers > 1): one EventLoop, driven
// by the control plane's commands and queries (loop_protocol.ts), answering
// each.
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

/** A command or a query this loop could not handle is a bug: say so (and answer), never die of it. */
function failed(l: EventLoop, what: string, err: unknown): string {
  const error = (err as Error).message;
  log?.error(`worker: ${what} failed`, { worker: l.workerId, error, stack: (err as Error).stack });
  log?.flush();
  return error;
}

self.onmessage = (e: MessageEvent<ToWorker>) => {
  const m = e.data;
  if (m.type === "init") return void start(m.init);
  const l = loop;
  if (l === null) return;
  switch (m.type) {
    case "command":
      try {
        return post({ type: "ack", seq: m.seq, ack: { ok: true, closed: l.apply(m.command) } });
      } catch (err) {
        const error = failed(l, `command ${m.command.type}`, err);
        return post({ type: "ack", seq: m.seq, ack: { ok: false, error } });
      }
    case "query":
      try {
        return post({ type: "answer", seq: m.seq, answer: l.answer(m.query) });
      } catch (err) {
        failed(l, `query ${m.query.type}`, err);
        return post({ type: "answer", seq: m.seq, answer: null });
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
