// Binding an address another process is letting go of: in a takeover the
// old process closes its admin API, metrics, takeover socket and UDP
// listeners only at the handover, and the new one binds them right after.
// One retry loop for all of them.

/** Errors that mean "someone else still holds it": worth another try. */
const IN_USE = /EADDRINUSE|in use|another mc-proxy|address already/i;

/** Run `bind` until it succeeds, retrying an address in use every 25 ms for up to `retryMs` (0: once). */
export async function bindRetrying<T>(retryMs: number, bind: () => T | Promise<T>): Promise<T> {
  const end = Date.now() + retryMs;
  for (;;) {
    try {
      return await bind();
    } catch (e) {
      if (Date.now() >= end || !IN_USE.test((e as Error).message)) throw e;
      await Bun.sleep(25);
    }
  }
}
