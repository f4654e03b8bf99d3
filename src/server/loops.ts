// The control plane's handles on its event loops. One interface, two homes:
// a loop in this thread (workers = 1: no message crosses a thread, no second
// heap) or a worker thread (worker_main.ts). Either way a command goes
// through EventLoop.apply and a query through EventLoop.answer, so each is
// written once.

import type { Logger } from "../log/logger";
import { EventLoop } from "./event_loop";
import type {
  Ack,
  FromWorker,
  LoopCommand,
  LoopInit,
  LoopQuery,
  LoopReply,
  QueryType,
  ToWorker,
} from "./loop_protocol";
import type { Snapshot } from "./snapshot";

/** How long a command or a query waits for a worker before giving up on it. */
const REPLY_TIMEOUT_MS = 3000;

/** What a loop tells its owner. */
export interface LoopEvents {
  /** Drained and stopped: its last counters. */
  stopped(snapshot: Snapshot): void;
  /** A worker thread ended without being asked (an uncaught error, or killed). */
  died(): void;
}

export interface Loop {
  /** The thread it runs on (0: the main thread). */
  readonly thread: number;
  /** Start it: resolves with an error message, or null once it listens. */
  start(): Promise<string | null>;
  /** Apply a command; an error when the loop failed applying it, died or did not answer. */
  command(c: LoopCommand): Promise<Ack>;
  /** Ask it; null when the loop died or did not answer. */
  query<K extends QueryType>(q: LoopQuery<K>): Promise<LoopReply<K> | null>;
  /** Stop accepting, finish open connections within shutdown_timeout, then report stopped. */
  drain(): void;
  /** End it now (after stopped, or on a failed start). */
  terminate(): void;
  /** Test fault injection: an uncaught error in a worker thread. */
  crash(): void;
}

const NOT_STARTED: Ack = { ok: false, error: "the loop has not started" };

/** The loop in the main thread. */
export class InThreadLoop implements Loop {
  readonly thread = 0;
  private loop: EventLoop | null = null;

  constructor(
    private readonly init: LoopInit,
    private readonly logger: Logger,
    private readonly events: LoopEvents,
  ) {}

  async start(): Promise<string | null> {
    try {
      const loop = new EventLoop(this.init, this.logger);
      await loop.start();
      this.loop = loop;
      void loop.done.then(() => this.events.stopped(loop.localSnapshot()));
      return null;
    } catch (e) {
      return (e as Error).message;
    }
  }

  /** A command this loop fails applying throws here, in the caller's thread, as a bug should. */
  async command(c: LoopCommand): Promise<Ack> {
    return this.loop === null ? NOT_STARTED : { ok: true, closed: this.loop.apply(c) };
  }

  async query<K extends QueryType>(q: LoopQuery<K>): Promise<LoopReply<K> | null> {
    return this.loop === null ? null : this.loop.answer(q);
  }

  drain(): void {
    this.loop?.shutdown();
  }

  terminate(): void {}

  crash(): void {}
}

/**
 * The worker's entry point. From source it sits beside this file. In the
 * compiled binary the bundle is one module at the root of Bun's embedded file
 * system, and the extra entry point (scripts/build.ts) keeps its path below
 * the entry points' common folder, src/ — measured: "./server/worker_main.ts"
 * resolves there, while the URL relative to this module does not.
 */
const WORKER_ENTRY = import.meta.url.startsWith("file:///$bunfs/")
  ? "./server/worker_main.ts"
  : new URL("./worker_main.ts", import.meta.url).href;

/** A command or a query sent to a worker, waiting for its answer (its `seq`). */
type Waiter = { settle: (m: Reply | null) => void; timer: ReturnType<typeof setTimeout> };

type Reply = Extract<FromWorker, { type: "ack" | "answer" }>;

/**
 * A loop in a worker thread. Messages to one worker keep their order, so a
 * change sent while it is still starting is applied right after its init:
 * a change reaches every loop that will serve before the caller is answered.
 */
export class WorkerLoop implements Loop {
  thread = 0;
  private readonly worker: Worker;
  private seq = 0;
  private readonly waiters = new Map<number, Waiter>();
  private settleStart: ((r: string | null) => void) | null = null;
  private stopping = false;
  private ended = false;

  constructor(
    private readonly init: LoopInit,
    private readonly logger: Logger,
    private readonly events: LoopEvents,
  ) {
    this.worker = new Worker(WORKER_ENTRY);
  }

  start(): Promise<string | null> {
    const w = this.worker;
    const started = new Promise<string | null>((resolve) => (this.settleStart = resolve));
    w.onmessage = (e: MessageEvent<FromWorker>) => this.onMessage(e.data);
    w.addEventListener("error", (e) =>
      this.logger.error("worker error", { worker: this.init.id, error: (e as ErrorEvent).message }),
    );
    w.addEventListener("close", () => this.onClose());
    this.post({ type: "init", init: this.init });
    return started;
  }

  private settle(r: string | null): void {
    this.settleStart?.(r);
    this.settleStart = null;
  }

  private onMessage(m: FromWorker): void {
    switch (m.type) {
      case "log":
        return this.logger.forward(m.text);
      case "ready":
        this.thread = m.thread;
        return this.settle(null);
      case "failed":
        this.stopping = true;
        this.worker.terminate();
        return this.settle(`worker ${this.init.id}: ${m.error}`);
      case "stopped":
        this.stopping = true;
        this.events.stopped(m.snapshot);
        this.worker.terminate();
        return;
      case "ack":
      case "answer": {
        const waiter = this.waiters.get(m.seq);
        if (waiter === undefined) return;
        this.waiters.delete(m.seq);
        clearTimeout(waiter.timer);
        waiter.settle(m);
      }
    }
  }

  private onClose(): void {
    if (this.ended) return;
    this.ended = true;
    for (const [seq, waiter] of this.waiters) {
      this.waiters.delete(seq);
      clearTimeout(waiter.timer);
      waiter.settle(null);
    }
    this.settle(`worker ${this.init.id} exited while starting`);
    if (!this.stopping) this.events.died();
  }

  private post(m: ToWorker): void {
    this.worker.postMessage(m);
  }

  async command(command: LoopCommand): Promise<Ack> {
    const m = await this.ask((seq) => ({ type: "command", seq, command }));
    if (m?.type === "ack") return m.ack;
    return { ok: false, error: this.ended ? "the worker exited" : "the worker did not answer" };
  }

  async query<K extends QueryType>(query: LoopQuery<K>): Promise<LoopReply<K> | null> {
    const m = await this.ask((seq) => ({ type: "query", seq, query }));
    // The worker answers a query's seq with EventLoop.answer of that query (worker_main.ts).
    return m?.type === "answer" ? (m.answer as LoopReply<K> | null) : null;
  }

  /** Post a message numbered with the next seq; resolves with the worker's reply to it, or null. */
  private ask(message: (seq: number) => ToWorker): Promise<Reply | null> {
    if (this.ended) return Promise.resolve(null);
    const seq = ++this.seq;
    return new Promise((settle) => {
      const timer = setTimeout(() => {
        this.waiters.delete(seq);
        this.logger.warn("worker did not answer", { worker: this.init.id, timeout_ms: REPLY_TIMEOUT_MS });
        settle(null);
      }, REPLY_TIMEOUT_MS);
      this.waiters.set(seq, { settle, timer });
      this.post(message(seq));
    });
  }

  drain(): void {
    if (!this.ended) this.post({ type: "drain" });
  }

  terminate(): void {
    this.stopping = true;
    this.worker.terminate();
  }

  crash(): void {
    if (!this.ended) this.post({ type: "crash" });
  }
}
