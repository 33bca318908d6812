/**
 * Per-server liveness: round-trip estimate, timeouts with backoff, and the decision to drop a
 * server that stopped answering. Pure: every method takes the current time.
 *
 * @module
 */

import { ErrorCode, errorCodeName } from "../wire/packet.ts";
import { DEFAULT_RTT_OPTIONS, RttEstimator, type RttOptions } from "./rtt.ts";

/** When a silent server is given up on. */
export interface HealthOptions {
  /** Timeouts in a row (with nothing heard in between) before a server can be dropped. */
  maxTimeouts: number;
  /** And at least this long without a single datagram from it, in ms. */
  deadAfterMs: number;
  /**
   * When no server at all has been heard for `deadAfterMs`, the outage is more likely on the
   * client's side (a dead link, a suspended laptop) than on every server at once: a server is
   * then given up only after this long (ms).
   */
  allSilentDeadAfterMs: number;
  /** Retransmission timeout bounds. */
  rtt: RttOptions;
}

/** Defaults: a server is dropped after ≥ 4 timeouts and 3 s of silence (10 s if all are). */
export const DEFAULT_HEALTH_OPTIONS: HealthOptions = {
  maxTimeouts: 4,
  deadAfterMs: 3000,
  allSilentDeadAfterMs: 10_000,
  rtt: DEFAULT_RTT_OPTIONS,
};

/**
 * A server answering only BUSY, INTERNAL or TOO_MANY (nothing useful between) is dropped after
 * this many such answers spanning at least `ERRORS_ONLY_MS`: counting answers alone would drop
 * it within one round trip when many requests are in flight.
 */
export const MAX_ERRORS_IN_ROW = 32;
/** See `MAX_ERRORS_IN_ROW` (ms): longer than hashing a large file takes. */
export const ERRORS_ONLY_MS = 30_000;

/**
 * A server whose port the network says is closed (ICMP port unreachable, seen by the batched
 * layer's connected sockets) is dropped once it has refused for this long with nothing heard
 * (ms): a server restarting within it is kept; a dead one costs a second, not the silence limit.
 */
export const REFUSED_DROP_MS = 1000;

/** Liveness state of one server. */
export class ServerHealth {
  /** Round-trip estimator that gives this server's request timeout. */
  readonly rtt: RttEstimator;
  #opts: HealthOptions;
  #timeouts = 0;
  #lastHeard: number;
  #lastBackoff = -Infinity;
  #dropReason: string | undefined;
  #errorsInRow = 0;
  #errorsSince: number | undefined;
  #refusedSince: number | undefined;

  /** Starts tracking a server first contacted at `now` (ms). */
  constructor(now: number, opts: HealthOptions = DEFAULT_HEALTH_OPTIONS) {
    this.#opts = opts;
    this.rtt = new RttEstimator(opts.rtt);
    this.#lastHeard = now;
  }

  /** False once the server has been dropped. */
  get alive(): boolean {
    return this.#dropReason === undefined;
  }

  /** Why the server was dropped, if it was. */
  get dropReason(): string | undefined {
    return this.#dropReason;
  }

  /** When the server was last heard from (ms). */
  get lastHeard(): number {
    return this.#lastHeard;
  }

  /** Any valid datagram from the server proves it is alive. */
  onHeard(now: number): void {
    this.#lastHeard = now;
    this.#refusedSince = undefined;
    this.#timeouts = 0;
    this.#errorsInRow = 0;
    this.#errorsSince = undefined;
  }

  /**
   * The source answered BUSY with a retry time (PROTOCOL.md §4.2): it is alive and at its cap,
   * so nothing backs off. With `counts`, such answers count as the passing errors of
   * {@link onError} (a source that answers nothing else for `ERRORS_ONLY_MS` is dropped: a peer
   * cannot keep a fetcher asking forever); without, they are only a sign of life (a trusted
   * server of a crowd may turn one fetcher away for long). Returns whether it is still alive.
   */
  onRetryLater(now: number, message: string, counts: boolean): boolean {
    this.#lastHeard = now;
    this.#timeouts = 0;
    if (!counts) return this.alive;
    this.#errorsSince ??= now;
    if (++this.#errorsInRow >= MAX_ERRORS_IN_ROW && now - this.#errorsSince >= ERRORS_ONLY_MS) {
      this.drop(`only BUSY answers for ${ERRORS_ONLY_MS / 1000} s: ${message}`);
    }
    return this.alive;
  }

  /**
   * A request sent at `sentAt` got no complete answer by `now`. Backs off once per loss
   * episode (not once per request: many requests in flight time out together), and drops the
   * server when it has been silent for long enough. `anyHeard` is when any server of the
   * transfer was last heard (default: never mind the others). Returns whether it is still alive.
   */
  onTimeout(sentAt: number, now: number, anyHeard = now): boolean {
    if (!this.alive) return false;
    this.#timeouts++;
    if (sentAt >= this.#lastBackoff) {
      this.rtt.backOff();
      this.#lastBackoff = now;
    }
    const silentFor = now - this.#lastHeard;
    const allSilent = now - anyHeard >= this.#opts.deadAfterMs;
    const limit = allSilent ? this.#opts.allSilentDeadAfterMs : this.#opts.deadAfterMs;
    if (this.#timeouts >= this.#opts.maxTimeouts && silentFor >= limit) {
      this.drop(`no answer for ${(silentFor / 1000).toFixed(1)} s`);
    }
    return this.alive;
  }

  /**
   * The server answered a request with an ERROR packet. BUSY, INTERNAL and TOO_MANY are
   * passing conditions (back off and retry); anything else (NOT_FOUND, STALE, OUT_OF_RANGE...)
   * means it can no longer serve this file, so it is dropped; so is a server that answers only
   * passing errors for too long (see `MAX_ERRORS_IN_ROW`). Returns whether it is still alive.
   */
  onError(code: number, message: string, now: number): boolean {
    this.#lastHeard = now;
    this.#timeouts = 0;
    if (code === ErrorCode.Busy || code === ErrorCode.Internal || code === ErrorCode.TooMany) {
      this.rtt.backOff();
      // passing, unless it never passes: a server that only ever answers errors is no source
      this.#errorsSince ??= now;
      if (++this.#errorsInRow >= MAX_ERRORS_IN_ROW && now - this.#errorsSince >= ERRORS_ONLY_MS) {
        this.drop(`only ${errorCodeName(code)} answers for ${ERRORS_ONLY_MS / 1000} s: ${message}`);
      }
    } else {
      this.drop(`${errorCodeName(code)}: ${message}`);
    }
    return this.alive;
  }

  /**
   * The network reports the server unreachable (`reason`, e.g. "Connection refused"); it is
   * dropped once that has lasted `REFUSED_DROP_MS` with nothing heard from it. Returns whether
   * it is still alive.
   */
  onUnreachable(now: number, reason: string): boolean {
    if (!this.alive) return false;
    if (this.#refusedSince === undefined || this.#refusedSince < this.#lastHeard) {
      this.#refusedSince = now;
    }
    if (now - this.#refusedSince >= REFUSED_DROP_MS) this.drop(reason.toLowerCase());
    return this.alive;
  }

  /** Drops the server for good, with a reason for the user. */
  drop(reason: string): void {
    this.#dropReason ??= reason;
  }
}
