/**
 * Per-source rate limit of the tracker: a token bucket per source IP address, in a table of
 * bounded size. A request that finds its bucket empty is dropped unanswered, so one address
 * can neither keep the tracker busy nor (with a forged source) have it send more than
 * `rate` replies per second to a victim.
 *
 * Not `lib/engine/token_bucket.ts`: that bucket carries a debt so a sender waiting it out stays
 * on the rate; a limiter must refuse without charging, or a source that floods would stay
 * refused long after it stopped. A bucket that has refilled completely is the same as no
 * bucket, so idle entries are forgotten without changing any decision, and when the table is
 * full the oldest entry makes room (its source starts again with a full bucket: a forged-address
 * flood can refresh a real source's allowance, never lower it).
 *
 * Pure: the time comes in as an argument (ms).
 *
 * @module
 */

/** Limits of a {@linkcode SourceLimiter}. */
export interface SourceLimits {
  /** Requests per second each source may send, sustained; 0: no limit. */
  readonly rate: number;
  /** Requests a source may send at once after being quiet (the bucket's size). */
  readonly burst: number;
  /** Sources remembered at most (bounds memory under a flood from many addresses). */
  readonly maxSources: number;
}

/**
 * Default limits: 100 requests/s per address with bursts of 200. A BitTorrent client sends one
 * announce per torrent per interval (10 s while downloading) and a connect every 2 minutes, so
 * this is room for about 900 busy torrents behind one address (a NAT), and one address flooding
 * costs the tracker a table look-up per datagram.
 */
export const DEFAULT_SOURCE_LIMITS: SourceLimits = {
  rate: 100,
  burst: 200,
  maxSources: 65_536,
};

interface Bucket {
  tokens: number;
  last: number;
}

/** Decides which requests each source may have answered. */
export class SourceLimiter {
  #limits: SourceLimits;
  /** Insertion order is the order of eviction. */
  #buckets = new Map<string, Bucket>();

  /** Uses `limits` (default {@linkcode DEFAULT_SOURCE_LIMITS}). */
  constructor(limits: SourceLimits = DEFAULT_SOURCE_LIMITS) {
    this.#limits = limits;
  }

  /** Sources currently remembered. */
  get size(): number {
    return this.#buckets.size;
  }

  /** Takes one token for `source` at `now`; false when its bucket is empty (drop the request). */
  admit(source: string, now: number): boolean {
    const { rate, burst, maxSources } = this.#limits;
    if (rate <= 0) return true;
    let b = this.#buckets.get(source);
    if (b === undefined) {
      if (this.#buckets.size >= maxSources) this.#evictOldest();
      b = { tokens: burst, last: now };
      this.#buckets.set(source, b);
    } else {
      b.tokens = Math.min(burst, b.tokens + Math.max(0, now - b.last) * rate / 1000);
      b.last = now;
    }
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /** Forgets the sources whose buckets are full again by `now` (they are as good as new). */
  prune(now: number): void {
    const { rate, burst } = this.#limits;
    for (const [source, b] of this.#buckets) {
      if (b.tokens + (now - b.last) * rate / 1000 >= burst) this.#buckets.delete(source);
    }
  }

  #evictOldest(): void {
    for (const source of this.#buckets.keys()) {
      this.#buckets.delete(source);
      return;
    }
  }
}
