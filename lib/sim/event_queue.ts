/**
 * The simulator's clock: a priority queue of timed callbacks. Ties run in the order they were
 * scheduled, so a run depends on nothing but its inputs.
 *
 * @module
 */

interface Entry {
  at: number;
  seq: number;
  run: () => void;
}

/** A binary min-heap of callbacks ordered by (time, scheduling order). */
export class EventQueue {
  #heap: Entry[] = [];
  #seq = 0;
  /** Current simulated time in ms. */
  now = 0;
  /** Events run so far. */
  processed = 0;

  /** Runs `run` at simulated time `at` (not before now). */
  at(at: number, run: () => void): void {
    const e = { at: Math.max(at, this.now), seq: this.#seq++, run };
    const h = this.#heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(h[i], h[p])) break;
      [h[i], h[p]] = [h[p], h[i]];
      i = p;
    }
  }

  /** Runs events in time order until none is left, `stop()` is true, or `until` is reached. */
  run(until: number, stop: () => boolean): void {
    const h = this.#heap;
    while (h.length > 0 && !stop()) {
      const e = h[0];
      if (e.at > until) break;
      const last = h.pop()!;
      if (h.length > 0) {
        h[0] = last;
        this.#sift(0);
      }
      this.now = e.at;
      this.processed++;
      e.run();
    }
  }

  #sift(i: number): void {
    const h = this.#heap;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && before(h[l], h[m])) m = l;
      if (r < h.length && before(h[r], h[m])) m = r;
      if (m === i) return;
      [h[i], h[m]] = [h[m], h[i]];
      i = m;
    }
  }
}

/**
 * One machine's next wake-up on an {@link EventQueue}: arming it earlier supersedes the wake-up
 * pending (which then does nothing), arming it later changes nothing.
 */
export class Wakeup {
  #at = Infinity;
  #seq = 0;

  /** `fire` runs at each wake-up. */
  constructor(readonly clock: EventQueue, readonly fire: () => void) {}

  /** Wakes at `at` (not before now), unless already due sooner; undefined: nothing to arm. */
  arm(at: number | undefined): void {
    if (at === undefined || at >= this.#at) return;
    this.#at = Math.max(at, this.clock.now);
    const seq = ++this.#seq;
    this.clock.at(this.#at, () => {
      if (seq !== this.#seq) return; // superseded by an earlier wake-up, or cancelled
      this.#at = Infinity;
      this.fire();
    });
  }

  /** Forgets the pending wake-up. */
  cancel(): void {
    this.#seq++;
    this.#at = Infinity;
  }
}

function before(a: Entry, b: Entry): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}
