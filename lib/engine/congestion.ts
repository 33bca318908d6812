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
  /**
   * Share of a round's bytes (one window's worth) that may be lost before the window is
   * reduced; 0 (default) reduces on every loss episode. Random loss on a lossy path (a few %)
   * is not a sign of congestion; our own overload (a receive buffer overflowing) drops many
   * datagrams at once and crosses the threshold. Timeouts with nothing received always count.
   */
  lossTolerance?: number;
}

/** Congestion state of one server. */
export class CongestionWindow {
  #o: CongestionOptions;
  #cwnd: number;
  #ssthresh = Infinity;
  #recoveryStart = -Infinity;
  #roundAcked = 0;
  #roundLost = 0;

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
    this.#countRound(bytes, 0);
    if (sentAt <= this.#recoveryStart) return;
    if (this.slowStart) this.#cwnd += bytes;
    else this.#cwnd += (this.#o.blockSize * bytes) / this.#cwnd;
    this.#cwnd = this.#clamp(this.#cwnd);
  }

  /**
   * `lostBytes` of a request sent at `sentAt` were lost (noticed at `now`). Reduces the window
   * once per episode, and only if the round's loss share exceeds the tolerance.
   */
  onLoss(sentAt: number, now: number, lostBytes: number = this.#o.blockSize): void {
    this.#countRound(0, lostBytes);
    if (sentAt <= this.#recoveryStart) return; // same episode: reduce once
    const total = this.#roundAcked + this.#roundLost;
    if (this.#roundLost < (this.#o.lossTolerance ?? 0) * total) return;
    this.#roundAcked = 0;
    this.#roundLost = 0;
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

  /** Loss shares are judged per round: one window's worth of bytes, acked or lost. */
  #countRound(acked: number, lost: number): void {
    if (this.#roundAcked + this.#roundLost >= this.#cwnd) {
      this.#roundAcked = 0;
      this.#roundLost = 0;
    }
    this.#roundAcked += acked;
    this.#roundLost += lost;
  }

  #clamp(x: number): number {
    const min = this.#o.minBlocks * this.#o.blockSize;
    return Math.max(min, Math.min(Math.max(min, this.#o.maxBytes), x));
  }
}
