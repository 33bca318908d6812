/**
 * The interface every congestion controller of the fetch engine implements: the engine reports
 * what it sent, what arrived and what was lost; the controller answers with a pacing rate (how
 * fast to ask) and a window (how many bytes may be in flight). Pure: times come in as arguments.
 *
 * @module
 */

/**
 * One delivery-rate sample, taken when a block arrives (BBR's rate sample, per block). The
 * object is reused for the next block: read it during `onDelivered`, do not keep it.
 */
export interface RateSample {
  /** Bytes delivered over the sample's interval. */
  delivered: number;
  /** Length of that interval in ms (> 0). */
  intervalMs: number;
  /** Round-trip time of the request the block answered, in ms. */
  rttMs: number;
  /** The request was sent while the sender had less to send than it was allowed to. */
  appLimited: boolean;
  /** Bytes in flight when the request was sent. */
  priorInflight: number;
}

/** A congestion controller for one source's path. */
export interface CongestionController {
  /** A request for `bytes` left at `now` with `inflight` bytes already outstanding. */
  onSent(now: number, bytes: number, inflight: number): void;
  /** A block of `bytes` arrived; `sample` carries the delivery rate measured with it. */
  onDelivered(now: number, bytes: number, sample: RateSample, roundStart: boolean): void;
  /** `bytes` were declared lost (another block overtook them, or their request timed out). */
  onLost(now: number, bytes: number): void;
  /** Nothing at all came back for a whole retransmission timeout: the path may be gone. */
  onTimeout(now: number): void;
  /** Bytes per millisecond to send requests at. */
  pacingRate(): number;
  /** Most bytes that may be in flight. */
  window(): number;
  /** Short human-readable state for logs and tests (e.g. "probe_bw 11.9 MB/s"). */
  describe(): string;
}
