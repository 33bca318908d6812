/**
 * The rate a fetcher gets from one source, and from it how many piece requests to keep queued
 * there: a pipeline sized in time ("this many ms of data at the measured rate") rather than in a
 * fixed count, so a fast seed gets a deep queue and a peer shared by fifty fetchers gets one.
 *
 * The rate is an exponentially weighted average over the time the source had requests of ours
 * (time constant `windowMs`), not the gap between two deliveries: a source serves its requesters
 * first come first served, so our pieces often arrive back to back at its full link rate, and
 * sizing the pipeline from that burst rate would make whoever queued most queue even more.
 *
 * @module
 */

/** Tuning of {@link SourceRate}. */
export interface SourceRateOptions {
  /** Data to keep queued at a source, in ms at its measured rate (default 400). */
  pipelineMs?: number;
  /** Requests to keep queued before the first delivery (default 2). */
  initialDepth?: number;
  /** Most requests queued at one source (default 8). */
  maxDepth?: number;
  /** Time constant of the average, ms of busy time (default 1000). */
  windowMs?: number;
}

/** Throughput estimate of one source (bytes per ms) from its deliveries. */
export class SourceRate {
  /** Decayed bytes delivered. */
  #bytes = 0;
  /** Busy time observed, ms (for the average's start-up correction). */
  #busy = 0;
  #lastAt = 0;
  #outstanding = 0;
  #delivered = false;
  /** The average, kept current at each event (read far more often than it changes). */
  #rate = 0;
  #memoRate = NaN;
  #memoBytes = NaN;
  #memoDepth = 1;
  readonly #pipelineMs: number;
  readonly #initialDepth: number;
  readonly #maxDepth: number;
  readonly #windowMs: number;

  /** Starts without a measurement. */
  constructor(options: SourceRateOptions = {}) {
    this.#pipelineMs = options.pipelineMs ?? 400;
    this.#initialDepth = options.initialDepth ?? 2;
    this.#maxDepth = options.maxDepth ?? 8;
    this.#windowMs = options.windowMs ?? 1000;
  }

  /** Measured bytes per ms; 0 before the first delivery. */
  get bytesPerMs(): number {
    return this.#rate;
  }

  /** Time of the last event seen, ms. */
  get lastAt(): number {
    return this.#lastAt;
  }

  /** Requests outstanding at the source. */
  get outstanding(): number {
    return this.#outstanding;
  }

  /** A request was sent at `now`. */
  onRequest(now: number): void {
    this.#advance(now);
    this.#outstanding++;
  }

  /** A request ended without data at `now` (refused, timed out, source gone). */
  onAbandoned(now: number): void {
    this.#advance(now);
    if (this.#outstanding > 0) this.#outstanding--;
  }

  /** A request's `bytes` arrived at `now`. */
  onDelivered(now: number, bytes: number): void {
    this.#advance(now);
    this.#bytes += bytes;
    this.#delivered = true;
    if (this.#outstanding > 0) this.#outstanding--;
    this.#update();
  }

  /** Requests to keep outstanding for pieces of `pieceBytes`: pipelineMs of data, ≥ 1. */
  depth(pieceBytes: number): number {
    // (asked on every planning step, changed only by events: remembered)
    if (this.#memoRate === this.#rate && this.#memoBytes === pieceBytes) return this.#memoDepth;
    const rate = this.#rate;
    const want = rate === 0 ? this.#initialDepth : Math.ceil(rate * this.#pipelineMs / pieceBytes);
    this.#memoRate = rate;
    this.#memoBytes = pieceBytes;
    this.#memoDepth = Math.max(1, Math.min(this.#maxDepth, want));
    return this.#memoDepth;
  }

  /** Expected ms until a request sent now completes (`fallbackMs` before a measurement). */
  expectedMs(pieceBytes: number, fallbackMs: number): number {
    const rate = this.bytesPerMs;
    if (rate === 0) return fallbackMs;
    return (this.#outstanding + 1) * pieceBytes / rate;
  }

  /** Decays the average by the busy time since the last event. */
  #advance(now: number): void {
    const dt = now - this.#lastAt;
    this.#lastAt = now;
    if (this.#outstanding === 0 || dt <= 0) return;
    this.#bytes *= Math.exp(-dt / this.#windowMs);
    this.#busy += dt;
    this.#update();
  }

  #update(): void {
    if (!this.#delivered || this.#busy <= 0) return;
    const w = this.#windowMs;
    this.#rate = this.#bytes / (w * (1 - Math.exp(-this.#busy / w)));
  }
}
