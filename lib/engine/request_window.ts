/**
 * The requests one lane (one client socket talking to one server) has in flight, and the
 * loss-detection rules over them, as in RFC 9002 §6:
 *
 * - time threshold: once a later request has been fully answered, an earlier one still
 *   incomplete after 9/8 of the RTT is lost (replies on one path arrive mostly in order, so
 *   waiting for the full timeout would only stall the pipeline);
 * - timeout: a request with no complete answer by its deadline is lost.
 *
 * Pure: every method takes the time in ms.
 *
 * @module
 */

/** One request in flight. */
export interface InFlight {
  /** The request id. */
  id: number;
  /** Bytes requested. */
  bytes: number;
  /** When it was sent. */
  sentAt: number;
  /** When it times out. */
  deadline: number;
}

/** Loss-detection time threshold, a multiple of the RTT (RFC 9002 kTimeThreshold). */
export const TIME_THRESHOLD = 9 / 8;

/** Requests in flight on one lane, in the order they were sent. */
export class RequestWindow {
  #open: InFlight[] = [];
  #bytes = 0;

  /** Bytes requested and not yet answered or declared lost. */
  get bytesInFlight(): number {
    return this.#bytes;
  }

  /** Number of requests in flight. */
  get size(): number {
    return this.#open.length;
  }

  /** Whether a request of `bytes` fits under `cap` (one request always fits an empty lane). */
  canSend(bytes: number, cap: number): boolean {
    return this.#open.length === 0 || this.#bytes + bytes <= cap;
  }

  /** Records a request sent at `sentAt` that times out after `rto` ms. */
  sent(id: number, bytes: number, sentAt: number, rto: number): void {
    this.#open.push({ id, bytes, sentAt, deadline: sentAt + rto });
    this.#bytes += bytes;
  }

  /**
   * Request `id` is finished (answered in full, refused, or abandoned). Returns the earlier
   * requests that the time threshold now declares lost; they are removed as well.
   */
  finish(id: number, now: number, rtt: number): InFlight[] {
    let i = this.#open.findIndex((r) => r.id === id);
    if (i < 0) return [];
    this.#remove(i);
    const lost: InFlight[] = [];
    const limit = Math.max(1, TIME_THRESHOLD * rtt);
    for (let j = 0; j < i;) {
      const r = this.#open[j];
      if (now - r.sentAt > limit) {
        lost.push(r);
        this.#remove(j);
        i--;
      } else j++;
    }
    return lost;
  }

  /**
   * Another lane to the same server finished a request sent at `before`: requests here sent
   * earlier, and more than the time threshold ago, are lost too (removed and returned).
   */
  lostBefore(before: number, now: number, rtt: number): InFlight[] {
    const limit = Math.max(1, TIME_THRESHOLD * rtt);
    const lost = this.#open.filter((r) => r.sentAt < before && now - r.sentAt > limit);
    for (const r of lost) this.#remove(this.#open.indexOf(r));
    return lost;
  }

  /** Removes and returns the requests whose deadline has passed at `now`. */
  expire(now: number): InFlight[] {
    const lost = this.#open.filter((r) => r.deadline <= now);
    for (const r of lost) this.#remove(this.#open.indexOf(r));
    return lost;
  }

  /** Earliest deadline, or `Infinity` when nothing is in flight. */
  nextDeadline(): number {
    let d = Infinity;
    for (const r of this.#open) d = Math.min(d, r.deadline);
    return d;
  }

  #remove(i: number): void {
    this.#bytes -= this.#open[i].bytes;
    this.#open.splice(i, 1);
  }
}
