/**
 * Rate limit for the log lines of refused requests. Anyone can make a server refuse requests
 * as fast as it can send datagrams (from forged addresses, too), so logging each refusal
 * would let a flood fill the disk. Per class of refusal, the first `burst` refusals of each
 * interval are logged; the rest are counted, with the number of distinct addresses they came
 * from, and reported as one summary line when the interval closes.
 *
 * Pure: time comes in as an argument (ms), the caller decides when to ask for summaries.
 *
 * @module
 */

/** What was left out of the log for one class during one interval. */
export interface Suppressed {
  /** The refusal class, e.g. `not_found`. */
  cls: string;
  /** Refusals counted but not logged. */
  count: number;
  /** Distinct client addresses among them (a lower bound when `addressesCapped`). */
  addresses: number;
  /** More addresses than were remembered: `addresses` is a lower bound. */
  addressesCapped: boolean;
  /** Length of the interval they fall in (ms). */
  periodMs: number;
}

/** Limits of a {@link RefusalLimiter}. */
export interface RefusalLimits {
  /** Refusals of one class logged in full per interval. */
  burst: number;
  /** Length of an interval (ms). */
  intervalMs: number;
  /** Distinct addresses remembered per class and interval (bounds memory under a flood). */
  maxAddresses: number;
}

/** Default limits: 5 lines per class per 10 s, then one summary. */
export const DEFAULT_REFUSAL_LIMITS: RefusalLimits = {
  burst: 5,
  intervalMs: 10_000,
  maxAddresses: 1024,
};

interface Window {
  start: number;
  logged: number;
  suppressed: number;
  addresses: Set<string>;
  capped: boolean;
}

/** Decides which refusals get a log line, and summarises the others. */
export class RefusalLimiter {
  #limits: RefusalLimits;
  // keyed by class: the classes are a small fixed set chosen by the server, not by clients
  #windows = new Map<string, Window>();

  /** Uses `limits` (default {@link DEFAULT_REFUSAL_LIMITS}). */
  constructor(limits: RefusalLimits = DEFAULT_REFUSAL_LIMITS) {
    this.#limits = limits;
  }

  /**
   * Counts one refusal of class `cls` for client `address` at `now`. `log`: whether to write
   * its line; `summary`: what the previous interval of this class left out, if it just closed.
   */
  admit(cls: string, address: string, now: number): { log: boolean; summary?: Suppressed } {
    let w = this.#windows.get(cls);
    let summary: Suppressed | undefined;
    if (w && now - w.start >= this.#limits.intervalMs) {
      summary = this.#close(cls, w, now);
      w = undefined;
    }
    if (!w) {
      w = { start: now, logged: 0, suppressed: 0, addresses: new Set(), capped: false };
      this.#windows.set(cls, w);
    }
    if (w.logged < this.#limits.burst) {
      w.logged++;
      return { log: true, summary };
    }
    w.suppressed++;
    if (!w.addresses.has(address)) {
      if (w.addresses.size < this.#limits.maxAddresses) w.addresses.add(address);
      else w.capped = true;
    }
    return { log: false, summary };
  }

  /** Closes every interval that has run its length by `now`; their summaries (if any). */
  tick(now: number): Suppressed[] {
    const out: Suppressed[] = [];
    for (const [cls, w] of this.#windows) {
      if (now - w.start < this.#limits.intervalMs) continue;
      const s = this.#close(cls, w, now);
      if (s) out.push(s);
    }
    return out;
  }

  /** Closes every interval (at shutdown); summaries of what was left out. */
  flush(now: number): Suppressed[] {
    const out: Suppressed[] = [];
    for (const [cls, w] of this.#windows) {
      const s = this.#close(cls, w, now);
      if (s) out.push(s);
    }
    return out;
  }

  #close(cls: string, w: Window, now: number): Suppressed | undefined {
    this.#windows.delete(cls);
    if (w.suppressed === 0) return undefined;
    return {
      cls,
      count: w.suppressed,
      addresses: w.addresses.size,
      addressesCapped: w.capped,
      periodMs: Math.min(now - w.start, this.#limits.intervalMs),
    };
  }
}

/** The summary line, e.g. `47 more not_found refusals from 3 addresses suppressed in the last 10 s`. */
export function describeSuppressed(s: Suppressed): string {
  const from = s.addressesCapped
    ? `more than ${s.addresses} addresses`
    : s.addresses === 1
    ? "1 address"
    : `${s.addresses} addresses`;
  const secs = Math.max(1, Math.round(s.periodMs / 1000));
  return `${s.count} more ${s.cls} refusal${s.count === 1 ? "" : "s"} from ${from} ` +
    `suppressed in the last ${secs} s`;
}
