/**
 * `serve --tracker`: a server announcing the files it serves as a seed of each file's swarm, one
 * {@link Announcer} per file (BEP 15 announces one info-hash at a time, so the number is capped:
 * {@link MAX_SEEDED_FILES}). Pure apart from the announcers' own codec: the server shell sends
 * what `pollTransmit` gives from its socket (so the tracker lists the port it serves on) and
 * hands back the tracker's datagrams.
 *
 * @module
 */

import { Announcer, type AnnouncerEvent } from "./announcer.ts";
import type { Family } from "./bep15_packet.ts";

/** Files a server announces at most (the first ones its background pass hashed). */
export const MAX_SEEDED_FILES = 64;

/** The announces of a seeding server. */
export class SeedAnnouncer {
  #announcers: Announcer[] = [];
  #port: number;
  #family: Family;
  #secret: Uint8Array | undefined;
  #peerId = crypto.getRandomValues(new Uint8Array(20));
  #key = crypto.getRandomValues(new Uint32Array(1))[0];

  constructor(port: number, family: Family, secret?: Uint8Array) {
    this.#port = port;
    this.#family = family;
    this.#secret = secret;
  }

  /** Number of files announced. */
  get size(): number {
    return this.#announcers.length;
  }

  /** Announces the file whose swarm is `infoHash` (ignored beyond the cap); false if ignored. */
  add(infoHash: Uint8Array, now: number): boolean {
    if (this.#announcers.length >= MAX_SEEDED_FILES) return false;
    const a = new Announcer({
      infoHash,
      peerId: this.#peerId,
      key: this.#key,
      port: this.#port,
      family: this.#family,
      numWant: 0, // a seed needs no peers: they come to it
      secret: this.#secret,
      random: () => crypto.getRandomValues(new Uint32Array(1))[0],
    }, now);
    a.setProgress({ downloaded: 0, left: 0, uploaded: 0 });
    this.#announcers.push(a);
    return true;
  }

  /** A datagram from the tracker; false when no announcer was waiting for it. */
  handleDatagram(now: number, bytes: Uint8Array): boolean {
    return this.#announcers.some((a) => a.handleDatagram(now, bytes));
  }

  /** Timers of every announcer. */
  handleTimeout(now: number): void {
    for (const a of this.#announcers) a.handleTimeout(now);
  }

  /** Every datagram due now. */
  pollTransmit(): Uint8Array[] {
    const out: Uint8Array[] = [];
    for (const a of this.#announcers) {
      for (let b = a.pollTransmit(); b; b = a.pollTransmit()) out.push(b);
    }
    return out;
  }

  /** Events worth a log line (one per kind and message: 64 files must not say it 64 times). */
  poll(): AnnouncerEvent[] {
    const seen = new Set<string>();
    const out: AnnouncerEvent[] = [];
    for (const a of this.#announcers) {
      for (let e = a.poll(); e; e = a.poll()) {
        const key = e.kind === "refused" ? `refused ${e.message}` : e.kind;
        if (e.kind === "peers" || seen.has(key)) continue;
        seen.add(key);
        out.push(e);
      }
    }
    return out;
  }

  /** Leaving: each announcer says `stopped` (best effort). */
  stop(now: number): void {
    for (const a of this.#announcers) a.stop(now);
  }
}
