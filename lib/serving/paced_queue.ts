/**
 * The chunk requests a `--rate` server has not started to answer yet. They are taken in arrival
 * order per asker (address and port), and the askers in turn: the next request is the oldest of
 * the asker served longest ago (among the first `FAIR_SCAN` waiting). Why: a swarm fetcher asks
 * for two pieces at once, and served in arrival order, the first fetchers to ask got two pieces in
 * a row while the others waited; a crowd relays a piece only from its holders, so the server's
 * first pieces should go to as many fetchers as it can (the real-code simulator, 32 fetchers:
 * the first eight pieces went to four fetchers; with turns, 1.20–1.22 × the bound over seeds 1–5
 * against 1.22–1.26). Plain clients sharing a server get even turns too.
 *
 * Under a cap, requests wait here for seconds when many clients share the server; a client whose
 * request waited past its deadline asks again for the same bytes (with a new request id), and
 * answering both would spend the capped upload twice on them. So a request whose bytes are all
 * covered by one still waiting from the same address and port is not queued: the earlier one
 * brings them, and the client takes late blocks (PROTOCOL.md §6.1 rule 8).
 *
 * A swarm fetcher's request (flag bit 2) is not queued behind more than `swarmBacklogMs` of data:
 * it gets BUSY with a retry time instead (PROTOCOL.md §4.2, staggered by a `BacklogGate`). What a
 * swarm fetcher is sent, the first-copy ledger records as given to it, and others are refused
 * it; a request served after a second in this queue had long been given up by its fetcher (its
 * deadline passed, it moved on), so the piece was held by nobody until the pass ended. (The
 * simulator, N = 32: requests waited up to 1.2 s, and two such pieces set the tail.)
 *
 * Pure: no sockets, no clock.
 *
 * @module
 */

import type { ChunkRequest } from "../wire/packet.ts";
import { BacklogGate } from "./backlog_gate.ts";
import { SWARM_QUEUE_BOUND_MS } from "../wire/busy_retry.ts";

/** A waiting request, with its asker's address and port as a key, and what the shell needs. */
export interface PacedEntry<T> {
  p: ChunkRequest;
  asker: string;
  extra: T;
}

/** Why a request was not queued: full, covered, or a swarm request told to retry in `busyMs`. */
export type PacedRefusal = "full" | "covered" | { busyMs: number };

/** Requests waiting at most (beyond, a request is dropped and its client asks again). */
export const MAX_PACED = 4096;
/** Waiting requests looked through for the next asker's turn (the oldest first). */
const FAIR_SCAN = 64;
/** Askers whose last turn is remembered (the least recent are forgotten first). */
const MAX_TURNS_KEPT = 1024;
/** Waiting requests looked through for one that covers a new request (the newest first). */
const COVER_SCAN = 512;

/** The queue (see the module comment). */
export class PacedQueue<T> {
  readonly #queue: PacedEntry<T>[] = [];
  /** Bytes the waiting requests ask for. */
  queuedBytes = 0;
  readonly #rate: number | undefined;
  readonly #gate: BacklogGate;
  /** Per asker, the number of the turn it was last served in (see `shift`). */
  readonly #lastTurn = new Map<string, number>();
  #turns = 0;

  /**
   * A queue drained at `rate` bytes/s; without a rate, swarm requests are queued like others.
   * `swarmBacklogMs`: see the module comment; `random` spreads retry times (`BacklogGate`).
   */
  constructor(rate?: number, swarmBacklogMs = SWARM_QUEUE_BOUND_MS, random = Math.random) {
    this.#rate = rate;
    this.#gate = new BacklogGate(swarmBacklogMs, undefined, random);
  }

  /** The waiting data, in ms of the rate (0 without one). */
  get backlogMs(): number {
    return this.#rate ? (1000 * this.queuedBytes) / this.#rate : 0;
  }

  /** Requests waiting. */
  get length(): number {
    return this.#queue.length;
  }

  /**
   * Queues `p` from `asker` at `now` (ms), or says why not. `aheadMs`: what holds the queue back
   * besides the request being sent (replies charged to the rate), counted as queued data.
   */
  push(p: ChunkRequest, asker: string, extra: T, now = 0, aheadMs = 0): PacedRefusal | undefined {
    if (this.#queue.length >= MAX_PACED) return "full";
    if (this.#coveredByWaiting(p, asker)) return "covered";
    if (p.swarm && this.#rate) {
      const backlogMs = aheadMs + this.backlogMs;
      const busyMs = this.#gate.admit(now, backlogMs, (1000 * p.length) / this.#rate);
      if (busyMs > 0) return { busyMs };
    }
    this.#queue.push({ p, asker, extra });
    this.queuedBytes += p.length;
    return undefined;
  }

  /**
   * The next request to serve, taken out: the oldest waiting of the asker whose last turn is the
   * longest ago (an asker never served, or forgotten, first).
   */
  shift(): PacedEntry<T> | undefined {
    const q = this.#queue;
    let next = 0;
    let nextTurn = Infinity;
    for (let i = 0; i < q.length && i < FAIR_SCAN; i++) {
      const turn = this.#lastTurn.get(q[i].asker) ?? -1;
      if (turn < nextTurn) [next, nextTurn] = [i, turn];
      if (turn < 0) break;
    }
    const [e] = q.splice(next, 1);
    if (!e) return undefined;
    this.queuedBytes -= e.p.length;
    this.#lastTurn.delete(e.asker); // (re-set last: the map is in the order of turns)
    this.#lastTurn.set(e.asker, ++this.#turns);
    if (this.#lastTurn.size > MAX_TURNS_KEPT) {
      for (const asker of this.#lastTurn.keys()) {
        this.#lastTurn.delete(asker);
        break;
      }
    }
    return e;
  }

  /** Forgets every waiting request (the server is stopping). */
  clear(): void {
    this.#queue.length = 0;
    this.queuedBytes = 0;
    this.#lastTurn.clear();
  }

  #coveredByWaiting(p: ChunkRequest, asker: string): boolean {
    const q = this.#queue;
    const end = p.offset + p.length;
    for (let i = q.length - 1, n = 0; i >= 0 && n < COVER_SCAN; i--, n++) {
      const w = q[i];
      if (w.asker !== asker || w.p.fileId !== p.fileId || w.p.blockSize !== p.blockSize) continue;
      if (w.p.swarm !== p.swarm) continue; // (the first-copy ledger may answer them differently)
      if (w.p.offset <= p.offset && w.p.offset + w.p.length >= end && sameBlocks(w.p, p)) {
        return true;
      }
    }
    return false;
  }
}

/** Whether `p`'s blocks are blocks of `w` (same grid): the client can match them to its own. */
function sameBlocks(w: ChunkRequest, p: ChunkRequest): boolean {
  return (p.offset - w.offset) % w.blockSize === 0 &&
    (p.offset + p.length === w.offset + w.length || p.length % p.blockSize === 0);
}
