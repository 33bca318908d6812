/**
 * The BEP 15 tracker's core, pure: a datagram, its source and the time in; the reply to send
 * (or nothing) out, with counters. No sockets: `tracker.ts` moves the bytes, tests and the
 * load bench drive it directly.
 *
 * Order of the checks on each datagram, cheapest and most protective first:
 * 1. size: longer than {@linkcode MAX_REQUEST_SIZE} → dropped (`oversized`);
 * 2. the source's token bucket (`source_limiter.ts`) → dropped when empty (`rateLimited`);
 * 3. parsing → dropped when not a request (`malformed`), except that a client holding a valid
 *    connection id is told what was wrong (unknown action or event, too many info-hashes);
 * 4. connect → a connection id (16 bytes for 16: nothing to amplify);
 * 5. announce and scrape need a valid connection id for their source address, else they are
 *    dropped (`badConnectionId`): until a source has proven it receives our replies, it gets
 *    nothing larger than what it sent, so a forged source address cannot aim replies at a
 *    victim (BEP 15's reason for connection ids);
 * 6. with a key, the authentication option (`request_auth.ts`) → error reply when missing or
 *    wrong (`authFailed`);
 * 7. with a whitelist, an announce for an unlisted info-hash → error "info-hash not allowed";
 *    a scrape gets zeros for it (nothing is revealed, and a scrape of several still answers).
 *
 * The IP field of an announce is ignored: a peer is listed at the address its datagram came
 * from. Honouring it would let anyone list a third party's address, and make the tracker send
 * every peer of a swarm to a victim; clients do not fill it in anyway. IPv4-mapped IPv6 source
 * addresses (a dual-stack socket) count as IPv4: that is what the peer is.
 *
 * @module
 */

import {
  ANNOUNCE_RESPONSE_HEADER,
  type AnnounceRequest,
  encodeAnnounceResponse,
  encodeConnectResponse,
  encodeErrorResponse,
  encodeScrapeResponse,
  MAX_REQUEST_SIZE,
  MAX_SCRAPE_HASHES,
  parseRequest,
  type RequestError,
  type ScrapeRequest,
} from "./bep15_packet.ts";
import { ConnectionIds } from "./connection_id.ts";
import { checkTrackerAuth, trackerAuthMessage } from "./request_auth.ts";
import { DEFAULT_SOURCE_LIMITS, SourceLimiter, type SourceLimits } from "./source_limiter.ts";
import { DEFAULT_SWARM_LIMITS, type SwarmLimits, SwarmTable } from "./swarm_table.ts";
import { toHex } from "./whitelist.ts";

/** Where a datagram came from. */
export interface TrackerSource {
  /** The address: 4 bytes (IPv4) or 16 (IPv6; IPv4-mapped ones are treated as IPv4). */
  readonly address: Uint8Array;
  readonly port: number;
}

/** How a {@linkcode TrackerCore} is set up. */
export interface TrackerCoreOptions {
  /** Key of the connection ids: 16 random bytes, kept for the process's lifetime. */
  readonly idKey: Uint8Array;
  /** `--secret-file`: announces and scrapes must carry the authentication option. */
  readonly authKey?: Uint8Array;
  /** `--whitelist`: the only info-hashes (lowercase hex) served; undefined: all. */
  readonly whitelist?: ReadonlySet<string>;
  /** Caps and timings of the swarm table (default {@linkcode DEFAULT_SWARM_LIMITS}). */
  readonly swarmLimits?: SwarmLimits;
  /** Per-source rate limit (default {@linkcode DEFAULT_SOURCE_LIMITS}). */
  readonly sourceLimits?: SourceLimits;
  /** Numbers in [0, 1) for choosing peers (default Math.random). */
  readonly random?: () => number;
}

/** What the tracker counted since it started. */
export interface TrackerCounters {
  /** Datagrams handed to the core. */
  datagrams: number;
  /** Dropped: longer than any request. */
  oversized: number;
  /** Dropped: the source's token bucket was empty. */
  rateLimited: number;
  /** Not a request (short, bad protocol id, unknown action...). */
  malformed: number;
  /** Announces and scrapes dropped for a missing, expired or forged connection id. */
  badConnectionId: number;
  /** Requests refused by `--secret-file` authentication. */
  authFailed: number;
  /** Announces refused by `--whitelist`. */
  notAllowed: number;
  /** Connect requests answered. */
  connects: number;
  /** Announces answered with peers (or as stopped). */
  announces: number;
  /** Scrapes answered. */
  scrapes: number;
  /** Announcers not listed because a cap was reached (they still got peers). */
  unlisted: number;
  /** Announces refused because the swarm table was full. */
  swarmsFull: number;
  /** Error replies sent (any reason). */
  errors: number;
}

/** The message of the error reply to an announce for an info-hash not in the whitelist. */
export const NOT_ALLOWED_MESSAGE = "info-hash not allowed";

/** The tracker's decisions (see the module comment). */
export class TrackerCore {
  /** Counters since the start. */
  readonly counters: TrackerCounters = {
    datagrams: 0,
    oversized: 0,
    rateLimited: 0,
    malformed: 0,
    badConnectionId: 0,
    authFailed: 0,
    notAllowed: 0,
    connects: 0,
    announces: 0,
    scrapes: 0,
    unlisted: 0,
    swarmsFull: 0,
    errors: 0,
  };
  /** The swarms and their peers. */
  readonly swarms: SwarmTable;
  /** The per-source buckets. */
  readonly limiter: SourceLimiter;
  #ids: ConnectionIds;
  /** Every reply is encoded here: room for the largest announce or scrape reply. */
  #out: Uint8Array;
  #authKey: Uint8Array | undefined;
  #whitelist: ReadonlySet<string> | undefined;

  /**
   * Replaces the whitelist (`--whitelist` read again on SIGHUP): announces for hashes no longer
   * listed are refused from now on, and those swarms expire as their peers stop announcing.
   */
  setWhitelist(whitelist: ReadonlySet<string>): void {
    this.#whitelist = whitelist;
  }

  /** A core with `o`'s keys, whitelist and limits. */
  constructor(o: TrackerCoreOptions) {
    this.#ids = new ConnectionIds(o.idKey);
    this.#authKey = o.authKey;
    this.#whitelist = o.whitelist;
    this.swarms = new SwarmTable(o.swarmLimits ?? DEFAULT_SWARM_LIMITS, o.random);
    this.limiter = new SourceLimiter(o.sourceLimits ?? DEFAULT_SOURCE_LIMITS);
    const announce = ANNOUNCE_RESPONSE_HEADER + 18 * this.swarms.limits.maxNumWant;
    this.#out = new Uint8Array(Math.max(announce, 8 + 12 * MAX_SCRAPE_HASHES, MAX_REQUEST_SIZE));
  }

  /**
   * The reply to `datagram` from `source` at `now` (ms), or undefined to send nothing. The reply
   * is a view into a buffer the next call reuses: send it first. `datagram` is read only during
   * the call (nothing is kept that points into it).
   */
  handle(datagram: Uint8Array, source: TrackerSource, now: number): Uint8Array | undefined {
    this.counters.datagrams++;
    if (datagram.length > MAX_REQUEST_SIZE) return void this.counters.oversized++;
    const address = normalised(source.address);
    if (!this.limiter.admit(toHex(address), now)) return void this.counters.rateLimited++;
    const parsed = parseRequest(datagram);
    if (!parsed.ok) return this.#malformed(parsed.error, address, now);
    const r = parsed.request;
    if (r.action === "connect") {
      this.counters.connects++;
      return encodeConnectResponse(r.transactionId, this.#ids.issue(address, now), this.#out);
    }
    if (!this.#ids.valid(r.connectionId, address, now)) {
      return void this.counters.badConnectionId++;
    }
    if (this.#authKey) {
      const failure = checkTrackerAuth(datagram, r.auth, this.#authKey);
      if (failure !== undefined) {
        this.counters.authFailed++;
        return this.#error(r.transactionId, trackerAuthMessage(failure));
      }
    }
    return r.action === "announce" ? this.#announce(r, address, now) : this.#scrape(r);
  }

  /** Expires peers and empty swarms, forgets idle sources; call every few seconds. */
  tick(now: number): void {
    this.swarms.sweep(now);
    this.limiter.prune(now);
  }

  #announce(r: AnnounceRequest, address: Uint8Array, now: number): Uint8Array {
    const infoHash = toHex(r.infoHash);
    if (this.#whitelist && !this.#whitelist.has(infoHash)) {
      this.counters.notAllowed++;
      return this.#error(r.transactionId, NOT_ALLOWED_MESSAGE);
    }
    const out = this.swarms.announce({
      infoHash,
      address,
      port: r.port,
      event: r.event,
      left: r.left,
      numWant: r.numWant,
    }, now);
    if (!out.ok) {
      this.counters.swarmsFull++;
      return this.#error(r.transactionId, "tracker full: too many swarms");
    }
    this.counters.announces++;
    if (!out.listed && r.event !== "stopped" && r.port !== 0) this.counters.unlisted++;
    return encodeAnnounceResponse({ transactionId: r.transactionId, ...out }, this.#out);
  }

  #scrape(r: ScrapeRequest): Uint8Array {
    this.counters.scrapes++;
    const entries = r.infoHashes.map((h) => {
      const hex = toHex(h);
      return this.#whitelist && !this.#whitelist.has(hex)
        ? { seeders: 0, completed: 0, leechers: 0 }
        : this.swarms.scrape(hex);
    });
    return encodeScrapeResponse(r.transactionId, entries, this.#out);
  }

  /**
   * Counts a datagram that is not a request. A sender holding a valid connection id is a client
   * whose address is proven; it is told what was wrong when that is something it can fix.
   */
  #malformed(e: RequestError, address: Uint8Array, now: number): Uint8Array | undefined {
    this.counters.malformed++;
    const h = e.header;
    const message = e.fault === "action"
      ? "unknown action"
      : e.fault === "event"
      ? "unknown event"
      : e.fault === "too_many_hashes"
      ? `at most ${MAX_SCRAPE_HASHES} info-hashes per scrape`
      : undefined;
    if (!h || message === undefined || !this.#ids.valid(h.connectionId, address, now)) {
      return undefined;
    }
    return this.#error(h.transactionId, message);
  }

  #error(transactionId: number, message: string): Uint8Array {
    this.counters.errors++;
    return encodeErrorResponse(transactionId, message, this.#out);
  }
}

/** The address an IPv4-mapped IPv6 address (::ffff:a.b.c.d) stands for; others as they are. */
export function normalised(address: Uint8Array): Uint8Array {
  if (address.length !== 16 || address[10] !== 0xff || address[11] !== 0xff) return address;
  for (let i = 0; i < 10; i++) if (address[i] !== 0) return address;
  return address.slice(12);
}
