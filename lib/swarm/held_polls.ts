/**
 * The have polls a source holds (PROTOCOL.md §10.3, flags bit 2 on HAVE_REQUEST): a poll that
 * may wait, from an asker the source has nothing new to tell, is answered as soon as the source
 * verifies a piece, or once `HAVE_HOLD_MS` have passed. A piece is relayed only once its next
 * holder hears of it, so polling every 50 ms put 25 ms on average into every hop of a relay; a
 * held poll tells in one one-way delay, and while nothing happens it costs one datagram each
 * way per hold instead of one per poll interval. (The real-code simulator, 200 fetchers of 8 MiB
 * in 64 KiB pieces: peers uploaded 38 % of their capacity 100 ms into the run with held polls,
 * among the session's other changes, against 9 % before.)
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

  /**
   * Takes out the polls to answer at `now` with a log of `held` entries: all of them once the
   * log grew (each has news), else those whose hold is over. (Called on every turn of the loop:
   * without news it looks only at the front, the holds that end first.)
   */
  due(now: number, held: number): HeldPoll<A>[] {
    const out: HeldPoll<A>[] = [];
    const news = held > this.#held;
    this.#held = held;
    for (const [key, poll] of this.#polls) {
      if (!news && poll.deadline > now) break;
      if (poll.request.since >= held && poll.deadline > now) continue;
      this.#polls.delete(key);
      out.push(poll);
    }
    return out;
  }

  /**
   * Whether `due` would answer any poll at `now` with a log of `held` entries: the log grew since
   * the last `due`, or the first hold is over (a yes can find none, once after the log grew; a no
   * is never wrong). Allocates nothing: the loop asks on every turn.
   */
  anyDue(now: number, held: number): boolean {
    if (this.#polls.size === 0) return false;
    return held > this.#held || (this.nextDeadline() ?? Infinity) <= now;
  }

  /** When the first hold ends (ms), or undefined when none is held. */
  nextDeadline(): number | undefined {
    for (const poll of this.#polls.values()) return poll.deadline;
    return undefined;
  }

  /** Forgets every held poll (the source stops answering). */
  clear(): void {
    this.#polls.clear();
  }
}
