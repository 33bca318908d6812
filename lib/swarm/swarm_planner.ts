/**
 * The fetcher's swarm policy: which piece to ask which source for. A pure state machine in the
 * shape of the fetch engine — events in (sources, have-maps and "have"s, load hints, deliveries
 * with their verification result, refusals, substitutions, time), piece requests out. No
 * sockets, no clock: every call takes `now`; randomness comes from the injected generator.
 *
 * Rules, each for a reason:
 * - A window: the fetcher keeps `pipelineMs` of data outstanding at its total measured rate,
 *   over all sources together (`window`), and each source at most `pipelineMs` at the rate
 *   measured from it (≥ 1 request). Sources answer BUSY above a short backlog; the window keeps
 *   a fetcher with forty sources from holding forty queue places when its share is a few.
 * - Spread: sources take turns, one request per turn (`ready_queue.ts`), so requests do not
 *   pile on the first sources.
 * - Peers: rarest first among the pieces the peer holds, ties at random
 *   (`piece_availability.ts`); the very first piece at random (any piece is worth sharing soon).
 * - The seed server (`seedMode`):
 *   - `"server"` (the chosen policy): ask for the rarest piece in view — claim level 0 first —
 *     and let the server, which alone knows what it already sent, substitute an unsent piece or
 *     redirect (`seed_ledger.ts`).
 *   - `"fetcher"`: ask only for pieces no known peer holds or is fetching (claim level 0), and
 *     advertise "fetching" for them; fall back to any piece only after a stall.
 *   - `"naive"`: the server is just another complete source.
 * - End game only at the tail: once every missing piece is in flight, a source with room gets a
 *   second copy of an overdue in-flight piece it holds (at most `maxCopies`; `end_game.ts`).
 * - A piece comes whole from one source (the end game aside), so a bad one names its liar, which
 *   is excluded (`liar_detection.ts`); a claimed piece refused or never delivered is a broken
 *   claim.
 *
 * @module
 */

import { PieceAvailability, PieceState, type SourceInfo } from "./piece_availability.ts";
import { SourceRate, type SourceRateOptions } from "./source_rate.ts";
import { pickDuplicate } from "./end_game.ts";
import { LiarDetector, type LiarOptions } from "./liar_detection.ts";
import { FlightTable } from "./flight_table.ts";
import { ReadyQueue } from "./ready_queue.ts";
import { KeyedHeap } from "../base/keyed_heap.ts";

/** Who coordinates the seed's first copies (see the module doc). */
export type SeedMode = "naive" | "fetcher" | "server";

/** Configuration of a {@link SwarmPlanner}. */
export interface PlannerOptions {
  /** Pieces in the file. */
  pieceCount: number;
  /** Bytes of one piece (the last may be short). */
  pieceBytes: (piece: number) => number;
  /** The generator for every random choice (seeded: runs replay). */
  random: () => number;
  /** Seed coordination (default "server"). */
  seedMode?: SeedMode;
  /** Pipeline sizing per source. */
  rate?: SourceRateOptions;
  /**
   * Sizing of the fetcher's whole window, from its total measured rate (defaults: as `rate`,
   * initial depth 4, at most 512).
   */
  window?: SourceRateOptions;
  /** The first this many pieces are picked at random, not rarest first (default 1). */
  randomFirst?: number;
  /** End game: most requests for one piece at once (default 2). */
  maxCopies?: number;
  /** A request is given up after max(this, 4 × its expected time) ms (default 2000). */
  minTimeoutMs?: number;
  /** Timeout before a source's rate is known, ms (default 2000). */
  initialTimeoutMs?: number;
  /** `"fetcher"` mode: no progress for this long lets the server be asked anything (3000). */
  stallMs?: number;
  /** Liar detection tuning. */
  liar?: LiarOptions;
}

/** One piece request to send. */
export interface PieceRequest {
  /** Source to ask. */
  source: number;
  /** Piece to ask for (whole). */
  piece: number;
  /** A second copy of an in-flight piece (end game). */
  duplicate: boolean;
  /** The source is on parole: its blocks must not be mixed with another source's. */
  solo: boolean;
}

/** A "fetching" advertisement to send to peers (`"fetcher"` mode only). */
export interface FetchingNotice {
  /** The piece. */
  piece: number;
  /** True: fetching it from a server now; false: no longer (without getting it). */
  fetching: boolean;
}

/** What to do with a delivered piece. */
export interface DeliveryVerdict {
  /** New and verified: keep it, announce a "have". */
  accepted: boolean;
  /** Sources found lying just now: disconnect them. */
  excluded: number[];
}

/** Why a source answered a request without data. */
export type RefusalReason = "busy" | "redirect" | "missing";

const NONE: readonly PieceRequest[] = Object.freeze([]);

const MISSING = PieceState.Wanted;
const IN_FLIGHT = PieceState.InFlight;
const VERIFIED = PieceState.Done;

interface SourceState {
  readonly id: number;
  /** In the ready queue. */
  queued: boolean;
  /** Still a source (false once removed: the queue skips it). */
  live: boolean;
  /** Requests outstanding at it (its pipeline). */
  inflight: number;
  readonly server: boolean;
  readonly rate: SourceRate;
  /** No new request before this time (busy, redirect). */
  backoffUntil: number;
  /** The back-off end already in the wake heap (-Infinity: none). */
  waking: number;
}

type Settings = Required<Omit<PlannerOptions, "rate" | "liar" | "window">> & {
  rate: SourceRateOptions;
};

/** The fetcher-side swarm policy. */
export class SwarmPlanner {
  /** What is known of the sources' pieces. */
  readonly availability: PieceAvailability;
  /** Strikes and parole of the sources. */
  readonly liars: LiarDetector;
  readonly #o: Settings;
  readonly #state: Uint8Array;
  readonly #flights = new FlightTable();
  readonly #sources = new Map<number, SourceState>();
  readonly #ready = new ReadyQueue<SourceState>();
  /** Bytes of a full piece (pipelines are sized in them). */
  readonly #unit: number;
  /** When backed-off sources may be asked again. */
  readonly #wakes = new KeyedHeap();
  /** The fetcher's whole window, sized from its total rate. */
  readonly #window: SourceRate;
  #missing: number;
  #verified = 0;
  #lastProgressAt = 0;
  #notices: FetchingNotice[] = [];

  /** A planner with every piece missing and no source. */
  constructor(options: PlannerOptions) {
    this.#o = {
      seedMode: "server",
      randomFirst: 1,
      maxCopies: 2,
      minTimeoutMs: 2000,
      initialTimeoutMs: 2000,
      stallMs: 3000,
      ...options,
      rate: options.rate ?? {},
    };
    this.#state = new Uint8Array(options.pieceCount);
    this.#unit = options.pieceBytes(0);
    this.#missing = options.pieceCount;
    this.availability = new PieceAvailability(
      options.pieceCount,
      (p) => this.#state[p] as PieceState,
    );
    this.liars = new LiarDetector(options.liar);
    this.#window = new SourceRate({
      initialDepth: 4,
      maxDepth: 512,
      ...options.rate,
      ...options.window,
    });
  }

  /** Pieces in the file. */
  get pieceCount(): number {
    return this.#o.pieceCount;
  }

  /** Pieces verified. */
  get verified(): number {
    return this.#verified;
  }

  /** Every piece is verified. */
  get done(): boolean {
    return this.#verified === this.#o.pieceCount;
  }

  /** Requests outstanding at all sources. */
  get outstandingTotal(): number {
    return this.#flights.total;
  }

  /** Requests the window allows now (pipelineMs at the total measured rate). */
  get windowCap(): number {
    return this.#window.depth(this.#unit);
  }

  /** Whether `piece` is verified here. */
  hasPiece(piece: number): boolean {
    return this.#state[piece] === VERIFIED;
  }

  /** Whether `id` is a current source. */
  hasSource(id: number): boolean {
    return this.#sources.has(id);
  }

  /** Requests outstanding at `id`. */
  outstanding(id: number): number {
    return this.#flights.countAt(id);
  }

  /** Measured bytes per ms from `id` (0 before a delivery). */
  rateOf(id: number): number {
    return this.#sources.get(id)?.rate.bytesPerMs ?? 0;
  }

  /** Pieces `id` holds that this fetcher still needs, estimated (for the peer ranking). */
  usefulFrom(id: number): number {
    const left = (this.#o.pieceCount - this.#verified) / this.#o.pieceCount;
    return Math.round(this.availability.pieceCountOf(id) * left);
  }

  /** A piece already on disk and verified (resuming). Call before adding sources. */
  markVerified(piece: number): void {
    if (this.#state[piece] !== MISSING) return;
    this.#missing--;
    this.#state[piece] = VERIFIED;
    this.#verified++;
  }

  /** A source answered with its have-map (or is a server). False for an excluded source. */
  addSource(id: number, info: SourceInfo): boolean {
    if (this.liars.isExcluded(id)) return false;
    this.removeSource(id);
    this.availability.addSource(id, info);
    const st: SourceState = {
      id,
      queued: false,
      live: true,
      inflight: 0,
      server: info.server,
      // (a peer gets one request until it has delivered once: a peer claiming pieces it never
      // sends then holds one piece per fetcher, for one timeout)
      rate: new SourceRate({ initialDepth: info.server ? 2 : 1, ...this.#o.rate }),
      backoffUntil: -Infinity,
      waking: -Infinity,
    };
    this.#sources.set(id, st);
    this.#ready.push(st);
    return true;
  }

  /** A source left or was dropped: its requests are given up, its pieces stop counting. */
  removeSource(id: number): void {
    const st = this.#sources.get(id);
    if (!st) return;
    this.#sources.delete(id);
    st.live = false;
    st.inflight = 0;
    for (const piece of this.#flights.removeSource(id)) {
      this.#window.onAbandoned(this.#window.lastAt);
      this.#released(st, piece);
    }
    this.availability.removeSource(id);
  }

  /** Source `id` verified `piece` (a "have"). */
  sourceHas(id: number, piece: number): boolean {
    if (!this.availability.sourceHas(id, piece) || this.#state[piece] !== MISSING) return false;
    this.#nudge(this.#sources.get(id));
    return true;
  }

  /** Source `id` now holds every piece (its have-map said so, or its last "have"). */
  sourceComplete(id: number): void {
    if (this.availability.sourceComplete(id)) this.#nudge(this.#sources.get(id));
  }

  /**
   * Source `id` said (on any message: a "have", data) that it would refuse new requests for
   * `busyMs` more: none goes to it before then. A hint only extends a back-off, never lifts one:
   * a hint of "free" reaching every fetcher at once would bring them all at once.
   */
  sourceBusyFor(now: number, id: number, busyMs: number): void {
    const st = this.#sources.get(id);
    if (!st || busyMs <= 0 || now + busyMs <= st.backoffUntil) return;
    st.backoffUntil = now + busyMs;
    this.#backOff(st);
  }

  /** Source `id` is fetching `piece` from a server (its "fetching" advertisement). */
  sourceFetching(id: number, piece: number, now: number): void {
    this.availability.sourceFetching(id, piece, now);
  }

  /** Source `id` withdrew its "fetching" advertisement for `piece`. */
  sourceNotFetching(id: number, piece: number): void {
    this.availability.sourceNotFetching(id, piece);
  }

  /**
   * The earliest time a back-off ends (Infinity: none): the engine should call `plan` then. (A
   * slow timer calling `onTimer` covers timeouts and the end game.)
   */
  get wakeAt(): number {
    return this.#wakes.nextKey;
  }

  /**
   * Source `id` may be able to take a request (it announced or delivered something): it gets a
   * turn at the next `plan`.
   */
  nudge(id: number): void {
    this.#nudge(this.#sources.get(id));
  }

  /** Every source will be asked again at the next `plan`. */
  reconsiderAll(): void {
    for (const st of this.#sources.values()) this.#ready.push(st);
  }

  /**
   * The slow timer (every few hundred ms): requests past their deadline are given up (see
   * `expire`), and at the tail every source is reconsidered, since end-game duplicates depend on
   * time (a piece becomes overdue) rather than on an event. Returns sources excluded now.
   */
  onTimer(now: number): number[] {
    const excluded = this.expire(now);
    if (this.#missing === 0) this.reconsiderAll();
    return excluded;
  }

  /**
   * Requests to send now. `first` is a source that just delivered, announced a piece or lifted
   * a back-off: it is asked first. Sources take turns one request each while the window has
   * room. Every piece returned is in flight until delivered, refused, timed out or its source
   * removed.
   */
  plan(now: number, first?: number): readonly PieceRequest[] {
    if (this.done) return NONE;
    this.#wake(now);
    if (first !== undefined) this.#nudge(this.#sources.get(first));
    const cap = this.windowCap;
    // (most calls find the window full: they allocate nothing)
    if (this.#flights.total >= cap) return NONE;
    const out: PieceRequest[] = [];
    while (this.#flights.total < cap) {
      const st = this.#ready.shift();
      if (st === undefined) break;
      if (this.#full(st)) continue;
      if (now < st.backoffUntil) {
        this.#backOff(st);
        continue;
      }
      const r = this.#choose(st, now);
      if (!r) continue;
      out.push(r);
      if (!this.#full(st)) this.#ready.push(st);
    }
    return out;
  }

  /**
   * Source `id` delivered `piece`, which did (`valid`) or did not match its hash. A bad piece
   * convicts its source; a good one is accepted unless already verified.
   */
  onPiece(now: number, id: number, piece: number, valid: boolean): DeliveryVerdict {
    const st = this.#sources.get(id);
    if (st && this.#flights.remove(id, piece)) {
      const bytes = this.#o.pieceBytes(piece);
      st.inflight--;
      st.rate.onDelivered(now, bytes);
      this.#window.onDelivered(now, bytes);
      this.#ready.push(st);
    }
    if (!valid) return { accepted: false, excluded: this.#convict(id, piece) };
    if (this.#state[piece] === VERIFIED) return { accepted: false, excluded: [] };
    if (this.#state[piece] === MISSING) this.#missing--;
    this.#state[piece] = VERIFIED;
    this.#verified++;
    this.#flights.settle(piece);
    this.availability.settled(piece);
    if (this.liars.onParole(id)) this.liars.pieceVerified([id]);
    this.#lastProgressAt = now;
    return { accepted: true, excluded: [] };
  }

  /**
   * Source `id` answered the request for `piece` without data: busy or redirect (retry it after
   * `retryAfterMs`), or it does not hold a piece it claimed (`"missing"`, a broken claim).
   * Returns sources excluded now.
   */
  onRefused(
    now: number,
    id: number,
    piece: number,
    reason: RefusalReason,
    retryAfterMs = 0,
  ): number[] {
    const st = this.#sources.get(id);
    if (!st) return [];
    if (reason !== "missing") {
      st.backoffUntil = Math.max(st.backoffUntil, now + retryAfterMs);
      this.#backOff(st);
    }
    // (the server sent it already: someone in the swarm has it, so level 0 no longer fits)
    if (reason === "redirect" && st.server) this.availability.noteServedElsewhere(piece);
    this.#abandon(st, piece, now);
    if (reason !== "missing") return [];
    return this.liars.claimBroken(id) ? this.#exclude(id) : [];
  }

  /** The server will send `given` in place of `asked` (it picked an unsent piece). */
  onSubstituted(now: number, id: number, asked: number, given: number): void {
    const st = this.#sources.get(id);
    const deadline = this.#flights.ofSource(id).get(asked);
    if (!st || deadline === undefined) return;
    this.#flights.remove(id, asked);
    this.#released(st, asked);
    if (!this.#flights.add(id, given, now, deadline, deadline)) {
      st.inflight--; // (`given` was asked of it already: one request fewer)
      return;
    }
    if (this.#state[given] === VERIFIED) this.#flights.settle(given);
    else if (this.#state[given] === MISSING) this.#markInFlight(given);
  }

  /**
   * Gives up requests past their deadline; a peer that never delivers what it claimed collects
   * broken claims. Returns sources excluded now. O(requests outstanding): call it on a timer.
   */
  expire(now: number): number[] {
    const late: [SourceState, number][] = [];
    for (const st of this.#sources.values()) {
      for (const [piece, deadline] of this.#flights.ofSource(st.id)) {
        if (deadline <= now) late.push([st, piece]);
      }
    }
    const excluded: number[] = [];
    for (const [st, piece] of late) {
      if (!this.#sources.has(st.id)) continue;
      this.#abandon(st, piece, now);
      if (!st.server && this.liars.claimBroken(st.id)) excluded.push(...this.#exclude(st.id));
    }
    this.availability.expireClaims(now, 2 * this.#o.stallMs);
    return excluded;
  }

  /** The "fetching" advertisements to send since the last call (`"fetcher"` mode). */
  takeNotices(): FetchingNotice[] {
    const n = this.#notices;
    this.#notices = [];
    return n;
  }

  /** Keeps `st` aside until its back-off ends. */
  #backOff(st: SourceState): void {
    if (st.waking === st.backoffUntil) return;
    st.waking = st.backoffUntil;
    this.#wakes.push(st.backoffUntil, st.id);
  }

  /** Back-offs ended by `now` put their sources back in turn. */
  #wake(now: number): void {
    for (let id = this.#wakes.popDue(now); id !== undefined; id = this.#wakes.popDue(now)) {
      const st = this.#sources.get(id);
      if (!st || st.backoffUntil > now) continue; // (gone, or backed off again: re-pushed)
      st.waking = -Infinity;
      st.backoffUntil = -Infinity;
      this.#ready.push(st);
    }
  }

  #full(st: SourceState): boolean {
    return st.inflight >= st.rate.depth(this.#unit);
  }

  /** `st` (if a source) may take a request: queued unless backed off or full. */
  #nudge(st: SourceState | undefined): void {
    if (st && !st.queued && st.backoffUntil === -Infinity && !this.#full(st)) this.#ready.push(st);
  }

  /** Picks the next piece for `st` and marks it in flight; undefined when there is none. */
  #choose(st: SourceState, now: number): PieceRequest | undefined {
    let piece = this.#missing > 0 ? this.#pickNew(st, now) : -1;
    const duplicate = piece < 0 && this.#missing === 0;
    if (duplicate) {
      const has = (p: number) => this.availability.has(st.id, p);
      piece = pickDuplicate(this.#flights.pieces, st.id, has, this.#o.maxCopies, now);
    }
    if (piece < 0) return undefined;
    if (!duplicate) this.#markInFlight(piece);
    const bytes = this.#o.pieceBytes(piece);
    const expected = st.rate.expectedMs(bytes, NaN);
    const deadline = now +
      (Number.isNaN(expected)
        ? this.#o.initialTimeoutMs
        : Math.max(this.#o.minTimeoutMs, 4 * expected));
    const due = Number.isNaN(expected) ? deadline : now + expected;
    this.#flights.add(st.id, piece, now, due, deadline);
    st.inflight++;
    st.rate.onRequest(now);
    this.#window.onRequest(now);
    if (st.server && this.#o.seedMode === "fetcher" && !duplicate) {
      this.#notices.push({ piece, fetching: true });
    }
    return { source: st.id, piece, duplicate, solo: this.liars.onParole(st.id) };
  }

  #pickNew(st: SourceState, now: number): number {
    const a = this.availability;
    const r = this.#o.random;
    if (!st.server) {
      const first = this.#o.pieceCount - this.#missing < this.#o.randomFirst;
      return first ? a.pickRandom(st.id, r) : a.pickRarest(st.id, r);
    }
    if (this.#o.seedMode !== "fetcher") return a.pickRarest(st.id, r);
    const piece = a.pickRarest(st.id, r, 0);
    if (piece >= 0 || now - this.#lastProgressAt < this.#o.stallMs) return piece;
    return a.pickRarest(st.id, r);
  }

  #markInFlight(piece: number): void {
    this.#state[piece] = IN_FLIGHT;
    if (--this.#missing === 0) {
      // (the tail: every source may now take an end-game duplicate)
      for (const st of this.#sources.values()) this.#ready.push(st);
    }
  }

  /** The request of `st` for `piece` ended without data. */
  #abandon(st: SourceState, piece: number, now: number): void {
    if (!this.#flights.remove(st.id, piece)) return;
    st.inflight--;
    st.rate.onAbandoned(now);
    this.#window.onAbandoned(now);
    this.#released(st, piece);
  }

  /**
   * `st` no longer brings `piece`: unless another source is asked for it, it is wanted again,
   * and every source holding it may take it.
   */
  #released(st: SourceState, piece: number): void {
    if (!this.#wantAgain(piece, st.id)) return;
    if (st.server && this.#o.seedMode === "fetcher") {
      this.#notices.push({ piece, fetching: false });
    }
  }

  /**
   * An in-flight piece no source is asked for any more is missing again (re-filed where it was
   * dropped, and at `from`, its last source); false otherwise.
   */
  #wantAgain(piece: number, from?: number): boolean {
    if (this.#state[piece] !== IN_FLIGHT || this.#flights.inFlight(piece)) return false;
    this.#state[piece] = MISSING;
    // (at the tail no source looked at its buckets, so none parked the piece: all may take it)
    if (this.#missing++ === 0) this.reconsiderAll();
    for (const id of this.availability.wantAgain(piece, from)) this.#nudge(this.#sources.get(id));
    return true;
  }

  /** A bad piece from `id`: it is excluded, the piece is wanted again. */
  #convict(id: number, piece: number): number[] {
    const excluded: number[] = [];
    for (const x of this.liars.pieceFailed([id])) excluded.push(...this.#exclude(x));
    this.#wantAgain(piece);
    return excluded;
  }

  #exclude(id: number): number[] {
    this.removeSource(id);
    return [id];
  }
}
