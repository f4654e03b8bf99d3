// The relay before the backend's first byte: what may be replayed to
// another backend, and when. A backend that closes or resets before
// answering, having received only the ClientHello, may be replaced by the
// next backend of the pool (the owner's retryEmpty); one that received
// client data past the hello must not be — those bytes never go to a second
// backend, and the client is reset (outcome backend_closed).

import { Relay } from "../relay/relay";
import type { Outcome } from "./stats";

export abstract class ReplayingRelay extends Relay {
  /** The bytes replayed to the current backend, while a retry is still possible. */
  protected replay: Uint8Array | null = null;
  /**
   * A retry was possible but the backend has been sent client bytes beyond
   * the ClientHello (early data, a request): if it closes without answering,
   * those bytes must not go to a second backend — the client is reset
   * (outcome backend_closed) instead.
   */
  protected unsafeRetry = false;
  /** The outcome to record instead of the relay's own (a reset the proxy chose). */
  protected outcomeOverride: Outcome | null = null;

  /** Try the next backend after an empty failure; false when that is not safe or not possible. */
  protected abstract retryEmpty(): boolean;

  /**
   * The backend closed before its first byte after it was sent client data
   * that no other backend may receive: reset the client (it may retry the
   * request itself, knowing it was not answered).
   */
  private resetUnanswered(): boolean {
    if (!this.unsafeRetry || this.bytesFromBackend !== 0 || this.finished) return false;
    this.outcomeOverride = "backend_closed";
    this.resetBoth("backend");
    return true;
  }

  override backendData(chunk: Uint8Array): void {
    this.replay = null;
    this.unsafeRetry = false;
    super.backendData(chunk);
  }

  override backendEnd(): void {
    if (this.retryEmpty() || this.resetUnanswered()) return;
    super.backendEnd();
  }

  override backendWriteFailed(): void {
    if (this.retryEmpty() || this.resetUnanswered()) return;
    super.backendWriteFailed();
  }

  override socketClosed(side: "client" | "backend" | "proxy", error: Error | undefined): void {
    if (side === "backend" && (this.retryEmpty() || this.resetUnanswered())) return;
    super.socketClosed(side, error);
  }

  override clientData(chunk: Uint8Array): void {
    // Bytes beyond the replay: a later backend could not be given them again.
    if (this.replay !== null) {
      this.replay = null;
      this.unsafeRetry = true;
    }
    super.clientData(chunk);
  }
}
