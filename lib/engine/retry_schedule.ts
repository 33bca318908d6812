/**
 * The one retry policy of the request-reply exchanges outside the transfer (metadata, hash
 * list): exponential backoff from a first timeout that follows the measured round trip, a
 * bounded number of attempts, and the shared interface the shell drives every such machine by.
 *
 * @module
 */

import type { Packet } from "../wire/packet.ts";

/** How a request is retried. */
export interface RetryOptions {
  /** Timeout of the first attempt before any round trip is known (ms). */
  firstTimeoutMs: number;
  /** Never wait longer than this for one attempt (ms). */
  maxTimeoutMs: number;
  /** Attempts before giving up. */
  attempts: number;
}

/**
 * Timeout of attempt `attempt` (from 0): three round trips once one is known (a reply needs
 * one; the rest absorbs a busy server and jitter), `firstTimeoutMs` before, doubled per attempt.
 */
export function attemptTimeout(o: RetryOptions, attempt: number, rttMs?: number): number {
  const base = rttMs === undefined ? o.firstTimeoutMs : Math.max(o.firstTimeoutMs / 2, 3 * rttMs);
  return Math.min(o.maxTimeoutMs, base * 2 ** attempt);
}

/** A request for a shell to send. */
export interface RequestTransmit {
  server: number;
  packet: Packet;
}

/**
 * A pure request-reply machine, driven like the fetch engine: replies and timers in, requests
 * out, with an injected clock. The shell loops `pollTransmit`, sleeps until `pollTimeout` or
 * the next datagram, and stops when `done`.
 */
export interface RequestMachine {
  /** A datagram from `server`; false when it is not an answer to one of this machine's ids. */
  handleReply(now: number, server: number, p: Packet): boolean;
  /** Time has come (see `pollTimeout`). */
  handleTimeout(now: number): void;
  /**
   * The network says `server` cannot be reached (e.g. "Connection refused": an ICMP port
   * unreachable seen by a connected socket); false when that changes nothing here.
   */
  handleUnreachable?(now: number, server: number, reason: string): boolean;
  /** The next request to send now, if any. */
  pollTransmit(now: number): RequestTransmit | undefined;
  /** When to call `handleTimeout` next. */
  pollTimeout(): number | undefined;
  /** Whether the machine has its answer. */
  readonly done: boolean;
}
