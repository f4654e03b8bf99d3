// The relay before the backend's first byte: what may be replayed to
// another backend, and when. A backend that closes or resets before
// answering, having received only the ClientHello, may be replaced by the
// next backend of the pool (its owner's retryEmpty); one that received
// client data past the hello must not be — those bytes never go to a second
// backend, and the client is reset (outcome backend_closed).

import { type PeerSocket, Relay, type RelayOwner } from "../relay/relay";
import type { Outcome } from "./stats";

/** The relay's owner, which can also move on to another backend (connection.ts). */
export interface ReplayOwner extends RelayOwner {
  /** Try the next backend after an empty failure; false when that is not safe or not possible. */
  retryEmpty(): boolean;
}

export class ReplayingRelay extends Relay {
  /** The bytes replayed to the current backend, while a retry is still possible. */
  private replay: Uint8Array | null = null;
  /**
   * A retry was possible but the backend has been sent client bytes beyond
   * the ClientHello (early data, a request): if it closes without answering,
   * those bytes must not go to a second backend — the client is reset
   * (outcome backend_closed) instead.
   */
  private unsafeRetry = false;
  /** The outcome to record instead of the relay's own (a reset the proxy chose). */
  outcomeOverride: Outcome | null = null;

  constructor(
    client: PeerSocket,
    protected override readonly owner: ReplayOwner,
  ) {
    super(client, owner);
  }

  /**
   * Start relaying to `backend`, `bytes` first (the peeked bytes). Kept
   * until the backend's first byte when another backend may be tried
   * (`canRetry`): if it closes or resets before that, the same bytes go to
   * the next one (the owner's retryEmpty) — only when they are the
   * ClientHello alone (`helloOnly`), never a client's data.
   */
  startWith(
    backend: PeerSocket,
    bytes: Uint8Array,
    helloOnly: boolean,
    canRetry: boolean,
    clientPaused: boolean,
    preamble: Uint8Array | null,
  ): void {
    this.replay = canRetry && helloOnly ? bytes : null;
    this.unsafeRetry = canRetry && this.replay === null;
    this.start(backend, bytes, clientPaused, preamble);
  }

  /** Drop the current backend to try the next with `replay` (emptyReplay): nothing from it reached the client. */
  abandonForRetry(replay: Uint8Array): void {
    this.replay = null;
    this.abandonBackend(replay.length);
  }

  /**
   * The replay, when a retry may resend it: the backend has sent nothing,
   * took the replay whole and nothing more, and the client is still open;
   * null otherwise.
   */
  get emptyReplay(): Uint8Array | null {
    const r = this.replay;
    if (r === null || this.bytesFromBackend !== 0 || this.finished || this.clientEof || !this.backendWritesDone)
      return null;
    return this.bytesFromClient === r.length ? r : null;
  }

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
    if (this.owner.retryEmpty() || this.resetUnanswered()) return;
    super.backendEnd();
  }

  override backendWriteFailed(): void {
    if (this.owner.retryEmpty() || this.resetUnanswered()) return;
    super.backendWriteFailed();
  }

  override socketClosed(side: "client" | "backend" | "proxy", error: Error | undefined): void {
    if (side === "backend" && (this.owner.retryEmpty() || this.resetUnanswered())) return;
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
