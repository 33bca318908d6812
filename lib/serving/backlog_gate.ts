/**
 * A source's admission rule for piece requests: above `maxBacklogMs` of data already queued for
 * its uplink it answers BUSY with a retry time instead of queueing more.
 *
 * Why refuse: a source serves first come first served, so with fifty fetchers each keeping a
 * request there the last one waits seconds; its piece is then in flight for seconds (no one else
 * may be asked for it), times out, is asked again elsewhere, and both copies arrive. Refusing
 * early keeps every accepted request's wait short and sends the asker to a source with room —
 * which is also what makes a fresh piece spread exponentially: the first few askers get it from
 * its first holder, the rest from them.
 *
 * Why staggered retry times: a "have" reaches all of a source's fetchers at once and they all
 * ask for the new piece at once. Told "retry in 10 ms" alike, they would all come back together
 * and be refused again. Each refusal is instead given the next free turn — one request's send
 * time after the previous one's — within `horizonMs`, so retries arrive spaced out and most
 * askers have meanwhile got the piece elsewhere. Past the horizon (more askers than turns), a
 * gate given a random source spreads the rest at random over it: all given the horizon's end,
 * they came back together (the real-code simulator, a `--rate` server and 100 fetchers: a herd
 * every 0.5 s, and the server idle in between).
 *
 * @module
 */

/**
 * Ms until the backlog is down to `maxBacklogMs` again (0 when it is not above): the plain
 * "busy for" a source can put on every message as a load hint.
 */
export function busyFor(backlogMs: number, maxBacklogMs: number): number {
  return backlogMs > maxBacklogMs ? backlogMs - maxBacklogMs : 0;
}

/** Admission with staggered retry times (see the module doc). */
export class BacklogGate {
  /** Last retry turn handed out (ms). */
  #turn = -Infinity;

  /**
   * @param maxBacklogMs queued data, in ms at the uplink rate, above which requests are refused
   * @param horizonMs retry turns are handed out at most this far past the plain busy time
   * @param random spreads refusals beyond the horizon over it (without: all get its end)
   */
  constructor(
    readonly maxBacklogMs: number,
    readonly horizonMs = 500,
    readonly random?: () => number,
  ) {}

  /**
   * 0 to admit a request at `now` with `backlogMs` queued; else the ms after which the asker may
   * retry. `requestMs` is how long one such request takes to send (the spacing of turns).
   */
  admit(now: number, backlogMs: number, requestMs: number): number {
    const busy = busyFor(backlogMs, this.maxBacklogMs);
    if (busy === 0) return 0;
    const earliest = now + busy;
    const turn = Math.max(this.#turn + requestMs, earliest);
    const last = earliest + this.horizonMs;
    this.#turn = Math.min(turn, last);
    if (turn > last && this.random) return busy + this.horizonMs * this.random();
    return this.#turn - now;
  }
}
