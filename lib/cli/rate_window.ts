/**
 * The current rate of a transfer, as curl and aria2c show it: bytes over a moving window of the
 * last few seconds. Pure: the caller gives the time.
 *
 * @module
 */

/** Seconds of history the current rate is measured over (aria2c and curl use a few). */
export const RATE_WINDOW_MS = 5000;

/** A moving-window rate: bytes counted over the last `windowMs`. */
export class RateWindow {
  #samples: { at: number; bytes: number }[] = [];

  /** An empty window over `windowMs` milliseconds. */
  constructor(readonly windowMs = RATE_WINDOW_MS) {}

  /** Records that `bytes` in total had been fetched at `now` (ms). */
  sample(now: number, bytes: number): void {
    this.#samples.push({ at: now, bytes });
    // keep one sample older than the window: the rate spans the whole window
    while (this.#samples.length > 2 && this.#samples[1].at <= now - this.windowMs) {
      this.#samples.shift();
    }
  }

  /** Bytes per second over the window, or 0 before two samples. */
  rate(): number {
    const first = this.#samples[0];
    const last = this.#samples[this.#samples.length - 1];
    if (!first || last.at <= first.at) return 0;
    return (1000 * (last.bytes - first.bytes)) / (last.at - first.at);
  }
}
