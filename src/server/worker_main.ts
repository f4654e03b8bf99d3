// A worker thread's entry point ([proxy] workers > 1): one event loop running
// the whole data path (Server, bound with SO_REUSEPORT), driven by messages
// from the WorkerPool in the main thread. Its log lines go to the main
// thread, which writes them whole (no interleaved partial lines).
//
// Compiled into the binary as a second entry point (scripts/build.ts).

import { Logger } from "../log/logger";
import { BackendTable } from "../routing/backend_table";
import { Server } from "./server";
import { SharedCounters } from "./shared_counters";
import { collectStartupGarbage } from "./startup_gc";
import type { FromWorker, ToWorker, WorkerInit } from "./worker_protocol";

declare const self: Worker & { threadId?: number };
const post = (m: FromWorker) => self.postMessage(m);

let server: Server | null = null;
let log: Logger | null = null;

function start(init: WorkerInit): void {
  const logger = (log = new Logger(init.config.log.level, init.config.log.format, {
    write: (text) => post({ type: "log", text }),
    flush: () => {},
  }));
  try {
    server = new Server(init.config, logger, {
      histograms: init.histograms,
      workerId: init.id,
      counters: new SharedCounters(init.config.listeners.length, init.workers, init.counters),
      connectionCap: init.connectionCap,
      rateBuffer: init.rateBuffer ?? undefined,
      geoipData: init.geoipData ?? undefined,
      reusePort: true,
      shared: { backends: new BackendTable(undefined, init.workers, init.backends), tables: init.tables },
    });
    collectStartupGarbage(logger, `worker ${init.id}`);
    server.start();
  } catch (e) {
    logger.flush();
    post({ type: "failed", error: (e as Error).message });
    return;
  }
  const s = server;
  void s.done.then(() => {
    logger.flush();
    post({ type: "stopped", snapshot: s.localSnapshot() });
  });
  post({ type: "ready", thread: (require("node:worker_threads") as typeof import("node:worker_threads")).threadId });
}

self.onmessage = (e: MessageEvent<ToWorker>) => {
  const m = e.data;
  if (m.type === "init") return start(m);
  const s = server;
  if (s === null) return;
  try {
    handle(s, m);
  } catch (err) {
    // A change this loop could not apply is a bug: say so and answer, never die of it.
    log?.error("worker: applying a change failed", { worker: s.workerId, change: m.type, error: (err as Error).message, stack: (err as Error).stack });
    log?.flush();
    if ("seq" in m) post({ type: "ack", seq: m.seq });
  }
};

function handle(s: Server, m: Exclude<ToWorker, { type: "init" }>): void {
  switch (m.type) {
    case "routes":
      s.setRoutes(m.listener, m.routes);
      return post({ type: "ack", seq: m.seq });
    case "reset-backend":
      return post({ type: "ack", seq: m.seq, count: s.resetBackend({ slot: m.slot, gen: m.gen }) });
    case "rules":
      s.firewall.replaceRules(m.rules);
      return post({ type: "ack", seq: m.seq });
    case "geoip":
      s.firewall.useGeoIp(m.data);
      return post({ type: "ack", seq: m.seq });
    case "snapshot":
      return post({ type: "snapshot", seq: m.seq, snapshot: s.localSnapshot() });
    case "drain":
      return s.shutdown();
    case "crash":
      // Fault injection for the tests (MC_PROXY_TEST_WORKER_CRASH): an uncaught error, as a bug would throw.
      setTimeout(() => {
        throw new Error(`worker ${s.workerId}: crash requested (test fault injection)`);
      }, 0);
      return;
  }
}
