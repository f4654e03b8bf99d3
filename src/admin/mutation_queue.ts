// Mutations run one at a time, in arrival order. The data plane never waits
// on the store (docs/ADMIN_API.md "Persistence"): a write that meets another
// process's SQLite lock fails at once and is retried from a timer, off the
// event loop's critical path, for up to LOCK_WAIT_MS; then the RPC is
// UNAVAILABLE and nothing has changed.
import { status } from "@grpc/grpc-js";
import type { Logger } from "../log/logger";
import { StoreError } from "../store/config_store";
import { AdminError } from "./admin_error";

/** How long a mutation keeps retrying while another process holds the database's write lock. */
export const LOCK_WAIT_MS = 5000;
const RETRY_MS = 25;

export class MutationQueue {
  /** Mutations in arrival order: each starts when the previous one has finished. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly logger: Logger) {}

  /**
   * Run `write` after every earlier mutation, retrying while another process
   * holds the database lock. The database part of each attempt is
   * synchronous (bun:sqlite with busy_timeout 0), so it never blocks the loop
   * for more than one write; applying the result to the data plane may wait
   * for every worker to confirm. A store failure becomes an AdminError.
   */
  run<T>(write: () => Promise<T>): Promise<T> {
    const run = async (): Promise<T> => {
      const giveUpAt = performance.now() + LOCK_WAIT_MS;
      for (;;) {
        try {
          return await write();
        } catch (e) {
          if (!(e instanceof StoreError)) throw e;
          if (e.busy && performance.now() < giveUpAt) {
            await Bun.sleep(RETRY_MS);
            continue;
          }
          this.logger.error("admin: store write failed; nothing changed", { error: e.message });
          if (e.busy)
            throw new AdminError(
              status.UNAVAILABLE,
              `database is locked by another process (waited ${LOCK_WAIT_MS} ms); nothing changed, retry: ${e.message}`,
            );
          if (e.unavailable) throw new AdminError(status.UNAVAILABLE, e.message);
          if (e.notApplied) throw new AdminError(status.DEADLINE_EXCEEDED, e.message);
          throw new AdminError(status.INTERNAL, e.message, "the database write failed; nothing changed");
        }
      }
    };
    const next = this.queue.then(run, run);
    this.queue = next.catch(() => {});
    return next;
  }
}
