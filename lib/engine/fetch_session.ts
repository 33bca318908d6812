/**
 * The fetch engine: a pure state machine that moves one file's pieces from any number of
 * sources to one receiver, in the shape of quinn-proto's `Connection`.
 *
 * Events in: `handleReply(now, source, packet)` for every datagram from a source,
 * `handleTimeout(now)` when the time from `pollTimeout()` has come, `handleVerified(piece, ok)`
 * when the shell has checked a piece against its hash, `addSource`/`removeSource` as sources
 * come and go. Actions out: `pollTransmit(now)` gives the next request to send (paced per
 * source), `pollTimeout()` when to call back, `poll()` the other events (verify a piece, a
 * source dropped, finished, failed). Writes are returned by `handleReply` itself: a block's
 * bytes are a view into the shell's receive buffer and must be written before it is reused.
 *
 * No I/O, no clock, no randomness of its own (request ids come from an injected generator), so
 * the same inputs give the same outputs: the simulator replays whole transfers from a seed.
 *
 * @module
 */

import type { ChunkReplyHeader, ChunkRequest, Packet } from "../wire/packet.ts";
import { ErrorCode } from "../wire/packet.ts";
import { parseGivenOut } from "../wire/given_out.ts";
import { parseBusyRetry, SWARM_QUEUE_BOUND_MS } from "../wire/busy_retry.ts";
import { SourceLedger } from "./blame.ts";
import type { CongestionController } from "./congestion/controller.ts";
import { ModelBasedController } from "./congestion/model_based.ts";
import { ALL, type Assignment, type PieceFilter, PieceScheduler } from "./scheduler.ts";
import { hadLoss, type InFlightRequest, type LostRun, SourcePath } from "./source_path.ts";
import { RequestTable } from "./request_table.ts";
import { TokenBucket } from "./token_bucket.ts";

/** What a session fetches and how. */
export interface FetchSessionOptions {
  /** File size in bytes. */
  size: number;
  /** Piece size of the agreed metadata (the unit of verification). */
  pieceSize: number;
  /** Data bytes per datagram. */
  blockSize: number;
  /** Content identity (first 8 bytes of the digest). */
  fileId: bigint;
  /** Name to put in requests. */
  name: string;
  /** Source of request ids (random in the shell, seeded in the simulator). */
  nextRequestId: () => number;
  /** Client-side cap in bytes per second (`--limit`), all sources together. */
  limitBytesPerSec?: number;
  /** Most bytes in flight per source (e.g. what its receive sockets buffer on loopback). */
  maxInflightPerSource?: number;
  /** Receive sockets per source: requests take turns, replies keep order only within one. */
  lanes?: number;
  /** Largest request in bytes (e.g. half a receive socket's buffer on loopback). */
  maxRequestBytes?: number;
  /** Round trip to assume per source before measuring one (ms). */
  initialRttMs?: number;
  /** Makes a source's congestion controller (default: the model-based one). */
  makeController?: (source: number) => CongestionController;
  /**
   * Smallest window of a source whose minimum round trip is under `LAN_RTT_MS`: where the receiver handles datagrams in batches (the batched layer drains
   * hundreds per wake-up), a window of two sub-millisecond bandwidth-delay products starves the
   * path, and a few MiB in flight cost nothing in latency there. Default `MIN_WINDOW_BYTES`.
   */
  lanMinWindowBytes?: number;
  /** Fail once no source is left (a fixed server list); a swarm keeps waiting for peers. */
  failWithoutSources?: boolean;
  /** The order pieces are handed out in (a permutation); default: lowest offsets first. */
  pieceOrder?: readonly number[];
  /** Sources nobody vouched for (swarm peers): excluded on the first bad piece of their own. */
  untrusted?: (source: number) => boolean;
}

/** A request to send to one source. */
export interface Transmit {
  source: number;
  /** The lane (receive socket) to send it from. */
  lane: number;
  packet: ChunkRequest;
  /** Datagrams to send it as: 2 on a lossy path (the server ignores the second it gets). */
  copies: 1 | 2;
}

/** Bytes to write at an offset of the output (a view, valid during the call only). */
export interface BlockWrite {
  offset: number;
  data: Uint8Array;
}

/** What the shell must act on. */
export type SessionEvent =
  /** A piece is complete: check it and call `handleVerified`. */
  | { kind: "verify"; piece: number }
  /** A piece failed its hash and will be fetched again. */
  | { kind: "corrupt"; piece: number }
  /** A source is out of the transfer for good. */
  | { kind: "dropped"; source: number; reason: string }
  /**
   * A source answered NOT_HELD: it lacks `piece` (a swarm peer holds only what it verified). It
   * stays a source; the shell withdraws the piece from its have-map and may count the claim.
   */
  | { kind: "not_held"; source: number; piece: number }
  /**
   * A server answered a swarm request GIVEN_OUT: another swarm fetcher was given `piece`, to
   * be had from peers; `unsent` are pieces the server never sent (PROTOCOL.md §10.6). The
   * server stays a source; the piece is back in the queue for whoever may take it.
   */
  | { kind: "given_out"; source: number; piece: number; unsent: number[] }
  /** Every piece is verified. */
  | { kind: "finished" }
  /** No source is left and pieces are missing. */
  | { kind: "failed"; reason: string };

/** Per-source figures for summaries. */
export interface SourceStats {
  source: number;
  /** New bytes it delivered first. */
  bytes: number;
  firstAt: number;
  lastAt: number;
  /** Bytes declared lost on its path (and asked for again). */
  lost: number;
  alive: boolean;
  dropReason?: string;
  /** Its congestion controller's state. */
  state: string;
}

/** How a source joins a session ({@link FetchSession.addSource}). */
export interface SourceOptions {
  /** The pieces it holds (default: all, a server). */
  has?: PieceFilter;
  /** A round trip measured before (discovery), ms. */
  rttMs?: number;
  /** Withdraws a piece from `has` when the source answers NOT_HELD for it (or a server GIVEN_OUT). */
  forget?: (piece: number) => void;
  /**
   * `has` changes only as {@link FetchSession.sourceHas} says (it gains pieces) or by `forget`,
   * so the scheduler may index the source instead of scanning its queue for it.
   */
  indexed?: boolean;
}

/** Default initial window: 32 MTU-sized datagrams (a little more than QUIC's 10). */
const INITIAL_WINDOW = 32 * 1444;
/** Requests are sized to about this many ms of the source's pacing rate. */
const REQUEST_MS = 2;
/** Requests between at least this many blocks... */
const MIN_REQUEST_BLOCKS = 2;
/** ...and at most this many (servers refuse more than 1024 blocks or 16 MiB). */
const MAX_REQUEST_BLOCKS = 1024;
const MAX_REQUEST_BYTES = 16 << 20;
/**
 * Smallest window per source. A model's window is two bandwidth-delay products, but where the
 * bottleneck is the receiver's CPU (loopback, a LAN) the minimum round trip is a few hundred
 * microseconds and that product is smaller than the batch of datagrams the receiver handles per
 * turn: it would starve the transfer. 128 KiB is a sliver of any WAN window.
 */
const MIN_WINDOW_BYTES = 128 << 10;
/** Round trips under this (ms) are a LAN's or loopback's (see `lanMinWindowBytes`). */
const LAN_RTT_MS = 2;
/** Shortest wait a BUSY retry time imposes (ms). */
const MIN_RETRY_MS = 5;
/** Requests recently retired whose late blocks are still accepted. */
const RETIRED_MEMORY = 4096;
/** RETRYs in a row without data before a source counts as failing address validation. */
const MAX_RETRIES_IN_ROW = 8;
/** Nothing in flight anywhere this long (ms) with pieces missing: every claim is reset. */
const IDLE_RESCUE_MS = 500;

/** A request and the source it went to. */
interface Tracked {
  source: Source;
  r: InFlightRequest;
  /** It carried the swarm flag (PROTOCOL.md §10.6). */
  swarm?: boolean;
}

interface Source {
  path: SourcePath;
  has: PieceFilter;
  forget: ((piece: number) => void) | undefined;
  /** Requests carry the swarm flag (a server of a swarm fetcher, PROTOCOL.md §10.6). */
  swarm: boolean;
  /** The source answered a flagged request UNSUPPORTED (an older server): never flag again. */
  swarmRefused: boolean;
  dropped: boolean;
  retriesInRow: number;
  /** When the token held now came (a RETRY); requests sent earlier did not carry it. */
  tokenSince: number;
  /** Requests sent, to take the lanes in turn. */
  sent: number;
  /** It answered BUSY with a retry time: it keeps a bounded queue (PROTOCOL.md §4.2). */
  queues: boolean;
  /** Asked nothing for now (a swarm peer gone quiet): maybe gone, not given up. */
  paused: boolean;
}

/** The fetch engine for one file. */
export class FetchSession {
  readonly sched: PieceScheduler;
  #opts: FetchSessionOptions;
  #sources = new Map<number, Source>();
  #order: number[] = [];
  #turn = 0;
  #byId = new RequestTable<Tracked>();
  /** Requests that left the in-flight list (all blocks received or lost), by id. */
  #retired = new RequestTable<Tracked>();
  /** Ids in `#retired`, oldest first from `#retiredCount % RETIRED_MEMORY`. */
  #retiredRing = new Uint32Array(RETIRED_MEMORY);
  #retiredCount = 0;
  #events: SessionEvent[] = [];
  #ledger = new SourceLedger();
  #limiter: TokenBucket | undefined;
  #limitedUntil = 0;
  /** Sources the scheduler had no work for; any release of work empties it. */
  #starved = new Set<Source>();
  #ended = false;
  /** Since when nothing has been in flight (with pieces missing), for the idle rescue. */
  #idleSince: number | undefined;
  /** Time of the last event handed in (the clock of `pollTimeout` when none is given). */
  #lastEvent = 0;
  /** The file id as two 32-bit halves, as `readChunkReplyHeader` gives it (no BigInt per block). */
  #fileIdHigh: number;
  #fileIdLow: number;
  /** Scratch for the losses one block reveals (reused: no array per datagram). */
  #lost: LostRun[] = [];
  /** Pieces handed out for verification and not settled yet. */
  #pendingVerify = 0;
  /** Bytes of new data received, and bytes declared lost (re-requested). */
  received = 0;
  rerequested = 0;

  /** Blocks of a whole piece, within the request caps (what a swarm request asks for). */
  readonly #pieceBlocks: number;

  /** A session with no source yet; `now` is the injected clock's current time (ms). */
  constructor(opts: FetchSessionOptions, now: number) {
    this.#opts = opts;
    this.#fileIdHigh = Number(BigInt.asUintN(64, opts.fileId) >> 32n);
    this.#fileIdLow = Number(BigInt.asUintN(32, opts.fileId));
    this.sched = new PieceScheduler({
      size: opts.size,
      pieceSize: opts.pieceSize,
      blockSize: opts.blockSize,
    }, opts.pieceOrder);
    const maxBytes = Math.min(MAX_REQUEST_BYTES, opts.maxRequestBytes ?? Infinity);
    this.#pieceBlocks = Math.max(
      1,
      Math.min(
        Math.ceil(opts.pieceSize / opts.blockSize),
        MAX_REQUEST_BLOCKS,
        Math.floor(maxBytes / opts.blockSize),
      ),
    );
    if (opts.limitBytesPerSec) {
      const rate = opts.limitBytesPerSec;
      this.#limiter = new TokenBucket(rate, Math.max(rate / 50, opts.blockSize * 4), now);
    }
    if (this.sched.done) this.#end({ kind: "finished" });
  }

  /** Marks a piece verified before the transfer (resume). */
  markVerified(piece: number): void {
    this.sched.markVerified(piece);
    if (this.sched.done) this.#end({ kind: "finished" });
  }

  /** A source joins at `now`: a server (holding every piece) or a peer (see {@link SourceOptions}). */
  addSource(id: number, now: number, o: SourceOptions = {}): void {
    const { has = ALL, rttMs, forget, indexed = false } = o;
    if (this.#sources.has(id)) return;
    if (indexed && has !== ALL) this.sched.indexSource(id, has);
    const cc = this.#opts.makeController?.(id) ?? this.#defaultController(rttMs);
    const path = new SourcePath(id, cc, now, this.#opts.blockSize, (r) => {
      this.#byId.delete(r.id);
      this.#remember(source, r);
    });
    if (rttMs !== undefined) path.health.rtt.addSample(rttMs);
    const source: Source = {
      path,
      has,
      forget,
      swarm: false,
      swarmRefused: false,
      dropped: false,
      retriesInRow: 0,
      tokenSince: -Infinity,
      sent: 0,
      queues: false,
      paused: false,
    };
    this.#sources.set(id, source);
    this.#order.push(id);
    this.#starved.clear();
  }

  /** The address-validation token to put in requests to `id` (e.g. from metadata discovery). */
  setToken(id: number, token: Uint8Array): void {
    const s = this.#sources.get(id);
    if (s) s.path.token = token;
  }

  /**
   * Whether requests to source `id` carry the swarm flag (PROTOCOL.md §10.6): on while this
   * fetcher has peers to get given-out pieces from. A source that refused the flag stays off.
   */
  setSwarmRequests(id: number, on: boolean): void {
    const s = this.#sources.get(id);
    if (s && !s.swarmRefused) s.swarm = on;
  }

  /** Every source may have work again (a stream's window moved: pieces entered every filter). */
  sourcesMayHaveWork(): void {
    this.#starved.clear();
  }

  /** A source has a new piece, `piece` when known (swarm peers announce what they verified). */
  sourceHas(id: number, piece?: number): void {
    const s = this.#sources.get(id);
    if (!s) return;
    // only this source may have work now: a peer's new piece narrows what the servers are
    // asked for, if anything (rescanning the queue for them on every have was most of a swarm
    // fetcher's time at 64 fetchers); they are told when a claim ends, and once a second (holds)
    this.#starved.delete(s);
    if (piece !== undefined) this.sched.sourceHas(id, piece);
  }

  /**
   * The network says source `id` cannot be reached (an ICMP error on its socket): dropped once
   * that has lasted `REFUSED_DROP_MS` with nothing heard (see `ServerHealth.onUnreachable`).
   */
  handleUnreachable(now: number, id: number, reason: string): void {
    const s = this.#sources.get(id);
    if (!s || s.dropped) return;
    if (!s.path.health.onUnreachable(now, reason)) this.#drop(s);
  }

  /**
   * Source `id` is asked nothing while `paused` (a swarm peer silent a while: maybe gone, maybe
   * slow). Pausing gives its requests in flight up at once, so their pieces go to other sources
   * (as when a source is dropped; late blocks of those requests are strays); resuming lets it be
   * asked again.
   */
  pauseSource(id: number, paused: boolean): void {
    const s = this.#sources.get(id);
    if (!s || s.dropped || s.paused === paused) return;
    s.paused = paused;
    this.#starved.clear();
    if (paused) this.#giveUpInFlight(s);
  }

  /** A source leaves (or is excluded by the shell). */
  removeSource(id: number, reason: string): void {
    const s = this.#sources.get(id);
    if (!s || s.dropped) return;
    s.path.health.drop(reason);
    this.#drop(s);
  }

  /** Whether the transfer has ended (finished or failed). */
  get ended(): boolean {
    return this.#ended;
  }

  /** Figures for each source, in the order they joined. */
  stats(): SourceStats[] {
    return this.#order.map((id) => {
      const { path } = this.#sources.get(id)!;
      return {
        source: id,
        bytes: path.newBytes,
        firstAt: path.firstAt,
        lastAt: path.lastAt,
        lost: path.lostBytes,
        alive: path.health.alive,
        dropReason: path.health.dropReason,
        state: `${path.cc.describe()} w=${
          this.#window(path)
        } in=${path.inflight} req=${path.requests.length}`,
      };
    });
  }

  /** Number of sources still in the transfer. */
  get alive(): number {
    let n = 0;
    for (const s of this.#sources.values()) if (!s.dropped) n++;
    return n;
  }

  /**
   * A datagram from `source`. Returns the bytes to write now when it carries new data; every
   * other consequence is queued for `poll()` and `pollTransmit()`.
   */
  handleReply(now: number, source: number, p: Packet): BlockWrite | undefined {
    this.#lastEvent = now;
    const s = this.#sources.get(source);
    if (!s || s.dropped || this.#ended) return undefined;
    if (p.type === "chunk_reply") {
      if (p.fileId !== this.#opts.fileId) return undefined;
      const fresh = this.#onBlock(now, s, p.requestId, p.offset, p.data.length);
      return fresh ? { offset: p.offset, data: p.data } : undefined;
    }
    const entry = this.#byId.get(p.requestId);
    if (entry?.source !== s) return undefined;
    const { r } = entry;
    if (p.type === "retry") return void this.#onRetry(now, s, r, p.token);
    if (p.type === "error") this.#onError(now, s, r, p.code, p.message, entry.swarm === true);
    return undefined;
  }

  /**
   * The hot path for data: the CHUNK_REPLY `h` from `source`, read in place by the shell
   * (`readChunkReplyHeader`). True when its bytes are new and must be written now; a reply for
   * another file, request or range is ignored; every other consequence is queued as for
   * `handleReply`.
   */
  handleBlock(now: number, source: number, h: Readonly<ChunkReplyHeader>): boolean {
    this.#lastEvent = now;
    if (h.fileIdHigh !== this.#fileIdHigh || h.fileIdLow !== this.#fileIdLow) return false;
    const s = this.#sources.get(source);
    if (!s || s.dropped || this.#ended) return false;
    return this.#onBlock(now, s, h.requestId, h.offset, h.dataLen);
  }

  /** The shell checked `piece`: good (keep it) or corrupt (fetch it again, blame its sources). */
  handleVerified(piece: number, ok: boolean): void {
    this.#pendingVerify = Math.max(0, this.#pendingVerify - 1);
    this.sched.settlePiece(piece, ok);
    if (ok) {
      this.#ledger.verified(piece);
      if (this.sched.done) this.#end({ kind: "finished" });
      return;
    }
    this.#events.push({ kind: "corrupt", piece });
    this.#starved.clear();
    for (const id of this.#ledger.corrupt(piece, this.#opts.untrusted)) {
      this.removeSource(id, `excluded: sent bytes that failed the hash of piece ${piece}`);
    }
  }

  /** Timers: request deadlines (losses, silent sources), and the idle check. */
  handleTimeout(now: number): void {
    if (this.#ended) return;
    if (this.#idleSince !== undefined && now - this.#idleSince >= IDLE_RESCUE_MS) {
      // nothing in flight anywhere for a while and pieces still missing: hand all work out again
      this.sched.resetClaims();
      this.#starved.clear();
      this.#idleSince = undefined;
    }
    // (only a silent path needs it: computed then, not on every timer of every turn)
    let anyHeard: number | undefined;
    for (const s of this.#sources.values()) {
      if (s.dropped) continue;
      const { path } = s;
      if (path.nextDeadline() > now) continue;
      const lost: LostRun[] = [];
      const heardBefore = path.health.lastHeard;
      const oldest = path.requests.find((r) => r.outstanding > 0 && r.deadline <= now);
      path.expire(now, lost);
      // silence since the request left: the path (or the source) may be gone, not just lossy
      const silent = oldest !== undefined && heardBefore < oldest.sentAt;
      if (silent) {
        path.cc.onTimeout(now);
        anyHeard ??= this.#lastHeard();
        if (!path.health.onTimeout(oldest.sentAt, now, anyHeard)) {
          this.#drop(s);
          continue;
        }
      }
      this.#releaseLost(lost, silent);
    }
  }

  /** The next request to send, or undefined when none may leave now. */
  pollTransmit(now: number): Transmit | undefined {
    if (this.#ended || now < this.#limitedUntil) return undefined;
    const n = this.#order.length;
    for (let k = 0; k < n; k++) {
      const id = this.#order[(this.#turn + k) % n];
      const s = this.#sources.get(id)!;
      if (s.dropped || s.paused || this.#starved.has(s)) continue;
      const t = this.#transmitTo(now, s);
      if (t === "starved") this.#starved.add(s);
      else if (t !== undefined) {
        this.#turn = (this.#turn + k + 1) % n;
        return t;
      }
    }
    return undefined;
  }

  /** When `handleTimeout` or `pollTransmit` next has something to do, or undefined. */
  pollTimeout(now?: number): number | undefined {
    if (this.#ended) return undefined;
    let t = Infinity;
    let inflight = 0;
    for (const s of this.#sources.values()) if (!s.dropped) inflight += s.path.inflight;
    if (inflight > 0 || this.#verifying()) this.#idleSince = undefined;
    else {
      this.#idleSince ??= now ?? this.#lastEvent;
      t = this.#idleSince + IDLE_RESCUE_MS;
    }
    for (const s of this.#sources.values()) {
      if (s.dropped) continue;
      t = Math.min(t, s.path.nextDeadline());
      if (s.paused || this.#starved.has(s)) continue;
      const send = s.path.nextSendTime(this.#minRequestBytes(s), this.#sendWindow(s));
      t = Math.min(t, Math.max(send, this.#limitedUntil));
    }
    return t === Infinity ? undefined : t;
  }

  /**
   * Whether the shell should run its loop now: an event waits, or a request may leave. Cheap,
   * so a shell can ask after every datagram instead of running its whole loop for each.
   */
  wantsService(now: number): boolean {
    if (this.#events.length > 0) return true;
    if (this.#ended || now < this.#limitedUntil) return false;
    for (const s of this.#sources.values()) {
      if (s.dropped || s.paused || this.#starved.has(s)) continue;
      if (s.path.canSend(now, this.#minRequestBytes(s), this.#sendWindow(s))) return true;
    }
    return false;
  }

  /** The next event for the shell, or undefined. */
  poll(): SessionEvent | undefined {
    return this.#events.shift();
  }

  #transmitTo(now: number, s: Source): Transmit | "starved" | undefined {
    const { path } = s;
    const window = this.#sendWindow(s);
    if (!path.canSend(now, this.#minRequestBytes(s), window)) return undefined;
    const fits = Math.floor(
      Math.max(this.#opts.blockSize, window - path.inflight) / this.#opts.blockSize,
    );
    let blocks = Math.max(1, Math.min(this.#requestBlocks(path), fits));
    if (this.#piecewise(s)) blocks = Math.max(blocks, Math.min(this.#pieceBlocks, fits));
    const a = this.sched.next(path.id, blocks, s.has, this.#piecewise(s));
    if (!a) return "starved";
    if (this.#limiter) {
      const wait = this.#limiter.take(a.length, now);
      if (wait > 0) this.#limitedUntil = now + wait;
    }
    const id = this.#newId();
    // a swarm request for a piece always leaves from the same lane (socket), so the server sees
    // one asker per piece: its first-copy ledger knows a fetcher by address and port
    const lanes = this.#opts.lanes ?? 1;
    const lane = s.swarm ? a.piece % lanes : s.sent++ % lanes;
    // fewer blocks than asked for: the file (or this source's share) ran out, not the path
    const appLimited = a.blockCount < blocks;
    // (a swarm source queues a request up to its bound before it answers BUSY instead)
    const queueMs = this.#queueing(s) ? SWARM_QUEUE_BOUND_MS : 0;
    const r = path.sent(now, id, a, appLimited, lane, queueMs);
    this.#byId.set(id, s.swarm ? { source: s, r, swarm: true } : { source: s, r });
    const packet: ChunkRequest = {
      type: "chunk_request",
      requestId: id,
      token: path.token ?? NO_TOKEN,
      fileId: this.#opts.fileId,
      offset: a.offset,
      length: a.length,
      blockSize: this.#opts.blockSize,
      name: this.#opts.name,
    };
    if (s.swarm) packet.swarm = true;
    return { source: path.id, lane, copies: path.requestCopies(a.blockCount), packet };
  }

  /**
   * Room a request waits for. Silly-window avoidance: with the window full, every block that
   * arrives frees one block of room, and sending as soon as two blocks fit turns one request of
   * twenty blocks into ten of two (measured on the fallback layer over a LAN: one request per
   * two datagrams). A request waits for an eighth of the window, or its full size if smaller.
   *
   * A whole-piece source waits for room for a whole piece. Asked for the part that fit, a server
   * recorded the piece as given to this fetcher (its first-copy ledger, PROTOCOL.md §10.6) while
   * the rest waited for another request, which its queue could refuse BUSY for a while: nobody
   * could share the piece, every other fetcher was told GIVEN_OUT for it, and at the end of the
   * pass it was sent again (the real-code simulator, 200 fetchers of 16 MiB in 256 KiB pieces:
   * 4 % of the server's requests were such heads; the pass ended at 1.10 × the bound against
   * 1.04 without them). The cost: lost blocks of a piece in flight are asked again only once a
   * whole piece fits (letting them leave at once made the simulator's churn crowd 1.77× against
   * 1.53×).
   */
  #minRequestBytes(s: Source): number {
    const bs = this.#opts.blockSize;
    const floor = MIN_REQUEST_BLOCKS * bs;
    const wanted = Math.min(this.#requestBlocks(s.path) * bs, this.#window(s.path) / 8);
    const piece = this.#piecewise(s) ? this.#pieceBlocks * bs : 0;
    return Math.min(this.#opts.size, Math.max(floor, wanted, piece));
  }

  /**
   * Whether requests to `s` ask for whole pieces: a swarm's. A piece is what a server gives out
   * first (its ledger's unit) and what a peer can share once verified. Halves asked apart, the
   * second often waited behind a BUSY while the server refused the piece to everyone else (the
   * simulator at N = 32: 10 % of pieces reached their first fetcher 0.5–2 s after their first
   * half, and they set the finish).
   */
  #piecewise(s: Source): boolean {
    return s.swarm || this.#opts.untrusted?.(s.path.id) === true;
  }

  /** Whether `s` is a swarm peer (a source nobody vouched for, holding some pieces). */
  #isPeer(s: Source): boolean {
    return this.#opts.untrusted?.(s.path.id) === true;
  }

  /**
   * Whether `s` may keep a bounded queue (PROTOCOL.md §4.2): a swarm's source (a peer, or a
   * server asked with the swarm flag, which under `--rate` answers BUSY with a retry time past
   * its bound), or any source that answered so. A request to it may wait `SWARM_QUEUE_BOUND_MS` there besides its
   * round trip: without that allowance, a peer's first requests, whose deadlines rest on the
   * few-ms round trip of a have-poll, were declared lost in its queue, asked again elsewhere,
   * and both copies came (the real-code simulator, N = 32: 5.9 F re-requested; with it, 0.4 F).
   */
  #queueing(s: Source): boolean {
    return s.queues || this.#piecewise(s);
  }

  /**
   * What may be in flight to `s`: its window; for whole-piece requests, room for one piece more
   * (up to two), and four pieces at most: a swarm's source keeps its queue short itself, so more
   * in flight only buys refusals (a LAN window floor of 2 MiB, a hundred fetchers: 84 requests
   * each in the first 100 ms, answered BUSY, in the real-code simulator). The cost: to one
   * server over a long fast path, a swarm fetcher keeps three to four pieces per round trip (a
   * new one leaves once a whole piece fits: 256 KiB pieces, 15–20 MiB/s at 50 ms), while its
   * peers answer or for its first 5 s.
   */
  #sendWindow(s: Source): number {
    const w = this.#window(s.path);
    if (!this.#piecewise(s)) return w;
    const piece = this.#pieceBlocks * this.#opts.blockSize;
    const floored = Math.max(w, Math.min(2 * piece, w + piece));
    return this.#queueing(s) ? Math.min(4 * piece, floored) : floored;
  }

  #window(path: SourcePath): number {
    return Math.min(path.cc.window(), this.#opts.maxInflightPerSource ?? Infinity);
  }

  /** Blocks per request: about `REQUEST_MS` of the pacing rate, a quarter window at most. */
  #requestBlocks(path: SourcePath): number {
    const bs = this.#opts.blockSize;
    const byRate = Math.floor(path.cc.pacingRate() * REQUEST_MS / bs);
    const byWindow = Math.floor(this.#window(path) / 4 / bs);
    const maxBytes = Math.min(MAX_REQUEST_BYTES, this.#opts.maxRequestBytes ?? Infinity);
    const cap = Math.min(MAX_REQUEST_BLOCKS, Math.floor(maxBytes / bs));
    return Math.max(MIN_REQUEST_BLOCKS, Math.min(cap, byRate, byWindow));
  }

  /** A block of request `requestId` (or of a retired one: a block declared lost may still come). */
  #onBlock(now: number, s: Source, requestId: number, offset: number, length: number): boolean {
    const entry = this.#byId.get(requestId);
    // a block declared lost may still arrive: it is data, and a delivery the model counts
    const r = entry?.source === s ? entry.r : this.#retiredFrom(s, requestId);
    if (!r) return false;
    const a = r.a;
    const block = (offset - a.offset) / this.#opts.blockSize;
    if (!(Number.isInteger(block) && block >= 0) || block >= a.blockCount) return false;
    const expected = block === a.blockCount - 1
      ? a.length - block * this.#opts.blockSize
      : this.#opts.blockSize;
    if (length !== expected) return false;
    s.retriesInRow = 0;
    const lost = this.#lost;
    lost.length = 0;
    if (!s.path.onBlock(now, r, block, length, lost)) return false;
    if (lost.length > 0) this.#releaseLost(lost, false);
    return this.#accept(now, s, a.piece, offset, length);
  }

  #retiredFrom(s: Source, requestId: number): InFlightRequest | undefined {
    const late = this.#retired.get(requestId);
    return late?.source === s ? late.r : undefined;
  }

  /** Data for the file: true when new (to be written); complete pieces go to verification. */
  #accept(now: number, s: Source, piece: number, offset: number, length: number): boolean {
    const o = this.sched.onBlock(offset, length);
    if (o.kind !== "new") return false;
    const { path } = s;
    path.newBytes += length;
    path.lastAt = now;
    this.received += length;
    this.#ledger.record(piece, path.id);
    if (o.pieceComplete) {
      this.#pendingVerify++;
      this.#events.push({ kind: "verify", piece });
      // one piece fewer being fetched: a swarm's source may start its end game (second copies
      // wait for the last few pieces)
      this.#starved.clear();
    }
    return true;
  }

  #onRetry(now: number, s: Source, r: InFlightRequest, token: Uint8Array): void {
    s.path.token = token.slice();
    this.#forget(s, r);
    this.sched.release(r.a);
    this.#starved.clear();
    // every request that left before the source's first RETRY gets one too: only a request
    // sent with the token we hold shows that validation keeps failing
    if (r.sentAt < s.tokenSince) return;
    s.tokenSince = now;
    if (++s.retriesInRow > MAX_RETRIES_IN_ROW) {
      this.removeSource(s.path.id, "address validation keeps failing (RETRY after RETRY)");
    }
  }

  #onError(
    now: number,
    s: Source,
    r: InFlightRequest,
    code: number,
    message: string,
    flagged: boolean,
  ): void {
    this.#forget(s, r);
    this.sched.release(r.a, true); // this source cannot serve it now: another may
    this.#starved.clear();
    const { path } = s;
    if (code === ErrorCode.NotHeld) {
      // "ask someone else", not a broken source (PROTOCOL.md §10.2); an answer is a sign of life
      path.health.onHeard(now);
      s.forget?.(r.a.piece); // before anything is sent again: not to this source
      this.#events.push({ kind: "not_held", source: path.id, piece: r.a.piece });
      return;
    }
    // (only an answer to a flagged request: from anyone else, GIVEN_OUT is a fault like any)
    if (code === ErrorCode.GivenOut && flagged) {
      path.health.onHeard(now); // a decision, not a fault: the source stays
      s.forget?.(r.a.piece); // before anything is sent again: not to this server, for now
      const unsent = parseGivenOut(message, this.sched.pieceCount);
      this.#events.push({ kind: "given_out", source: path.id, piece: r.a.piece, unsent });
      return;
    }
    if (code === ErrorCode.Unsupported && flagged) {
      // an older server, which knows no swarm flag (every flagged request in flight gets this):
      // ask it as a plain fetcher from now on
      s.swarm = false;
      s.swarmRefused = true;
      return;
    }
    // a retry time is honoured from swarm sources only (a plain fetch never asked for one)
    const peer = this.#opts.untrusted?.(path.id) === true;
    const retryMs = code === ErrorCode.Busy && (flagged || peer)
      ? parseBusyRetry(message)
      : undefined;
    if (retryMs !== undefined) return this.#retryLater(now, s, retryMs, message, peer);
    if (!path.health.onError(code, message, now)) return this.#drop(s);
    // BUSY, INTERNAL, TOO_MANY: nothing new to this source for a while
    path.pausedUntil = now + path.health.rtt.rto();
    if (code === ErrorCode.TooMany) path.pausedUntil += path.health.rtt.rto();
  }

  /**
   * A swarm source at its upload cap answered BUSY with a retry time (PROTOCOL.md §4.2): no
   * back-off, nothing new to it until then. Of several such answers, the earliest time wins: a
   * source staggers the turns it hands out, and a fetcher refused a whole window would
   * otherwise come back at its last turn, the source idle meanwhile (a source spreading turns at
   * random past its horizon thus sees such a fetcher back at the earliest of them). Never
   * sooner than `MIN_RETRY_MS`: a peer answering "1 ms" forever costs little. (Not a round
   * trip: to a busy peer that includes its queue, and fetchers came back ten times too late.)
   */
  #retryLater(now: number, s: Source, retryMs: number, message: string, peer: boolean): void {
    const { path } = s;
    s.queues = true;
    if (!path.health.onRetryLater(now, message, peer)) return this.#drop(s);
    const until = now + Math.max(retryMs, MIN_RETRY_MS);
    path.retryUntil = path.retryUntil > now ? Math.min(path.retryUntil, until) : until;
  }

  #forget(s: Source, r: InFlightRequest): void {
    s.path.remove(r.id);
    this.#byId.delete(r.id);
    this.#remember(s, r);
  }

  #releaseLost(lost: LostRun[], giveUpPiece: boolean): void {
    if (lost.length === 0) return;
    for (const l of lost) {
      this.rerequested += l.bytes;
      this.sched.release(subRun(l.request.a, l.firstBlock, l.blockCount, this.#opts), giveUpPiece);
    }
    this.#starved.clear();
  }

  #remember(source: Source, r: InFlightRequest): void {
    // only a request with blocks declared lost can still bring useful late blocks
    if (!hadLoss(r)) return;
    const at = this.#retiredCount++ % RETIRED_MEMORY;
    if (this.#retiredCount > RETIRED_MEMORY) this.#retired.delete(this.#retiredRing[at]);
    this.#retiredRing[at] = r.id;
    this.#retired.put(r.id, { source, r });
  }

  /** Every request in flight to `s` is given up: its blocks go back to be asked of anyone. */
  #giveUpInFlight(s: Source): void {
    for (const r of s.path.clear()) {
      this.#byId.delete(r.id);
      this.sched.release(r.a, true);
    }
  }

  #drop(s: Source): void {
    if (s.dropped) return;
    s.dropped = true;
    this.#giveUpInFlight(s);
    this.sched.dropServer(s.path.id);
    this.#starved.clear();
    this.#events.push({
      kind: "dropped",
      source: s.path.id,
      reason: s.path.health.dropReason ?? "dropped",
    });
    if (this.alive === 0 && this.#opts.failWithoutSources !== false && !this.sched.done) {
      this.#end({ kind: "failed", reason: "every source failed" });
    }
  }

  #verifying(): boolean {
    return this.#pendingVerify > 0;
  }

  #end(e: SessionEvent): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#events.push(e);
  }

  #lastHeard(): number {
    let t = -Infinity;
    for (const s of this.#sources.values()) {
      if (!s.dropped) t = Math.max(t, s.path.health.lastHeard);
    }
    return t;
  }

  #newId(): number {
    let id: number;
    do id = this.#opts.nextRequestId() >>> 0; while (
      // (free in both tables: a request remembered after it retires keeps its slot there)
      !this.#byId.free(id) || !this.#retired.free(id)
    );
    return id;
  }

  #defaultController(rttMs?: number): CongestionController {
    const bs = this.#opts.blockSize;
    const initialWindow = Math.max(INITIAL_WINDOW, 4 * bs);
    return new ModelBasedController({
      initialWindow,
      initialRttMs: rttMs ?? this.#opts.initialRttMs ?? 100,
      minWindow: Math.max(4 * MIN_REQUEST_BLOCKS * bs, MIN_WINDOW_BYTES),
      lanMinWindow: this.#opts.lanMinWindowBytes === undefined
        ? undefined
        : Math.max(4 * MIN_REQUEST_BLOCKS * bs, this.#opts.lanMinWindowBytes),
      lanRttMs: LAN_RTT_MS,
      maxWindow: this.#opts.maxInflightPerSource ?? Infinity,
    });
  }
}

const NO_TOKEN = new Uint8Array(16);

/** The assignment covering blocks [first, first + count) of `a`. */
function subRun(
  a: Assignment,
  first: number,
  count: number,
  o: { blockSize: number },
): Assignment {
  const offset = a.offset + first * o.blockSize;
  const end = Math.min(a.offset + a.length, offset + count * o.blockSize);
  return {
    ...a,
    firstBlock: a.firstBlock + first,
    blockCount: count,
    offset,
    length: end - offset,
  };
}
