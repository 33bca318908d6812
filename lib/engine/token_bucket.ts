/**
 * Rate limiting by token bucket, for `serve --rate` and `fetch --limit`, and parsing of rates
 * such as `20M` or `500k`.
 *
 * Pure: the caller passes the time and sleeps for the returned delay.
 *
 * @module
 */

/** Bytes per second from `1234`, `500k`, `20M`, `1G` (powers of 1000; `Ki`/`Mi`/`Gi` of 1024). */
export function parseRate(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*(k|ki|m|mi|g|gi)?(?:b|b\/s|\/s)?$/i.exec(text.trim());
  if (!m) return undefined;
  const unit = (m[2] ?? "").toLowerCase();
  const mult: Record<string, number> = {
    "": 1,
    k: 1e3,
    ki: 1024,
    m: 1e6,
    mi: 1 << 20,
    g: 1e9,
    gi: 1 << 30,
  };
  const v = Math.round(Number(m[1]) * mult[unit]);
  return v > 0 && Number.isSafeInteger(v) ? v : undefined;
}

/** A bucket refilled at `rate` bytes/s holding at most `burst` bytes. */
export class TokenBucket {
  #rate: number;
  #burst: number;
  #tokens: number;
  #last: number;

  /** Starts full at time `now` (ms). */
  /** Bytes per second. */
  get rate(): number {
    return this.#rate;
  }

  constructor(rate: number, burst: number, now: number) {
    this.#rate = rate;
    this.#burst = burst;
    this.#tokens = burst;
    this.#last = now;
  }

  /** How long (ms) what was taken but not yet paid for still takes at `now`: the queue ahead. */
  debtMs(now: number): number {
    const tokens = Math.min(this.#burst, this.#tokens + ((now - this.#last) * this.#rate) / 1000);
    return tokens >= 0 ? 0 : (-tokens * 1000) / this.#rate;
  }

  /**
   * Takes `bytes` at `now` (ms), but never into more than `maxDebtMs` of debt (what was sent
   * anyway, beyond that, is forgiven): for bytes that went out already and must not hold back
   * what follows without bound. Returns the bytes taken.
   */
  charge(bytes: number, now: number, maxDebtMs: number): number {
    this.take(0, now);
    const floor = Math.min(this.#tokens, (-maxDebtMs * this.#rate) / 1000);
    const before = this.#tokens;
    this.#tokens = Math.max(this.#tokens - bytes, floor);
    return before - this.#tokens;
  }

  /**
   * Takes `bytes` at `now` (ms) and returns how long to wait (ms) before sending them; the
   * debt is carried, so a caller that waits that long stays exactly on the rate.
   */
  take(bytes: number, now: number): number {
    this.#tokens = Math.min(this.#burst, this.#tokens + ((now - this.#last) * this.#rate) / 1000);
    this.#last = now;
    this.#tokens -= bytes;
    return this.#tokens >= 0 ? 0 : (-this.#tokens * 1000) / this.#rate;
  }
}
