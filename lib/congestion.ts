/**
 * Per-server congestion window: how many bytes may be requested from one server and not yet
 * received. NewReno-style AIMD as in RFC 9002 §7 (slow start, congestion avoidance, one
 * reduction per loss episode), bounded above by what the client's sockets can buffer.
 *
 * Pure: callers pass times in ms.
 *
 * @module
 */

/** Tuning of the window. */
export interface CongestionOptions {
  /** Bytes of one full datagram payload (block size). */
  blockSize: number;
  /** Window at start, in blocks (RFC 9002 suggests about 10 datagrams). */
  initialBlocks: number;
  /** Floor, in blocks: below 2 a single loss would stall the pipeline. */
  minBlocks: number;
  /** Ceiling in bytes: what the receiving sockets can absorb while the client is busy. */
  maxBytes: number;
  /**
   * Multiplier applied on loss. 0.5 is Reno's; 0.7 (CUBIC's) keeps more of the window, which
   * matters when losses are random rather than caused by our own sending.
   */
  lossReduction: number;
}

/** Congestion state of one server. */
export class CongestionWindow {
  #o: CongestionOptions;
  #cwnd: number;
  #ssthresh = Infinity;
  #recoveryStart = -Infinity;

  /** A window of `initialBlocks` blocks, clamped to the bounds. */
  constructor(o: CongestionOptions) {
    this.#o = o;
    this.#cwnd = this.#clamp(o.initialBlocks * o.blockSize);
  }

  /** Current window in bytes. */
  get bytes(): number {
    return this.#cwnd;
  }

  /** True while in slow start. */
  get slowStart(): boolean {
    return this.#cwnd < this.#ssthresh;
  }

  /**
   * `bytes` were received for a request sent at `sentAt`. Requests sent before the current
   * recovery period began do not grow the window (they were sent with the old, larger one).
   */
  onAck(bytes: number, sentAt: number): void {
    if (sentAt <= this.#recoveryStart) return;
    if (this.slowStart) this.#cwnd += bytes;
    else this.#cwnd += (this.#o.blockSize * bytes) / this.#cwnd;
    this.#cwnd = this.#clamp(this.#cwnd);
  }

  /** Data of a request sent at `sentAt` was lost (noticed at `now`). */
  onLoss(sentAt: number, now: number): void {
    if (sentAt <= this.#recoveryStart) return; // same episode: reduce once
    this.#recoveryStart = now;
    this.#ssthresh = this.#clamp(this.#cwnd * this.#o.lossReduction);
    this.#cwnd = this.#ssthresh;
  }

  /**
   * A request sent at `sentAt` timed out with nothing received (noticed at `now`): the window
   * collapses to the floor (RFC 9002 §7.6.2). The slow-start threshold is lowered only once
   * per episode, so several requests timing out together do not ruin the recovery.
   */
  onPersistentLoss(now: number, sentAt: number = now): void {
    if (sentAt > this.#recoveryStart) {
      this.#recoveryStart = now;
      this.#ssthresh = this.#clamp(this.#cwnd * this.#o.lossReduction);
    }
    this.#cwnd = this.#clamp(0);
  }

  #clamp(x: number): number {
    const min = this.#o.minBlocks * this.#o.blockSize;
    return Math.max(min, Math.min(Math.max(min, this.#o.maxBytes), x));
  }
}
