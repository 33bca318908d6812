/**
 * Fetching the piece-hash list: the list is cut into ranges whose replies fit one datagram of
 * the transfer's block size (no IP fragments off loopback), up to 32 ranges are asked at once,
 * each from the servers in turn with the shared retry policy; a server may answer with fewer
 * hashes than asked (the rest is asked again). Gives up after too many failed attempts in a
 * row (a reply with hashes starts the count over), and the shell falls back to a whole-file
 * check. Pure: times come in as arguments.
 *
 * The list is trusted only once it hashes to the agreed `piecesRoot` (checked by the caller).
 *
 * @module
 */

import { MAX_HASHES_PER_REPLY, type Packet } from "../wire/packet.ts";
import {
  attemptTimeout,
  type RequestMachine,
  type RequestTransmit,
  type RetryOptions,
} from "./retry_schedule.ts";

/** Retry policy of hash requests (the RTT is known from the metadata by then). */
export const HASHES_RETRY: RetryOptions = { firstTimeoutMs: 150, maxTimeoutMs: 4000, attempts: 5 };
/** Ranges asked for at once. */
const PARALLEL_RANGES = 32;

/** What the machine needs to know about the file and the servers. */
export interface HashListOptions {
  fileId: bigint;
  name: string;
  pieceCount: number;
  /** Data bytes per datagram of the transfer: a reply should fit one. */
  blockSize: number;
  /** Servers to ask (their indices), in turn. */
  servers: number[];
  /** Address-validation token of each server. */
  token: (server: number) => Uint8Array;
  /** Round trip of each server, if known (ms). */
  rtt: (server: number) => number | undefined;
  nextRequestId: () => number;
}

interface Range {
  /** Next piece whose hash is missing, and the end of the range. */
  next: number;
  end: number;
  attempt: number;
  id: number | undefined;
  server: number;
  sentAt: number;
}

/** Fetches all piece hashes. */
export class HashListFetch implements RequestMachine {
  readonly hashes: Uint8Array;
  #o: HashListOptions;
  #ranges: Range[] = [];
  #turn = 0;
  #failures = 0;
  #failed = false;
  #tokens = new Map<number, Uint8Array>();

  /** Plans the ranges; nothing is sent before `pollTransmit`. */
  constructor(o: HashListOptions) {
    this.#o = o;
    this.hashes = new Uint8Array(o.pieceCount * 32);
    const per = Math.max(1, Math.min(MAX_HASHES_PER_REPLY, Math.floor((o.blockSize + 4) / 32)));
    for (let first = 0; first < o.pieceCount; first += per) {
      const end = Math.min(o.pieceCount, first + per);
      this.#ranges.push({ next: first, end, attempt: 0, id: undefined, server: -1, sentAt: 0 });
    }
  }

  get done(): boolean {
    return this.#failed || this.#ranges.every((r) => r.next >= r.end);
  }

  /** The whole list, or undefined if it could not be had. */
  result(): Uint8Array | undefined {
    return this.done && !this.#failed ? this.hashes : undefined;
  }

  handleReply(_now: number, server: number, p: Packet): boolean {
    const r = this.#ranges.find((x) => x.id === p.requestId && x.server === server);
    if (!r) return false;
    r.id = undefined;
    if (p.type === "retry") {
      this.#tokens.set(server, p.token.slice()); // asked again at once, with the token
      return true;
    }
    const want = r.end - r.next;
    const got = p.type === "hashes_reply" && p.firstPiece === r.next && p.fileId === this.#o.fileId
      ? Math.min(want, Math.floor(p.hashes.length / 32))
      : 0;
    if (got === 0 || p.type !== "hashes_reply") return this.#fail(r), true;
    this.hashes.set(p.hashes.subarray(0, got * 32), r.next * 32);
    r.next += got;
    // progress: the failures so far were a slow server's, not a dead one's. The timeout steps
    // back down only one step: under a loaded server every first attempt timed out, and with a
    // count that never forgot, fetchers gave the list up while it was coming (found by the
    // swarm simulation with the product's code: 14 of 32 fetchers)
    r.attempt = Math.max(0, r.attempt - 1);
    this.#failures = 0;
    return true;
  }

  handleTimeout(now: number): void {
    for (const r of this.#ranges) {
      if (r.id !== undefined && now >= r.sentAt + this.#timeout(r)) this.#fail(r);
    }
  }

  pollTransmit(now: number): RequestTransmit | undefined {
    if (this.done) return undefined;
    let inFlight = 0;
    for (const r of this.#ranges) if (r.id !== undefined) inFlight++;
    if (inFlight >= PARALLEL_RANGES) return undefined;
    const r = this.#ranges.find((x) => x.id === undefined && x.next < x.end);
    if (!r) return undefined;
    const { servers } = this.#o;
    r.server = servers[this.#turn++ % servers.length];
    r.id = this.#o.nextRequestId() >>> 0;
    r.sentAt = now;
    const packet: Packet = {
      type: "hashes_request",
      requestId: r.id,
      token: this.#tokens.get(r.server) ?? this.#o.token(r.server),
      fileId: this.#o.fileId,
      firstPiece: r.next,
      count: r.end - r.next,
      name: this.#o.name,
    };
    return { server: r.server, packet };
  }

  pollTimeout(): number | undefined {
    let t = Infinity;
    for (const r of this.#ranges) {
      if (r.id !== undefined) t = Math.min(t, r.sentAt + this.#timeout(r));
    }
    return this.done || t === Infinity ? undefined : t;
  }

  #timeout(r: Range): number {
    return attemptTimeout(HASHES_RETRY, r.attempt, this.#o.rtt(r.server));
  }

  #fail(r: Range): void {
    r.id = undefined;
    r.attempt = Math.min(r.attempt + 1, HASHES_RETRY.attempts - 1);
    // the next attempt goes to the next server in turn; too many failures in a row, with no
    // reply bringing hashes between them: give up
    if (++this.#failures > 8 * this.#o.servers.length + this.#ranges.length) this.#failed = true;
  }
}
