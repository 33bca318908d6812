/**
 * The seed server's side of super-seeding: it is the one place that knows exactly which pieces
 * it has already sent, so it decides whether a request gets a first copy, a substitute, or
 * "fetch it from peers".
 *
 * - A request for a piece never sent is served.
 * - A request for a piece already sent, while unsent pieces remain, gets an unsent piece
 *   instead (`substitute`, BEP 16's idea: the seed picks), or — without substitution — a
 *   redirect ("fetch it from peers").
 * - Once every piece went out, repeats are served only while the send backlog is short
 *   (`repeatBacklogMs`): spare upload helps the swarm, but never delays a first copy or makes a
 *   fetcher wait on the seed for what peers can give.
 * - Above `maxBacklogMs` of queued data every request is refused as busy, with a retry time,
 *   so that what is queued is never stale by seconds.
 *
 * With `coordinate: false` it is a plain server (serve everything asked, busy above the backlog).
 *
 * @module
 */

import { busyFor } from "../serving/backlog_gate.ts";

/** What the server does with one request. */
export type SeedAnswer =
  /** Send the piece asked for. */
  | { kind: "serve"; piece: number; firstCopy: boolean }
  /** Send `piece` instead of the one asked for (an unsent one). */
  | { kind: "substitute"; piece: number }
  /** Already sent: fetch it from peers (retry the server after `retryAfterMs`). */
  | { kind: "redirect"; retryAfterMs: number }
  /** Too much queued: retry after `retryAfterMs`. */
  | { kind: "busy"; retryAfterMs: number };

/** Tuning of {@link SeedLedger}. */
export interface SeedLedgerOptions {
  /** Track first copies and steer requests (default true); false: a plain server. */
  coordinate?: boolean;
  /** Send an unsent piece instead of redirecting (default true). */
  substitute?: boolean;
  /** Queued data above which every request is refused as busy, in ms (default 1000). */
  maxBacklogMs?: number;
  /** Queued data up to which a repeat is still served, in ms (default 50). */
  repeatBacklogMs?: number;
}

/** First-copy bookkeeping of one file at a seed server. */
export class SeedLedger {
  readonly #copies: Uint32Array;
  /** Unsent pieces in a random order, popped from the end. */
  readonly #unsent: number[] = [];
  #firstCopies = 0;
  readonly #coordinate: boolean;
  readonly #substitute: boolean;
  readonly #maxBacklogMs: number;
  readonly #repeatBacklogMs: number;

  /** A ledger with nothing sent; `random` orders the substitutes. */
  constructor(readonly pieceCount: number, random: () => number, options: SeedLedgerOptions = {}) {
    this.#copies = new Uint32Array(pieceCount);
    this.#coordinate = options.coordinate ?? true;
    this.#substitute = options.substitute ?? true;
    this.#maxBacklogMs = options.maxBacklogMs ?? 1000;
    this.#repeatBacklogMs = options.repeatBacklogMs ?? 50;
    for (let p = 0; p < pieceCount; p++) this.#unsent.push(p);
    for (let i = pieceCount - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [this.#unsent[i], this.#unsent[j]] = [this.#unsent[j], this.#unsent[i]];
    }
  }

  /** Pieces sent at least once. */
  get firstCopies(): number {
    return this.#firstCopies;
  }

  /** Copies of `piece` sent (or queued) so far. */
  copies(piece: number): number {
    return this.#copies[piece];
  }

  /**
   * What to do with a request for `piece` when `backlogMs` of data is already queued for the
   * link. Serving answers count the copy at once (it is queued), so the next request sees it.
   */
  answer(piece: number, backlogMs: number): SeedAnswer {
    const busy = busyFor(backlogMs, this.#maxBacklogMs);
    if (busy > 0) return { kind: "busy", retryAfterMs: busy };
    if (!this.#coordinate || this.#copies[piece] === 0) return this.#serve(piece);
    const unsent = this.#nextUnsent();
    if (unsent >= 0) {
      if (this.#substitute) {
        this.#count(unsent);
        return { kind: "substitute", piece: unsent };
      }
      return { kind: "redirect", retryAfterMs: 0 };
    }
    const later = busyFor(backlogMs, this.#repeatBacklogMs);
    return later > 0 ? { kind: "redirect", retryAfterMs: later } : this.#serve(piece);
  }

  #serve(piece: number): SeedAnswer {
    const firstCopy = this.#copies[piece] === 0;
    this.#count(piece);
    return { kind: "serve", piece, firstCopy };
  }

  #count(piece: number): void {
    if (this.#copies[piece]++ === 0) this.#firstCopies++;
  }

  /** An unsent piece (dropping those sent since they were shuffled in), or -1. */
  #nextUnsent(): number {
    const u = this.#unsent;
    while (u.length > 0 && this.#copies[u[u.length - 1]] !== 0) u.pop();
    return u.length > 0 ? u[u.length - 1] : -1;
  }
}
