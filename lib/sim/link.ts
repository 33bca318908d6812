/**
 * One direction of a simulated network path, modelled as the WAN emulator models it: random
 * loss on entry, a serialisation clock at the link rate, a FIFO queue with tail drop, then the
 * propagation delay. Optional extras: reordering (a datagram held back a little), outages (a
 * blackhole between two times), and an MTU above which a datagram travels as IP fragments that
 * are lost independently (one lost fragment loses the datagram).
 *
 * @module
 */

import type { EventQueue } from "./event_queue.ts";

/** Shape of one direction of a path. */
export interface LinkSpec {
  /** Bits per second. */
  rateBps: number;
  /** One-way delay in ms. */
  delayMs: number;
  /** Queue limit in bytes (tail drop above it). */
  queueBytes: number;
  /** Probability that one IP packet is lost. */
  loss: number;
  /** Probability that a datagram is held back by `reorderMs`. */
  reorder?: number;
  reorderMs?: number;
  /** Blackholes: every datagram entering in [from, to) ms is dropped. */
  outages?: { from: number; to: number }[];
  /** IP MTU; larger datagrams are fragmented (default 1500). */
  mtu?: number;
}

/** Per-link counters. */
export interface LinkStats {
  sent: number;
  lost: number;
  queueDrops: number;
  bytes: number;
}

/** Overhead of the IPv4 and UDP headers on every datagram. */
export const IP_UDP_HEADER = 28;

/** One direction of a path; `send` schedules delivery (or drops). */
export class Link {
  readonly stats: LinkStats = { sent: 0, lost: 0, queueDrops: 0, bytes: 0 };
  #freeAt = 0;
  #bytesPerMs: number;

  constructor(
    readonly spec: LinkSpec,
    readonly clock: EventQueue,
    readonly random: () => number,
  ) {
    this.#bytesPerMs = spec.rateBps / 8000;
  }

  /** A datagram of `payload` bytes enters the link now; `deliver` runs when it arrives. */
  send(payload: number, deliver: () => void): void {
    const now = this.clock.now;
    const s = this.spec;
    this.stats.sent++;
    if (s.outages?.some((o) => now >= o.from && now < o.to) || this.#lost(payload)) {
      this.stats.lost++;
      return;
    }
    const wire = payload + IP_UDP_HEADER * this.#fragments(payload);
    const start = Math.max(this.#freeAt, now);
    if ((start - now) * this.#bytesPerMs > s.queueBytes) {
      this.stats.queueDrops++;
      return;
    }
    this.#freeAt = start + wire / this.#bytesPerMs;
    this.stats.bytes += wire;
    let at = this.#freeAt + s.delayMs;
    if (s.reorder && this.random() < s.reorder) at += s.reorderMs ?? 1;
    this.clock.at(at, deliver);
  }

  #fragments(payload: number): number {
    const room = (this.spec.mtu ?? 1500) - 20; // IP header
    return Math.max(1, Math.ceil((payload + 8) / (room - (room % 8))));
  }

  #lost(payload: number): boolean {
    const p = this.spec.loss;
    if (p <= 0) return false;
    const frags = this.#fragments(payload);
    const all = frags === 1 ? 1 - p : Math.pow(1 - p, frags);
    return this.random() >= all;
  }
}
