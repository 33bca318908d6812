/**
 * Fetching the piece-hash list: the list is cut into ranges whose replies fit one datagram of
 * the transfer's block size (no IP fragments off loopback), up to 32 ranges are asked at once,
 * each from the servers in turn with the shared retry policy; a server may answer with fewer
 * hashes than asked (the rest is asked again). Gives up after too many failed attempts in a
 * row (a reply with hashes starts the count over), and the shell falls back to a whole-file
 * check. Pure: times come in as arguments.
 *
 * In a swarm (PROTOCOL.md §10.7) the requests to servers carry the swarm flag, and a server that
 * sent the list to enough swarm fetchers lately answers BUSY with a retry time: until then the
 * ranges are asked of peers (`addPeer`), one peer at a time while it gives, so that a list that
 * does not hash to the agreed root names its liar. Such a list is not used: the ranges peers gave
 * are asked again of the servers only. A server's second BUSY, or UNSUPPORTED (a server that
 * predates the flag), makes the requests to it plain, which are always answered: the swarm can
 * delay a fetcher's list by a few hundred ms, never keep it from it.
 *
 * The list is trusted only once it hashes to the agreed `piecesRoot` (checked by the caller).
 *
 * @module
 */

import { ErrorCode, MAX_HASHES_PER_REPLY, type Packet } from "../wire/packet.ts";
import { parseBusyRetry } from "../wire/busy_retry.ts";
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
  /**
   * Whether the whole list hashes to the agreed pieces_root (the caller's rule): a list peers
   * had a part in is judged here, and not used if it does not.
   */
  matchesRoot?: (list: Uint8Array) => boolean;
}

/** How long a peer that had no list (NOT_HELD, an error, silence) is not asked again, ms. */
const PEER_PAUSE_MS = 100;
/**
 * A peer's answer is awaited this long at first, doubling after each silence up to
 * `PEER_TIMEOUT_MAX_MS` (a far peer, or one whose queue is full, answers late but answers).
 */
const PEER_TIMEOUT_MS = 250;
const PEER_TIMEOUT_MAX_MS = 2000;
/** A server's BUSY answers to flagged requests before requests to it go plain. */
const BUSY_BEFORE_PLAIN = 2;

/** A peer that may give the list. */
interface HashPeer {
  token: Uint8Array;
  /** Not asked before this (ms). */
  waitUntil: number;
  /** How long its answer is awaited, ms. */
  timeoutMs: number;
}

interface Range {
  /** First piece of the range; the next piece whose hash is missing; the end. */
  first: number;
  next: number;
  end: number;
  /** Peers gave some of its hashes. */
  byPeer: boolean;
  /** It was sent with the swarm flag (a server's refusal of the flag is not a failure). */
  flagged: boolean;
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
  #peers = new Map<number, HashPeer>();
  /** The peer asked last: the next range goes to it while it gives. */
  #current: number | undefined;
  /** Servers' requests carry the swarm flag. */
  #swarm = false;
  /** Per server: BUSY answers to flagged requests; not asked before `#busyUntil`. */
  #busyCount = new Map<number, number>();
  #busyUntil = new Map<number, number>();
  /** Servers asked plainly from now on (a second BUSY, or UNSUPPORTED). */
  #plain = new Set<number>();
  /** A list from peers did not match the root: only servers are asked. */
  #peersOff = false;
  /** The latest time seen (pollTimeout has no argument). */
  #now = -Infinity;
  /** Peers whose list did not match the root (the caller excludes them). */
  readonly liars: number[] = [];
  /** Every peer that gave hashes since the list was last judged. */
  #givers = new Set<number>();
  /** Per server: when its last BUSY that counted came (refusals of one burst count once). */
  #busyCountedAt = new Map<number, number>();

  /** Plans the ranges; nothing is sent before `pollTransmit`. */
  constructor(o: HashListOptions) {
    this.#o = o;
    this.hashes = new Uint8Array(o.pieceCount * 32);
    const per = Math.max(1, Math.min(MAX_HASHES_PER_REPLY, Math.floor((o.blockSize + 4) / 32)));
    for (let first = 0; first < o.pieceCount; first += per) {
      const end = Math.min(o.pieceCount, first + per);
      this.#ranges.push({
        first,
        next: first,
        end,
        byPeer: false,
        flagged: false,
        attempt: 0,
        id: undefined,
        server: -1,
        sentAt: 0,
      });
    }
  }

  get done(): boolean {
    return this.#failed || this.#ranges.every((r) => r.next >= r.end);
  }

  /** The whole list, or undefined if it could not be had. */
  result(): Uint8Array | undefined {
    return this.done && !this.#failed ? this.hashes : undefined;
  }

  handleReply(now: number, server: number, p: Packet): boolean {
    this.#now = now;
    const r = this.#ranges.find((x) => x.id === p.requestId && x.server === server);
    if (!r) return false;
    r.id = undefined;
    if (p.type === "retry") {
      this.#tokens.set(server, p.token.slice()); // asked again at once, with the token
      return true;
    }
    const peer = this.#peers.get(server);
    const want = r.end - r.next;
    const got = p.type === "hashes_reply" && p.firstPiece === r.next && p.fileId === this.#o.fileId
      ? Math.min(want, Math.floor(p.hashes.length / 32))
      : 0;
    if (got === 0 || p.type !== "hashes_reply") {
      if (peer) return this.#peerFailed(now, server, peer), true;
      if (p.type === "error" && r.flagged && this.#refusedAsSwarm(now, r, p.code, p.message)) {
        return true;
      }
      return this.#fail(r), true;
    }
    this.hashes.set(p.hashes.subarray(0, got * 32), r.next * 32);
    r.next += got;
    if (peer) {
      r.byPeer = true;
      this.#givers.add(server);
      peer.timeoutMs = PEER_TIMEOUT_MS; // (it answers: back to the short wait)
    }
    // progress: the failures so far were a slow server's, not a dead one's. The timeout steps
    // back down only one step: under a loaded server every first attempt timed out, and with a
    // count that never forgot, fetchers gave the list up while it was coming (found by the
    // swarm simulation with the product's code: 14 of 32 fetchers)
    r.attempt = Math.max(0, r.attempt - 1);
    this.#failures = 0;
    this.#judgePeersList();
    return true;
  }

  handleTimeout(now: number): void {
    this.#now = now;
    for (const r of this.#ranges) {
      if (r.id === undefined || now < r.sentAt + this.#timeout(r)) continue;
      const peer = this.#peers.get(r.server);
      if (peer) {
        r.id = undefined;
        this.#peerFailed(now, r.server, peer, true);
      } else this.#fail(r);
    }
    this.#judgePeersList();
  }

  /**
   * Whether the servers' requests carry the swarm flag (a fetcher in a swarm: its peers may give
   * it the list). A server that refused the flag stays plain.
   */
  set swarm(on: boolean) {
    this.#swarm = on;
  }

  /** Peer `source` (with the token it validated us with) may be asked for the list. */
  addPeer(source: number, token: Uint8Array): void {
    const known = this.#peers.get(source);
    if (known) known.token = token;
    else this.#peers.set(source, { token, waitUntil: -Infinity, timeoutMs: PEER_TIMEOUT_MS });
  }

  /** Peer `source` is gone (or excluded): it is asked no more. */
  removePeer(source: number): void {
    this.#peers.delete(source);
    if (this.#current === source) this.#current = undefined;
    // (a range in flight to it goes elsewhere at once; a late answer is not taken)
    for (const r of this.#ranges) if (r.id !== undefined && r.server === source) r.id = undefined;
  }

  pollTransmit(now: number): RequestTransmit | undefined {
    this.#now = now;
    if (this.done) return undefined;
    let inFlight = 0;
    for (const r of this.#ranges) if (r.id !== undefined) inFlight++;
    if (inFlight >= PARALLEL_RANGES) return undefined;
    const r = this.#ranges.find((x) => x.id === undefined && x.next < x.end);
    if (!r) return undefined;
    const source = this.#pick(now);
    if (source === undefined) return undefined; // (everyone busy: pollTimeout says until when)
    const peer = this.#peers.get(source);
    r.server = source;
    r.id = this.#o.nextRequestId() >>> 0;
    r.sentAt = now;
    const packet: Packet = {
      type: "hashes_request",
      requestId: r.id,
      token: this.#tokens.get(source) ?? peer?.token ?? this.#o.token(source),
      fileId: this.#o.fileId,
      firstPiece: r.next,
      count: r.end - r.next,
      name: this.#o.name,
    };
    r.flagged = !peer && this.#swarm && !this.#plain.has(source);
    if (r.flagged) packet.swarm = true;
    return { server: source, packet };
  }

  pollTimeout(): number | undefined {
    if (this.done) return undefined;
    let t = Infinity;
    let waiting = false;
    for (const r of this.#ranges) {
      if (r.id !== undefined) t = Math.min(t, r.sentAt + this.#timeout(r));
      else if (r.next < r.end) waiting = true;
    }
    if (waiting && this.#pick(this.#now, false) === undefined) {
      // a range not in flight waits for a source: the first server or peer free again
      for (const s of this.#o.servers) t = Math.min(t, this.#busyUntil.get(s) ?? Infinity);
      if (!this.#peersOff) { for (const p of this.#peers.values()) t = Math.min(t, p.waitUntil); }
    }
    return t === Infinity ? undefined : t;
  }

  #timeout(r: Range): number {
    const peer = this.#peers.get(r.server);
    if (peer) return peer.timeoutMs;
    return attemptTimeout(HASHES_RETRY, r.attempt, this.#o.rtt(r.server));
  }

  /**
   * Where the next range goes: a server that may be asked now, in turn; while every server is
   * busy, a peer (the last one while it gives); undefined while none may be asked.
   */
  #pick(now: number, take = true): number | undefined {
    const { servers } = this.#o;
    for (let i = 0; i < servers.length; i++) {
      const s = servers[(this.#turn + i) % servers.length];
      if ((this.#busyUntil.get(s) ?? -Infinity) > now) continue;
      if (take) this.#turn += i + 1;
      return s;
    }
    if (this.#peersOff) return undefined;
    const current = this.#current === undefined ? undefined : this.#peers.get(this.#current);
    if (current && current.waitUntil <= now) return this.#current;
    for (const [source, p] of this.#peers) {
      if (p.waitUntil > now) continue;
      if (take) this.#current = source;
      return source;
    }
    return undefined;
  }

  /**
   * A server refused flagged request `r` BUSY (with a retry time) or UNSUPPORTED: true if so.
   * The refusals of one burst of ranges count as one: a list of several ranges is asked at once.
   */
  #refusedAsSwarm(now: number, r: Range, code: number, message: string): boolean {
    const server = r.server;
    if (code === ErrorCode.Unsupported) {
      this.#plain.add(server); // (a server that predates the flag: asked plainly at once)
      return true;
    }
    const wait = code === ErrorCode.Busy ? parseBusyRetry(message) : undefined;
    if (wait === undefined) return false;
    if (r.sentAt >= (this.#busyCountedAt.get(server) ?? -Infinity)) {
      const count = (this.#busyCount.get(server) ?? 0) + 1;
      this.#busyCount.set(server, count);
      this.#busyCountedAt.set(server, now);
      if (count >= BUSY_BEFORE_PLAIN) this.#plain.add(server);
    }
    this.#busyUntil.set(server, Math.max(this.#busyUntil.get(server) ?? -Infinity, now + wait));
    return true;
  }

  #peerFailed(now: number, source: number, peer: HashPeer, silent = false): void {
    peer.waitUntil = now + PEER_PAUSE_MS;
    if (silent) peer.timeoutMs = Math.min(PEER_TIMEOUT_MAX_MS, 2 * peer.timeoutMs);
    if (this.#current === source) this.#current = undefined;
  }

  /**
   * Once every range is in: a list peers had a part in that does not hash to the root is not
   * used. Its peer ranges are asked again of the servers alone; the peer that gave hashes is
   * named in `liars` if only one did (two or more: which lied is unknown, none is blamed).
   */
  #judgePeersList(): void {
    const { matchesRoot } = this.#o;
    if (!matchesRoot || this.#failed || !this.#ranges.every((r) => r.next >= r.end)) return;
    const fromPeers = this.#ranges.filter((r) => r.byPeer);
    if (fromPeers.length === 0 || matchesRoot(this.hashes)) {
      for (const r of fromPeers) r.byPeer = false; // (judged: good)
      this.#givers.clear();
      return;
    }
    // (every peer that gave any hash counts: blaming the last giver of each range alone would
    // let a liar give one bad hash, go quiet, and have an honest peer that finished it banned)
    if (this.#givers.size === 1) this.liars.push(...this.#givers);
    this.#givers.clear();
    this.#peersOff = true;
    for (const r of fromPeers) Object.assign(r, { next: r.first, byPeer: false, attempt: 0 });
  }

  #fail(r: Range): void {
    r.id = undefined;
    r.attempt = Math.min(r.attempt + 1, HASHES_RETRY.attempts - 1);
    // the next attempt goes to the next server in turn; too many failures in a row, with no
    // reply bringing hashes between them: give up
    if (++this.#failures > 8 * this.#o.servers.length + this.#ranges.length) this.#failed = true;
  }
}
