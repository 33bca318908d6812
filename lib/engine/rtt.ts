/**
 * Retransmission timeout from measured round-trip times, as in RFC 6298.
 *
 * Pure: callers feed samples and read the current timeout; no clock inside.
 *
 * @module
 */

/** Bounds and starting point of the timeout, in milliseconds. */
export interface RttOptions {
  /** Timeout before any sample (RFC 6298 says 1 s; LAN tools can start lower). */
  initialRtoMs: number;
  /** Lower bound: a timer finer than the event loop's jitter only causes spurious retries. */
  minRtoMs: number;
  /** Upper bound, also for the backed-off value. */
  maxRtoMs: number;
}

/** Defaults suited to LAN and loopback transfers. */
export const DEFAULT_RTT_OPTIONS: RttOptions = {
  initialRtoMs: 300,
  minRtoMs: 20,
  maxRtoMs: 4000,
};

/** Smoothed RTT, its variation, and the resulting retransmission timeout with backoff. */
export class RttEstimator {
  #opts: RttOptions;
  #srtt: number | undefined;
  #rttvar = 0;
  #backoff = 1;

  /** Creates an estimator with no samples yet. */
  constructor(opts: RttOptions = DEFAULT_RTT_OPTIONS) {
    this.#opts = opts;
  }

  /** Smoothed round-trip time in ms, or `undefined` before the first sample. */
  get srtt(): number | undefined {
    return this.#srtt;
  }

  /**
   * Adds one round-trip sample. Only unambiguous samples belong here (Karn's rule: never
   * from a retransmitted request), and a fresh sample ends any backoff.
   */
  addSample(rttMs: number): void {
    const r = Math.max(0, rttMs);
    if (this.#srtt === undefined) {
      this.#srtt = r;
      this.#rttvar = r / 2;
    } else {
      this.#rttvar = 0.75 * this.#rttvar + 0.25 * Math.abs(this.#srtt - r);
      this.#srtt = 0.875 * this.#srtt + 0.125 * r;
    }
    this.#backoff = 1;
  }

  /** Doubles the timeout after a loss (RFC 6298 §5.5), up to the maximum. */
  backOff(): void {
    if (this.baseRto() * this.#backoff < this.#opts.maxRtoMs) this.#backoff *= 2;
  }

  /** The current retransmission timeout in ms, backoff included. */
  rto(): number {
    return Math.min(this.#opts.maxRtoMs, this.baseRto() * this.#backoff);
  }

  private baseRto(): number {
    if (this.#srtt === undefined) return this.#opts.initialRtoMs;
    const rto = this.#srtt + Math.max(1, 4 * this.#rttvar);
    return Math.min(this.#opts.maxRtoMs, Math.max(this.#opts.minRtoMs, rto));
  }
}
