/**
 * What the fetch engine knows about the path to one source: its requests in flight (in send
 * order, each block numbered in one sequence), loss detection, round trips, delivery-rate
 * sampling, pacing, congestion control and liveness.
 *
 * Loss detection follows RFC 9002's two rules, on blocks instead of packets. A source answers
 * requests in the order they arrive and the path keeps order, so blocks come back in sequence:
 * a block still missing when one three places later has arrived is lost (packet threshold);
 * and a request whose blocks are not all back by its deadline (retransmission timeout plus the
 * time its blocks take at the pacing rate) has lost the rest (time threshold). Requests never
 * repeat: lost blocks go back to the scheduler and a new request, with a new id, asks for them,
 * so every round-trip sample is unambiguous (Karn).
 *
 * Pure: every method takes the current time.
 *
 * @module
 */

import type { CongestionController, RateSample } from "./congestion/controller.ts";
import type { Assignment } from "./scheduler.ts";
import { ServerHealth } from "./server_health.ts";

/** Blocks that must overtake a missing one before it counts as lost (RFC 9002 kPacketThreshold). */
export const REORDER_THRESHOLD = 3;

const PENDING = 0;
const RECEIVED = 1;
const LOST = 2;

/** One chunk request in flight. */
export interface InFlightRequest {
  id: number;
  /** The blocks asked for. */
  a: Assignment;
  sentAt: number;
  /** Sequence number of its first block on this path. */
  firstSeq: number;
  /** Which of the source's lanes (receive sockets) carries it: order holds within a lane only. */
  lane: number;
  /** Per block: pending, received or lost. */
  state: Uint8Array;
  /** Bytes neither received nor declared lost. */
  outstanding: number;
  /** First block that may still be pending (blocks before it are settled). */
  scanFrom: number;
  /** Delivery bookkeeping when it was sent, for rate samples. */
  deliveredAtSend: number;
  deliveredTimeAtSend: number;
  /** Send time of the request whose block was delivered last, when this one was sent. */
  firstSentAtSend: number;
  appLimited: boolean;
  inflightAtSend: number;
  /** Whether its first block has arrived (then it gave a round-trip sample). */
  answered: boolean;
  /** When its blocks still pending count as lost (see `#timeoutFor`). */
  deadline: number;
}

/** A run of blocks declared lost: the engine hands them back to the scheduler. */
export interface LostRun {
  request: InFlightRequest;
  firstBlock: number;
  blockCount: number;
  bytes: number;
}

/** Share of a path's bytes lost above which its requests are sent twice. */
export const DUPLICATE_LOSS = 0.002;
/** Fewest blocks a request must ask for to be sent twice. */
export const DUPLICATE_MIN_BLOCKS = 3;

/** Whether some of `r`'s blocks were declared lost (they may still arrive late). */
export function hadLoss(r: InFlightRequest): boolean {
  return r.state.includes(LOST);
}

/** Path state of one source. */
export class SourcePath {
  readonly health: ServerHealth;
  /** Requests in flight, oldest first. */
  readonly requests: InFlightRequest[] = [];
  /** Bytes in flight (asked for, neither received nor lost). */
  inflight = 0;
  /** Bytes delivered on this path so far (every block counted once). */
  delivered = 0;
  deliveredTime = 0;
  /** Earliest time the next request may leave (pacing). */
  nextSendAt = 0;
  /** No new requests before this time: the source answered BUSY, INTERNAL or TOO_MANY. */
  pausedUntil = 0;
  /** No new requests before this time either: the retry time of a BUSY (PROTOCOL.md §4.2). */
  retryUntil = 0;
  /** Address-validation token last handed out by the source's RETRY. */
  token: Uint8Array | undefined;
  /** Bytes of new data it delivered first, and when (for its share and rate). */
  newBytes = 0;
  firstAt = 0;
  lastAt = 0;
  /** Bytes re-requested because they were declared lost on this path. */
  lostBytes = 0;
  #nextSeq = 0;

  /**
   * Copies to send of a request for `blocks` blocks: two once the path has lost more than
   * `DUPLICATE_LOSS` of its bytes, for requests of at least `DUPLICATE_MIN_BLOCKS` blocks. A
   * lost request (60 bytes) costs its whole answer's time on the link — the data paced behind it
   * does not fill the gap — so on a lossy path the request goes twice and the server ignores the
   * copy it gets second (PROTOCOL.md §6.1). A request for one or two big blocks (loopback,
   * where requests are capped to what a socket buffers) is not worth a second datagram: there
   * the datagram count is the cost, not the link, and losses are buffer overflows.
   */
  requestCopies(blocks: number): 1 | 2 {
    if (blocks < DUPLICATE_MIN_BLOCKS) return 1;
    const lost = this.lostBytes;
    return lost > DUPLICATE_LOSS * (lost + this.delivered) ? 2 : 1;
  }
  /** Highest block sequence number received, per lane. */
  #largestSeq: number[] = [];
  #roundEndDelivered = 0;
  #latestRtt = 0;
  #sample: RateSample = {
    delivered: 0,
    intervalMs: 0,
    rttMs: 0,
    appLimited: false,
    priorInflight: 0,
  };
  #lastDeliveredSentAt: number | undefined;

  constructor(
    readonly id: number,
    readonly cc: CongestionController,
    now: number,
    readonly blockSize: number,
    /** Called for each request that leaves the list settled (all its blocks received or lost). */
    readonly onRetire: (r: InFlightRequest) => void = () => {},
  ) {
    this.health = new ServerHealth(now);
    this.deliveredTime = now;
  }

  /** Whether a request of `bytes` may leave now (window and pacing). */
  canSend(now: number, bytes: number, window = this.cc.window()): boolean {
    return now >= this.nextSendTime(bytes, window);
  }

  /**
   * When the path would next allow a request of `bytes` (as `canSend` judges it), or Infinity
   * while the window is full: an arrival or a loss frees it.
   */
  nextSendTime(bytes: number, window = this.cc.window()): number {
    if (!this.health.alive) return Infinity;
    if (this.inflight + bytes > Math.max(window, bytes)) return Infinity;
    return Math.max(this.nextSendAt, this.pausedUntil, this.retryUntil);
  }

  /**
   * Records a request sent at `now`; returns its record. `queueMs`: how long the source may
   * keep it queued before serving it (a swarm source's bound, PROTOCOL.md §4.2), added to its
   * deadline.
   */
  sent(
    now: number,
    id: number,
    a: Assignment,
    appLimited: boolean,
    lane = 0,
    queueMs = 0,
  ): InFlightRequest {
    if (this.requests.length === 0) this.deliveredTime = now; // (idle restart: fresh interval)
    const r: InFlightRequest = {
      id,
      a,
      sentAt: now,
      firstSeq: this.#nextSeq,
      lane,
      state: new Uint8Array(a.blockCount),
      outstanding: a.length,
      scanFrom: 0,
      deliveredAtSend: this.delivered,
      deliveredTimeAtSend: this.deliveredTime,
      firstSentAtSend: this.#lastDeliveredSentAt ?? now,
      appLimited,
      inflightAtSend: this.inflight,
      answered: false,
      deadline: now + queueMs + this.#timeoutFor(a.length),
    };
    this.#nextSeq += a.blockCount;
    this.requests.push(r);
    this.inflight += a.length;
    this.cc.onSent(now, a.length, this.inflight);
    const rate = Math.max(this.cc.pacingRate(), 1e-3);
    // no credit for idle time beyond one millisecond: a paced sender does not burst after idling
    this.nextSendAt = Math.max(this.nextSendAt, now - 1) + a.length / rate;
    if (this.firstAt === 0) this.firstAt = now;
    return r;
  }

  /**
   * Block `block` of `r` (`bytes` long) arrived at `now`. Returns false for a block already
   * received. Losses it reveals are pushed to `lost`.
   */
  onBlock(now: number, r: InFlightRequest, block: number, bytes: number, lost: LostRun[]): boolean {
    const was = r.state[block];
    if (was === RECEIVED) return false;
    r.state[block] = RECEIVED;
    this.health.onHeard(now);
    if (was === PENDING) {
      r.outstanding -= bytes;
      this.inflight -= bytes;
    }
    this.delivered += bytes;
    this.deliveredTime = now;
    this.#lastDeliveredSentAt = Math.max(this.#lastDeliveredSentAt ?? -Infinity, r.sentAt);
    const rtt = now - r.sentAt;
    if (!r.answered) {
      r.answered = true;
      this.health.rtt.addSample(rtt);
      this.#latestRtt = rtt;
    }
    const roundStart = r.deliveredAtSend >= this.#roundEndDelivered;
    if (roundStart) this.#roundEndDelivered = this.delivered;
    // (one sample object, refilled: the controller reads it during the call only)
    const sample = this.#sample;
    sample.delivered = this.delivered - r.deliveredAtSend;
    // BBR's interval: the longer of the arrival span and the sending span, so a burst of
    // arrivals after an event-loop stall cannot claim a rate the sender never sent at
    sample.intervalMs = Math.max(
      now - r.deliveredTimeAtSend,
      r.sentAt - r.firstSentAtSend,
      rtt,
      0.05,
    );
    sample.rttMs = rtt;
    sample.appLimited = r.appLimited;
    sample.priorInflight = r.inflightAtSend;
    this.cc.onDelivered(now, bytes, sample, roundStart);
    const seq = r.firstSeq + block;
    if (seq > (this.#largestSeq[r.lane] ?? -1)) {
      this.#largestSeq[r.lane] = seq;
      this.#detectByOrder(now, r.lane, lost);
    }
    this.#retire();
    return true;
  }

  /** Requests past their deadline lose their pending blocks. True if any did. */
  expire(now: number, lost: LostRun[]): boolean {
    let any = false;
    for (const r of this.requests) {
      if (r.deadline > now || r.outstanding === 0) continue;
      any = true;
      this.#loseFrom(now, r, 0, r.a.blockCount, lost);
    }
    if (any) this.#retire();
    return any;
  }

  /** Earliest request deadline, or Infinity. */
  nextDeadline(): number {
    let t = Infinity;
    for (const r of this.requests) if (r.outstanding > 0 && r.deadline < t) t = r.deadline;
    return t;
  }

  /** Drops a request (answered by an error or RETRY, or abandoned); returns its record. */
  remove(id: number): InFlightRequest | undefined {
    const i = this.requests.findIndex((r) => r.id === id);
    if (i < 0) return undefined;
    const [r] = this.requests.splice(i, 1);
    this.inflight -= r.outstanding;
    r.outstanding = 0;
    return r;
  }

  /** Drops every request; returns them. */
  clear(): InFlightRequest[] {
    const all = this.requests.splice(0);
    for (const r of all) r.outstanding = 0;
    this.inflight = 0;
    return all;
  }

  /**
   * Packet threshold: a block overtaken by `REORDER_THRESHOLD` later ones of the same lane is
   * lost (blocks of different lanes reach different sockets, read in no particular order).
   */
  #detectByOrder(now: number, lane: number, lost: LostRun[]): void {
    const limit = this.#largestSeq[lane] - REORDER_THRESHOLD; // blocks before `limit` are lost
    for (const r of this.requests) {
      if (r.firstSeq >= limit) break;
      if (r.lane !== lane) continue;
      if (r.outstanding > 0) this.#loseFrom(now, r, r.scanFrom, limit - r.firstSeq, lost);
      r.scanFrom = Math.max(r.scanFrom, Math.min(r.a.blockCount, limit - r.firstSeq));
    }
  }

  /** Declares the pending blocks of `r` in [from, to) lost, as runs. */
  #loseFrom(now: number, r: InFlightRequest, from: number, to: number, lost: LostRun[]): void {
    const end = Math.min(to, r.a.blockCount);
    let b = from;
    while (b < end) {
      if (r.state[b] !== PENDING) {
        b++;
        continue;
      }
      const first = b;
      let bytes = 0;
      while (b < end && r.state[b] === PENDING) {
        r.state[b] = LOST;
        bytes += this.#blockBytes(r, b);
        b++;
      }
      r.outstanding -= bytes;
      this.inflight -= bytes;
      this.lostBytes += bytes;
      this.cc.onLost(now, bytes);
      lost.push({ request: r, firstBlock: first, blockCount: b - first, bytes });
    }
  }

  #blockBytes(r: InFlightRequest, b: number): number {
    return b === r.a.blockCount - 1 ? r.a.length - b * this.blockSize : this.blockSize;
  }

  /** Settled requests leave the head of the list. */
  #retire(): void {
    let n = 0;
    while (n < this.requests.length && this.requests[n].outstanding === 0) n++;
    if (n === 0) return;
    for (const r of this.requests.splice(0, n)) this.onRetire(r);
  }

  /**
   * A request's deadline: the retransmission timeout, but at least two of the latest round
   * trips (a queue building up on the path stretches them faster than RFC 6298's variance
   * follows), plus the time its blocks take at the pacing rate. Only tails wait for it: losses
   * in a stream of blocks are found by order long before.
   */
  #timeoutFor(bytes: number): number {
    const rtt = Math.max(this.health.rtt.srtt ?? 0, this.#latestRtt);
    return Math.max(this.health.rtt.rto(), 2 * rtt) + bytes / Math.max(this.cc.pacingRate(), 1e-3);
  }
}
