/**
 * What the fetcher knows of its sources' pieces: per-piece availability counts, fed by have-maps,
 * "have" updates, "fetching" claims and source removal, and rarest-first picking per source.
 *
 * Each source keeps its own {@link LevelBuckets} of the pieces it holds that the fetcher wants;
 * a pick for that source pops the rarest of them (ties at random). A "have" costs O(1) (a count
 * and a push), a pick is amortised O(1) plus at most `maxLevel` bucket heads: no scan over the
 * pieces per request, which matters with a peer set of tens and thousands of pieces.
 *
 * Two rarity counts are kept:
 * - `level(p)`: partial peers known to hold p. Complete sources add the same to every piece, so
 *   they are left out (they would not change the order).
 * - `claimLevel(p)`: holders, complete peers and peers that said they are fetching p from a
 *   server. A seed server is asked for claim-level-0 pieces first, so that it sends each piece
 *   about once.
 *
 * @module
 */

import { LevelBuckets } from "./level_buckets.ts";

/** Where the fetcher stands with a piece. */
export const PieceState = {
  /** Missing and not asked of anyone: pickable. */
  Wanted: 0,
  /** Asked of some source; wanted again if that request fails. */
  InFlight: 1,
  /** Verified. */
  Done: 2,
} as const;

/** One of {@link PieceState}'s values. */
export type PieceState = typeof PieceState[keyof typeof PieceState];

/** How a source is known. */
export interface SourceInfo {
  /** A seed server (always complete; picked for by claim level). */
  server: boolean;
  /** Holds every piece (a server, or a peer that finished). */
  complete: boolean;
  /** Its have-map (one byte per piece, non-zero = has it) when not complete. */
  haves?: Uint8Array;
}

/** Tuning of {@link PieceAvailability}. */
export interface AvailabilityOptions {
  /** Rarity levels above this are treated alike (default 16). */
  maxLevel?: number;
  /**
   * When a source leaves, pieces whose level falls to this or below are re-filed at every holder
   * at once (default 1): rare pieces are found again immediately, common ones lazily.
   */
  eagerLevel?: number;
  /** At most this many "fetching" claims count per source (default 8): a liar's are bounded. */
  maxClaims?: number;
}

interface SourceView {
  readonly server: boolean;
  complete: boolean;
  /** Null when complete. */
  haves: Uint8Array | null;
  /** Pieces it holds. */
  count: number;
  buckets: LevelBuckets;
  /** Pieces it said it is fetching from a server, with when it said so. */
  claims: { piece: number; at: number }[];
}

/** Availability counts and per-source rarest-first picking. */
export class PieceAvailability {
  readonly #have: Uint16Array;
  readonly #claimed: Uint16Array;
  readonly #sources = new Map<number, SourceView>();
  readonly #maxLevel: number;
  readonly #eagerLevel: number;
  readonly #maxClaims: number;
  #completePeers = 0;
  /** Claims held in all (so that expiring none costs nothing). */
  #claims = 0;
  /**
   * Sources whose buckets dropped a piece because it was in flight: if the piece is wanted
   * again, only they (and the source whose request failed) need it back — not every holder.
   */
  readonly #parked = new Map<number, number[]>();

  /**
   * @param pieceCount pieces in the file
   * @param stateOf where the fetcher stands with a piece
   */
  constructor(
    readonly pieceCount: number,
    readonly stateOf: (piece: number) => PieceState,
    options: AvailabilityOptions = {},
  ) {
    this.#have = new Uint16Array(pieceCount);
    this.#claimed = new Uint16Array(pieceCount);
    this.#maxLevel = options.maxLevel ?? 16;
    this.#eagerLevel = options.eagerLevel ?? 1;
    this.#maxClaims = options.maxClaims ?? 8;
  }

  /** Whether the fetcher wants `piece` now (missing, not in flight). */
  wanted(piece: number): boolean {
    return this.stateOf(piece) === PieceState.Wanted;
  }

  /** Partial peers known to hold `piece`. */
  level(piece: number): number {
    return this.#have[piece];
  }

  /** Known holders (complete peers included) plus peers fetching `piece` from a server. */
  claimLevel(piece: number): number {
    return this.#have[piece] + this.#claimed[piece] + this.#completePeers;
  }

  /** Whether `id` is a known source. */
  knows(id: number): boolean {
    return this.#sources.has(id);
  }

  /** Whether source `id` holds `piece` (as far as it told). */
  has(id: number, piece: number): boolean {
    const s = this.#sources.get(id);
    return s !== undefined && (s.complete || s.haves![piece] !== 0);
  }

  /** Whether source `id` holds every piece. */
  isComplete(id: number): boolean {
    return this.#sources.get(id)?.complete ?? false;
  }

  /** Pieces source `id` holds (0 when unknown). */
  pieceCountOf(id: number): number {
    return this.#sources.get(id)?.count ?? 0;
  }

  /** Ids of the known sources. */
  sourceIds(): IterableIterator<number> {
    return this.#sources.keys();
  }

  /** A source and its have-map (its first answer). Replaces what was known of it. */
  addSource(id: number, info: SourceInfo): void {
    this.removeSource(id);
    const complete = info.server || info.complete;
    const s: SourceView = {
      server: info.server,
      complete: false,
      haves: new Uint8Array(this.pieceCount),
      count: 0,
      buckets: new LevelBuckets(this.#levelOf(id, info.server), this.#maxLevel),
      claims: [],
    };
    this.#sources.set(id, s);
    if (complete) {
      this.#makeComplete(s, id);
      return;
    }
    const h = info.haves;
    if (h) { for (let p = 0; p < this.pieceCount; p++) if (h[p] !== 0) this.sourceHas(id, p); }
  }

  /** A source is gone (left, excluded): its pieces and claims stop counting. */
  removeSource(id: number): void {
    const s = this.#sources.get(id);
    if (!s) return;
    this.#sources.delete(id);
    for (const c of s.claims) this.#claimed[c.piece]--;
    this.#claims -= s.claims.length;
    if (s.server) return;
    if (s.complete) {
      this.#completePeers--;
      if (this.#completePeers === 0) this.#refileForServers();
      return;
    }
    const h = s.haves!;
    for (let p = 0; p < this.pieceCount; p++) {
      if (h[p] === 0) continue;
      this.#have[p]--;
      this.#lowered(p);
    }
  }

  /** Source `id` now holds `piece` (a "have"); false when that was known or `id` is unknown. */
  sourceHas(id: number, piece: number): boolean {
    const s = this.#sources.get(id);
    if (!s || s.complete || s.haves![piece] !== 0) return false;
    s.haves![piece] = 1;
    s.count++;
    this.#have[piece]++;
    this.#dropClaim(s, piece);
    this.#file(s, id, piece);
    if (s.count === this.pieceCount) this.#makeComplete(s, id);
    return true;
  }

  /** Source `id` now holds every piece; false when that was known or `id` is unknown. */
  sourceComplete(id: number): boolean {
    const s = this.#sources.get(id);
    if (!s || s.complete) return false;
    this.#makeComplete(s, id);
    return true;
  }

  /** Source `id` says it is fetching `piece` from a server (at time `now`). */
  sourceFetching(id: number, piece: number, now: number): void {
    const s = this.#sources.get(id);
    if (!s || s.server || this.has(id, piece) || s.claims.length >= this.#maxClaims) return;
    if (s.claims.some((c) => c.piece === piece)) return;
    s.claims.push({ piece, at: now });
    this.#claimed[piece]++;
    this.#claims++;
  }

  /** Source `id` stopped fetching `piece` without getting it (its claim is withdrawn). */
  sourceNotFetching(id: number, piece: number): void {
    const s = this.#sources.get(id);
    if (s) this.#dropClaim(s, piece);
  }

  /**
   * A server said it already sent `piece` (to someone this fetcher may not know): it counts as
   * held by one more peer from now on, so it is not asked of the server as a first copy again.
   */
  noteServedElsewhere(piece: number): void {
    this.#claimed[piece]++;
  }

  /**
   * Forgets claims older than `ttlMs` at `now`: a claim that never turns into a "have" must not
   * keep the server from being asked for that piece.
   */
  expireClaims(now: number, ttlMs: number): void {
    if (this.#claims === 0) return;
    for (const s of this.#sources.values()) {
      for (let i = s.claims.length - 1; i >= 0; i--) {
        if (now - s.claims[i].at > ttlMs) this.#dropClaim(s, s.claims[i].piece);
      }
    }
  }

  /**
   * The rarest wanted piece source `id` holds, ties at random; -1 when none (or none at or below
   * `maxLevel`). The piece leaves the source's buckets: the caller marks it in flight, or hands it
   * back with {@link wantAgain}.
   */
  pickRarest(id: number, random: () => number, maxLevel = Infinity): number {
    const s = this.#sources.get(id);
    return s ? s.buckets.pop(random, maxLevel) : -1;
  }

  /** A wanted piece source `id` holds, uniformly at random (the first pieces); -1 when none. */
  pickRandom(id: number, random: () => number): number {
    const s = this.#sources.get(id);
    return s ? s.buckets.popAny(random) : -1;
  }

  /**
   * `piece` is wanted again (a request for it failed, or a pick was not used): it is re-filed at
   * `from` (the source it was taken from) and at the sources that dropped it while it was in
   * flight. Returns the ids re-filed. O(those sources).
   */
  wantAgain(piece: number, from?: number): number[] {
    const ids = this.#parked.get(piece) ?? [];
    this.#parked.delete(piece);
    if (from !== undefined) ids.push(from);
    const out: number[] = [];
    for (const id of ids) {
      const s = this.#sources.get(id);
      if (!s || !(s.complete || s.haves![piece] !== 0) || out.includes(id)) continue;
      s.buckets.push(piece, this.#levelFor(s, piece));
      out.push(id);
    }
    return out;
  }

  /** `piece` is verified: what was parked for it is forgotten. */
  settled(piece: number): void {
    this.#parked.delete(piece);
  }

  /** Entries filed for source `id`, stale ones included (an upper bound on what it can give). */
  filedFor(id: number): number {
    return this.#sources.get(id)?.buckets.size ?? 0;
  }

  /** The level function of source `id`'s buckets (it parks the in-flight pieces it drops). */
  #levelOf(id: number, server: boolean): (p: number) => number {
    return (p) => {
      const st = this.stateOf(p);
      if (st === PieceState.Wanted) return server ? this.claimLevel(p) : this.#have[p];
      if (st === PieceState.InFlight) this.#park(p, id);
      return -1;
    };
  }

  #park(piece: number, id: number): void {
    const ids = this.#parked.get(piece);
    if (ids) ids.push(id);
    else this.#parked.set(piece, [id]);
  }

  /** Re-files a wanted `piece` at every source holding it (its level fell). O(sources). */
  #refileAtHolders(piece: number): void {
    for (const s of this.#sources.values()) {
      if (s.complete || s.haves![piece] !== 0) s.buckets.push(piece, this.#levelFor(s, piece));
    }
  }

  #levelFor(s: SourceView, piece: number): number {
    return s.server ? this.claimLevel(piece) : this.#have[piece];
  }

  /** A partial peer now holds everything: it leaves the counts and joins the complete ones. */
  #makeComplete(s: SourceView, id: number): void {
    if (s.haves) {
      for (let p = 0; p < this.pieceCount; p++) if (s.haves[p] !== 0) this.#have[p]--;
    }
    for (const c of s.claims) this.#claimed[c.piece]--;
    this.#claims -= s.claims.length;
    s.claims = [];
    s.complete = true;
    s.haves = null;
    s.count = this.pieceCount;
    if (!s.server) this.#completePeers++;
    s.buckets.clear();
    for (let p = 0; p < this.pieceCount; p++) this.#file(s, id, p);
  }

  /**
   * Files `piece` in `s`'s buckets if it is wanted; if it is in flight, parks `s` for it instead,
   * so that `s` gets it back should that request fail.
   */
  #file(s: SourceView, id: number, piece: number): void {
    const st = this.stateOf(piece);
    if (st === PieceState.Wanted) s.buckets.push(piece, this.#levelFor(s, piece));
    else if (st === PieceState.InFlight) this.#park(piece, id);
  }

  /** `piece` lost a holder: re-file it where its new rarity must be seen at once. */
  #lowered(piece: number): void {
    if (!this.wanted(piece)) return;
    if (this.claimLevel(piece) === 0) this.#refileAtServers(piece);
    if (this.#have[piece] <= this.#eagerLevel) this.#refileAtHolders(piece);
  }

  #refileAtServers(piece: number): void {
    for (const s of this.#sources.values()) if (s.server) s.buckets.push(piece, 0);
  }

  /** No complete peer is left: every wanted piece of claim level 0 goes back to the servers. */
  #refileForServers(): void {
    for (let p = 0; p < this.pieceCount; p++) {
      if (this.wanted(p) && this.claimLevel(p) === 0) this.#refileAtServers(p);
    }
  }

  #dropClaim(s: SourceView, piece: number): void {
    const i = s.claims.findIndex((c) => c.piece === piece);
    if (i < 0) return;
    s.claims.splice(i, 1);
    this.#claimed[piece]--;
    this.#claims--;
    if (this.wanted(piece) && this.claimLevel(piece) === 0) this.#refileAtServers(piece);
  }
}
