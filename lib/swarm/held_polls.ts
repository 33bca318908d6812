/**
 * The have polls a source holds (PROTOCOL.md §10.3, flags bit 2 on HAVE_REQUEST): a poll that
 * may wait, from an asker the source has nothing new to tell, is answered as soon as the source
 * verifies a piece that is rare among its peers, once it has been held `HAVE_BATCH_MS` and the
 * source has verified any piece, or once `HAVE_HOLD_MS` have passed. A piece is relayed only once
 * its next holder hears of it, so polling every 50 ms put 25 ms on average into every hop of a
 * relay; a held poll tells in one one-way delay, and while nothing happens it costs one datagram
 * each way per hold instead of one per poll interval. (The real-code simulator, 200 fetchers of
 * 8 MiB in 64 KiB pieces: peers uploaded 38 % of their capacity 100 ms into the run with held
 * polls, among the session's other changes, against 9 % before.)
 *
 * Why two speeds: in the middle of a crowd every peer verifies a piece every few ms, so a poll
 * answered at every piece would be a poll per piece per asker (fifty askers: the exchanges alone
 * a tenth of the upload). The asker polls again as soon as an answer is in, so the source sets
 * the pace: news of a piece that many peers around it already hold waits for the batch, while a
 * piece few hold — just in from a server, or one hop from it — is told at once, because every
 * hop of its relay waits for that news. (Simulator, 32 fetchers of 8 MiB, seeds 1–5: the last
 * done at 1.22–1.25 × the bound against 1.24–1.32 when every poll waited 50 ms between.)
 *
 * Bounded: one poll per asker (a newer replaces the older, which is not answered: the asker
 * awaits only its latest), `MAX_HELD_POLLS` in all; beyond, the source answers at once.
 *
 * Pure: the clock comes in as arguments.
 *
 * @module
 */

import type { HaveRequest } from "../wire/packet.ts";

/** Longest a source holds a poll that may wait (ms); its asker waits this much longer for it. */
export const HAVE_HOLD_MS = 200;

/**
 * A poll held this long is told of any piece the source verified since (ms); news of a rare piece
 * is told at once. About one exchange per asker per batch while news flows.
 */
export const HAVE_BATCH_MS = 25;

/** Polls held at most (each is a request and an address). */
export const MAX_HELD_POLLS = 128;

/** A held poll: the request, where its answer goes, and when it is due at the latest. */
export interface HeldPoll<A> {
  request: HaveRequest;
  to: A;
  deadline: number;
}

/** The held polls of one source (see the module comment). */
export class HeldPolls<A> {
  /** By asker; in the order held, which is the order of their deadlines (a fixed hold). */
  readonly #polls = new Map<string, HeldPoll<A>>();
  readonly #max: number;

  constructor(max = MAX_HELD_POLLS) {
    this.#max = max;
  }

  /** Polls held now. */
  get size(): number {
    return this.#polls.size;
  }

  /**
   * Holds `request` from the asker `key` (answer to `to`) from `now`, when the source's log of
   * `held` entries has nothing past the request's `since`; false when it has, or when the table
   * is full: then the caller answers at once.
   */
  hold(now: number, key: string, request: HaveRequest, to: A, held: number): boolean {
    if (request.since < held) return false;
    const had = this.#polls.delete(key);
    if (!had && this.#polls.size >= this.#max) return false;
    this.#polls.set(key, { request, to, deadline: now + HAVE_HOLD_MS });
    return true;
  }

  /** The log's length at the last `due`: a longer log is news for every poll held. */
  #held = 0;
  /** When the oldest poll left waiting with news is due (`HAVE_BATCH_MS` held); else Infinity. */
  #batchAt = Infinity;

  /**
   * Takes out the polls to answer at `now` with a log of `held` entries: those with news held
   * `HAVE_BATCH_MS` or more (every one with news when `rare`: the newest entry is a piece few
   * peers hold), and those whose hold is over. Called on every turn of the loop; looks only at
   * the front (the oldest) unless the log grew.
   */
  due(now: number, held: number, rare = false): HeldPoll<A>[] {
    const out: HeldPoll<A>[] = [];
    const grew = held > this.#held;
    this.#held = held;
    this.#batchAt = Infinity;
    for (const [key, poll] of this.#polls) {
      const heldAt = poll.deadline - HAVE_HOLD_MS;
      const news = poll.request.since < held;
      if (poll.deadline <= now || (news && (rare || now - heldAt >= HAVE_BATCH_MS))) {
        this.#polls.delete(key);
        out.push(poll);
        continue;
      }
      // (polls are in the order held: the rest were held later still)
      if (news) {
        this.#batchAt = heldAt + HAVE_BATCH_MS;
        break;
      }
      if (!grew) break;
    }
    return out;
  }

  /**
   * Whether `due` would answer any poll at `now` with a log of `held` entries: the log grew since
   * the last `due`, or the first hold or batch is over (a yes can find none, once after the log
   * grew; a no is never wrong). Allocates nothing: the loop asks on every turn.
   */
  anyDue(now: number, held: number): boolean {
    if (this.#polls.size === 0) return false;
    return held > this.#held || (this.nextDeadline() ?? Infinity) <= now;
  }

  /** When the first poll is due at the latest (its hold or batch ends, ms); undefined: none. */
  nextDeadline(): number | undefined {
    for (const poll of this.#polls.values()) return Math.min(poll.deadline, this.#batchAt);
    return undefined;
  }

  /** Forgets every held poll (the source stops answering). */
  clear(): void {
    this.#polls.clear();
  }
}
