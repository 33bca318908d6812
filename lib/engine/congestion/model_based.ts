/**
 * A model-based congestion controller in the spirit of BBR (Cardwell et al., 2016): it keeps a
 * model of the path — the bottleneck rate (the highest delivery rate seen over the last ten
 * rounds) and the minimum round-trip time — and paces requests at that rate, with a window of
 * twice the bandwidth-delay product. Random loss does not shrink the model, so 3 % loss costs
 * about 3 % of goodput instead of the halvings a loss-based controller (Reno, CUBIC) makes.
 *
 * It still backs off on real congestion. A queue that overflows shows two symptoms at once:
 * loss, and round trips well above the path's minimum (the queue is full). A round with both
 * caps the bytes in flight below what overflowed it (BBRv2's inflight_hi), a cap that then
 * grows back slowly; the rate model is kept, because a receiver handling datagrams in batches
 * makes delivery-rate samples run high, and cutting the model on every overflow kept each path
 * of a 3 × 333 Mbit/s × 10 ms emulated WAN at about 80 % of its link. A round losing more than
 * a quarter of its bytes lowers the model to what was delivered, whatever the round trips say.
 * Random loss on an idle path shows the first symptom without the second and is ignored.
 *
 * Pure: every method takes the current time.
 *
 * @module
 */

import type { CongestionController, RateSample } from "./controller.ts";

/** Tuning of the model-based controller. */
export interface ModelBasedOptions {
  /**
   * Bytes that may be in flight in startup, before the model's window exceeds them. (Before the
   * first sample, only the startup pacing of this window per `initialRttMs` spaces requests:
   * `maxWindow` is the limit then.)
   */
  initialWindow: number;
  /** Round-trip time to assume before the first sample (ms), e.g. the metadata exchange's. */
  initialRttMs: number;
  /** Smallest window in bytes (a few requests' worth, so losses can still be detected). */
  minWindow: number;
  /** Largest window in bytes (e.g. what the receiving sockets can buffer on loopback). */
  maxWindow: number;
  /**
   * Smallest window once the minimum round trip is under `lanRttMs` (default `minWindow`): a
   * receiver that handles datagrams in batches needs more in flight than two sub-millisecond
   * bandwidth-delay products, and on such a path that costs nothing in latency.
   */
  lanMinWindow?: number;
  /** Round trips under this (ms) are a LAN's or loopback's (default 2). */
  lanRttMs?: number;
}

/** Startup gain 2/ln 2: doubles the delivery rate every round while the path has room. */
const STARTUP_GAIN = 2.885;
/**
 * Window gain: two bandwidth-delay products, in startup too (as BBRv3 does): the pacing gain
 * doubles the rate, and the window stops the overshoot of the round before the estimate catches
 * up at one pipe plus one queue of a BDP, instead of overflowing that queue.
 */
const CWND_GAIN = 2;
/** Pacing gains of the probe cycle: probe up, drain what that queued, then cruise. */
const PROBE_GAINS = [1.25, 0.75, 1, 1, 1, 1, 1, 1];
/** Most data a LAN path's window floor may queue, in ms of its rate. */
const LAN_QUEUE_MS = 20;
/** Rounds over which the bottleneck-rate estimate is the maximum. */
const BW_WINDOW_ROUNDS = 10;
/** How long a minimum round-trip time stays valid (ms). */
const MIN_RTT_WINDOW_MS = 10_000;
/** Startup ends when three rounds in a row raise the rate by less than this factor. */
const FULL_BW_GROWTH = 1.25;
const FULL_BW_ROUNDS = 3;
/** Startup ends once a round trip exceeds this multiple of the minimum (plus 2 ms). */
const STARTUP_EXIT_RTT = 1.5;
/**
 * Loss share of a round above which a queueing round counts as congestion: startup ends, the
 * probe cycle restarts. (Any loss in a queueing round lowers the in-flight ceiling.)
 */
const CONGESTION_LOSS = 0.02;
/** Loss share of a round that counts as congestion whatever the round trips say. */
const HEAVY_LOSS = 0.25;
/** What the model keeps of the delivered rate on heavy loss. */
const CONGESTION_BACKOFF = 0.85;
/** What the in-flight ceiling keeps of the recent in-flight peak on congestion (BBRv2's beta). */
const INFLIGHT_HI_BETA = 0.85;
/** Share by which the in-flight ceiling grows per round without congestion. */
const INFLIGHT_HI_GROWTH = 1 / 64;

type Mode = "startup" | "drain" | "probe_bw";

/** BBR-style controller: paces at the measured bottleneck rate. */
export class ModelBasedController implements CongestionController {
  #opts: ModelBasedOptions;
  #mode: Mode = "startup";
  /** Per-round maximum delivery rates (bytes/ms), newest last. */
  #bwRounds: number[] = [0];
  #btlBw = 0;
  #minRtt = Infinity;
  #minRttAt = -Infinity;
  #fullBw = 0;
  #fullBwRounds = 0;
  /** Consecutive rounds whose every round trip was well above the minimum (a queue). */
  #fullRounds = 0;
  #cycle = 2;
  #cycleAt = 0;
  #roundLost = 0;
  #roundDelivered = 0;
  /** Smallest round trip of the current round: above the minimum only if a queue stands. */
  #roundMinRtt = Infinity;
  /** After a timeout the window is the minimum until something arrives. */
  #timedOut = false;
  /**
   * Ceiling on bytes in flight learnt from congestion (BBRv2's inflight_hi): what overflowed
   * the bottleneck's queue, less a margin. Infinity until the first congestion.
   */
  #inflightHi = Infinity;
  /** Most bytes in flight at a send, this round and the one before. */
  #roundMaxInflight = 0;
  #lastRoundMaxInflight = 0;
  /** Rounds since the ceiling was last cut (one cut per overflow episode). */
  #roundsSinceCut = Infinity;

  /** A controller with no samples yet. */
  constructor(opts: ModelBasedOptions) {
    this.#opts = opts;
  }

  /** The bottleneck-rate estimate, bytes per ms. */
  get bottleneckRate(): number {
    return this.#btlBw;
  }

  /** The minimum round-trip time seen (ms), or Infinity. */
  get minRtt(): number {
    return this.#minRtt;
  }

  /** The current mode: startup, drain or probe_bw. */
  get mode(): Mode {
    return this.#mode;
  }

  onSent(_now: number, _bytes: number, inflight: number): void {
    if (inflight > this.#roundMaxInflight) this.#roundMaxInflight = inflight;
  }

  onDelivered(now: number, bytes: number, s: RateSample, roundStart: boolean): void {
    this.#timedOut = false;
    this.#roundDelivered += bytes;
    this.#roundMinRtt = Math.min(this.#roundMinRtt, s.rttMs);
    if (s.rttMs < this.#minRtt || now - this.#minRttAt > MIN_RTT_WINDOW_MS) {
      this.#minRtt = s.rttMs;
      this.#minRttAt = now;
    }
    if (roundStart) this.#endRound(now);
    const rate = s.delivered / s.intervalMs;
    // an app-limited sample only says the path can do at least this much
    if (!s.appLimited || rate > this.#btlBw) {
      const last = this.#bwRounds.length - 1;
      if (rate > this.#bwRounds[last]) this.#bwRounds[last] = rate;
      if (rate > this.#btlBw) this.#btlBw = rate;
    }
    if (this.#mode === "probe_bw" && now - this.#cycleAt >= this.#rtt()) {
      this.#cycle = (this.#cycle + 1) % PROBE_GAINS.length;
      this.#cycleAt = now;
    }
  }

  onLost(_now: number, bytes: number): void {
    this.#roundLost += bytes;
  }

  onTimeout(_now: number): void {
    this.#timedOut = true;
  }

  pacingRate(): number {
    const initial = STARTUP_GAIN * this.#opts.initialWindow / Math.max(1, this.#opts.initialRttMs);
    // in startup the rate only grows: the first samples measure the initial window, not the path
    const modelled = this.#mode === "startup"
      ? Math.max(initial, STARTUP_GAIN * this.#btlBw)
      : this.#gain() * this.#btlBw;
    // On a LAN the window is the limit, not the pacing: requests of a few blocks each, spaced
    // at a model that measures nothing but its own spacing (one request per round trip), can
    // never probe their way up after a loss. Pace at the floor window per millisecond at least.
    const lanWindow = this.#lanFloor();
    if (lanWindow === 0) return modelled;
    return Math.max(modelled, lanWindow / Math.max(1, this.#minRtt));
  }

  /**
   * The window floor of a LAN path (0 elsewhere): `lanMinWindow`, but no more than
   * `LAN_QUEUE_MS` of the path's rate. A server capped at 4 MiB/s on loopback is a LAN path too,
   * and 4 MiB in flight to it is a second of its data queued: its last pieces then set the end of
   * the transfer. A window-limited path measures its real rate at once (the window, not the
   * pacing, spaces the requests), so the floor cannot keep a collapsed model down.
   */
  #lanFloor(): number {
    const lan = this.#opts.lanMinWindow;
    if (lan === undefined || !this.#onLan()) return 0;
    return Math.max(this.#opts.minWindow, Math.min(lan, this.#btlBw * LAN_QUEUE_MS));
  }

  /** Whether the minimum round trip is a LAN's (see `lanMinWindow`). */
  #onLan(): boolean {
    return this.#minRtt < (this.#opts.lanRttMs ?? 2);
  }

  window(): number {
    const { initialWindow, maxWindow } = this.#opts;
    if (this.#timedOut) return this.#opts.minWindow;
    const minWindow = Math.max(this.#opts.minWindow, this.#lanFloor());
    // before the first sample only the startup pacing spaces the first round trip's requests
    // (as it always has: the window was NaN then, which compares as no limit)
    if (this.#minRtt === Infinity) return maxWindow;
    const bdp = this.#btlBw * this.#minRtt;
    const w = this.#mode === "startup" ? Math.max(initialWindow, CWND_GAIN * bdp) : CWND_GAIN * bdp;
    return Math.min(maxWindow, Math.max(minWindow, Math.min(w, this.#inflightHi)));
  }

  describe(): string {
    const rtt = this.#minRtt === Infinity ? "?" : this.#minRtt.toFixed(1);
    const hi = this.#inflightHi === Infinity
      ? ""
      : ` hi ${(this.#inflightHi / 1000).toFixed(0)} kB`;
    return `${this.#mode} ${(this.#btlBw / 1000).toFixed(2)} MB/s rtt ${rtt} ms${hi}`;
  }

  #rtt(): number {
    return this.#minRtt === Infinity ? this.#opts.initialRttMs : this.#minRtt;
  }

  #gain(): number {
    if (this.#mode === "startup") return STARTUP_GAIN;
    if (this.#mode === "drain") return 1 / STARTUP_GAIN;
    return PROBE_GAINS[this.#cycle];
  }

  /** Round bookkeeping: rate window, startup exit, congestion check. */
  #endRound(now: number): void {
    const lost = this.#roundLost;
    const total = lost + this.#roundDelivered;
    const lossShare = total === 0 ? 0 : lost / total;
    // a standing queue lifts every round trip of the round, jitter only some
    const queueing = this.#roundMinRtt > this.#minRtt + Math.max(2, 0.25 * this.#minRtt);
    const congested = (lossShare > CONGESTION_LOSS && queueing) || lossShare > HEAVY_LOSS;
    const roundRate = this.#bwRounds[this.#bwRounds.length - 1];
    // a queue is building (every round trip of the round well above the minimum): the path is
    // full, stop doubling now rather than when the queue overflows (as HyStart does)
    const full = this.#roundMinRtt > STARTUP_EXIT_RTT * this.#minRtt + 2;
    const recentInflight = Math.max(this.#roundMaxInflight, this.#lastRoundMaxInflight);
    this.#lastRoundMaxInflight = this.#roundMaxInflight;
    this.#roundMaxInflight = 0;
    this.#roundLost = 0;
    this.#roundDelivered = 0;
    this.#roundMinRtt = Infinity;
    this.#bwRounds.push(0);
    if (this.#bwRounds.length > BW_WINDOW_ROUNDS) this.#bwRounds.shift();
    this.#updateInflightHi((lost > 0 && queueing) || congested, recentInflight);
    // on a LAN or loopback the queue that overflows is the receiver's socket buffer, and the
    // window floor, not the ceiling, bounds what is in flight: there the model is still cut
    // (keeping it re-requested 2-3x as much of the demo's 96 MiB)
    if (lossShare > HEAVY_LOSS || (congested && this.#onLan())) this.#backOff(roundRate, now);
    else if (congested) this.#afterCongestion(now);
    this.#btlBw = Math.max(...this.#bwRounds);

    // two rounds in a row: one round of inflated round trips is as likely the receiver stalling
    // (a busy event loop at the start of a transfer: workers, hash list, JIT) as a queue, and an
    // exit on it left the model at a few MB/s, to climb back at 25 % per probe cycle
    this.#fullRounds = full ? this.#fullRounds + 1 : 0;
    if (this.#mode === "startup" && this.#fullRounds >= 2) this.#mode = "drain";
    else if (this.#mode === "startup") this.#checkFull(now);
    else if (this.#mode === "drain") this.#enterProbe(now);
  }

  #backOff(roundRate: number, now: number): void {
    const cap = CONGESTION_BACKOFF * Math.max(roundRate, 1e-6);
    this.#bwRounds = this.#bwRounds.map((r) => Math.min(r, cap));
    if (this.#mode === "startup") this.#mode = "drain";
    else this.#enterProbe(now);
  }

  /**
   * The in-flight ceiling after a round. A round with losses and a standing queue overflowed the
   * queue at about what was in flight a round ago: stay under it from now on. The rate model is
   * kept: delivery-rate samples run high when arrivals bunch (a receiver handling datagrams in
   * batches), and a model cut on every overflow left each path paced at 80 % of its link; the
   * ceiling alone keeps the queue from overflowing. Guards, as BBRv2's: one cut per episode
   * (the round after a cut still carries losses sent before it), never below 85 % of the
   * modelled bandwidth-delay product (a round with little in flight — the tail of a file, a
   * full stream buffer — would otherwise leave a ceiling of a few blocks), and growth only
   * while the ceiling is what limits the window.
   */
  #updateInflightHi(overflow: boolean, recentInflight: number): void {
    const bdp = this.#minRtt === Infinity ? 0 : this.#btlBw * this.#minRtt;
    if (overflow && this.#roundsSinceCut >= 1) {
      const cut = Math.min(this.#inflightHi, INFLIGHT_HI_BETA * recentInflight);
      this.#inflightHi = Math.max(INFLIGHT_HI_BETA * bdp, cut);
      this.#roundsSinceCut = 0;
      return;
    }
    this.#roundsSinceCut++;
    if (!overflow && this.#inflightHi < CWND_GAIN * bdp) {
      this.#inflightHi += this.#inflightHi * INFLIGHT_HI_GROWTH;
    }
  }

  /** Leaves startup (or restarts the probe cycle) without touching the rate model. */
  #afterCongestion(now: number): void {
    if (this.#mode === "startup") this.#mode = "drain";
    else this.#enterProbe(now);
  }

  #checkFull(_now: number): void {
    if (this.#btlBw >= this.#fullBw * FULL_BW_GROWTH) {
      this.#fullBw = this.#btlBw;
      this.#fullBwRounds = 0;
    } else if (++this.#fullBwRounds >= FULL_BW_ROUNDS) {
      this.#mode = "drain";
    }
  }

  #enterProbe(now: number): void {
    this.#mode = "probe_bw";
    this.#cycle = 2; // cruise first: the drain (or back-off) just emptied the queue
    this.#cycleAt = now;
  }
}
