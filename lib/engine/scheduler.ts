/**
 * Which bytes to ask which server for next: the shared work queue of a fetch.
 *
 * The file is cut into pieces (the unit of verification, sized by the servers) and each piece
 * into blocks (the unit of one datagram, sized by the client). A server takes a whole piece
 * from the queue and owns it, so that a bad piece can be blamed on one source; requests then
 * cover runs of that piece's missing blocks. When the queue is empty, idle servers take the
 * blocks of other servers' pieces that nobody asked for yet, then duplicate blocks still in
 * flight elsewhere (end game), so the slowest server never sets the tail.
 *
 * Pure state machine: no I/O, no clock.
 *
 * @module
 */

import { KeyedHeap } from "../base/keyed_heap.ts";

/** Geometry of a transfer. */
export interface PieceLayout {
  /** File size in bytes. */
  size: number;
  /** Bytes per piece (last piece shorter). */
  pieceSize: number;
  /** Data bytes per datagram (last block of a piece shorter). */
  blockSize: number;
}

/** One request to send: a run of blocks inside one piece. */
export interface Assignment {
  /** Server the request goes to. */
  server: number;
  /** Piece the blocks belong to. */
  piece: number;
  /** Index of the first block within the piece. */
  firstBlock: number;
  /** Number of consecutive blocks. */
  blockCount: number;
  /** Absolute byte offset of the first block. */
  offset: number;
  /** Total bytes requested. */
  length: number;
  /** True when these blocks are already in flight on another server (end game). */
  duplicate: boolean;
  /** Which activation of the piece this belongs to: a piece re-fetched after a failed
   * verification starts a new one, and releases of older requests must not touch it. */
  generation: number;
}

/** What happened to one received block. */
export type BlockOutcome =
  /** New data: write it. `pieceComplete` is set when it was the piece's last block. */
  | { kind: "new"; pieceComplete: boolean }
  /** Already had it (a duplicate or late datagram): drop it. */
  | { kind: "duplicate" }
  /** Does not match any block of the layout: offset or length is wrong. */
  | { kind: "invalid" };

const NO_OWNER = -1;

/**
 * Pieces still being fetched at most when a swarm's source (a peer, or a server asked with the
 * swarm flag) may be asked for second copies: upload is the swarm's scarce resource. (With 100
 * fetchers in the real-code simulator, duplicates from the moment nothing was queued cost 11 %
 * of the peers' upload; from four pieces left, 4 %, and the last finished sooner.)
 */
export const END_GAME_PIECES = 4;

/** Which pieces a source holds (a swarm peer may hold only some); servers hold them all. */
export type PieceFilter = (piece: number) => boolean;

/** The filter of a source that holds every piece. */
export const ALL: PieceFilter = () => true;

/** A source holding only some pieces, indexed: its takeable pieces by queue rank. */
interface IndexedSource {
  has: PieceFilter;
  /** (rank, piece) entries; stale ones (taken, re-ranked, withdrawn) are skipped when popped. */
  heap: KeyedHeap;
}

interface ActivePiece {
  owner: number;
  generation: number;
  /** 1 when the block has arrived. */
  received: Uint8Array;
  /**
   * Servers with a request in flight for each block: two slots per block (block b uses
   * 2b and 2b+1), NO_OWNER when empty. At most two requests ever cover one block.
   */
  holders: Int32Array;
  missing: number;
}

/** The work queue: piece ownership, block bookkeeping and end-game duplication. */
export class PieceScheduler {
  /** Geometry this scheduler was built for. */
  readonly layout: PieceLayout;
  /** Number of pieces in the file. */
  readonly pieceCount: number;
  #state: Uint8Array; // 0 queued, 1 active, 2 complete (awaiting verification), 3 verified
  #active = new Map<number, ActivePiece>();
  /** The same pieces by index: the per-datagram look-up is an array read, not a hash. */
  #byPiece: (ActivePiece | undefined)[] = [];
  #queue: number[] = [];
  /**
   * Each piece's place in the queue: the rank of its newest entry, lower taken first. The
   * initial order gets 0, 1, 2, …; a piece put first gets a rank below every one given before
   * (as the newest entry on top of `#queue`, the stack servers pop).
   */
  #rank: Float64Array;
  #lowestRank = 0;
  /**
   * Sources that hold only some pieces (swarm peers), indexed: such a source's next piece is
   * the lowest-ranked takeable one it holds, found in its own heap instead of by popping and
   * pushing back every queued piece it lacks (at 64 fetchers, that scan was the simulator's
   * largest cost). Same choice as the scan, so a run replays the same either way.
   */
  #indexed = new Map<number, IndexedSource>();
  #verified = 0;
  /** Pieces in state 0 (queued): while any is left, no block is asked for twice. */
  #queued = 0;
  #generations = 0;

  /**
   * Builds the queue with every piece missing, lowest offsets first, or in `order` (a
   * permutation of the pieces: a swarm's fetchers each take their own, so that what they ask
   * the servers for differs).
   */
  constructor(layout: PieceLayout, order?: readonly number[]) {
    if (layout.pieceSize <= 0 || layout.blockSize <= 0 || layout.size < 0) {
      throw new RangeError("piece and block sizes must be positive");
    }
    this.layout = layout;
    this.pieceCount = Math.ceil(layout.size / layout.pieceSize);
    this.#state = new Uint8Array(this.pieceCount);
    this.#queued = this.pieceCount;
    // (filled, so the array stays a packed one and not a dictionary)
    this.#byPiece = new Array<ActivePiece | undefined>(this.pieceCount).fill(undefined);
    this.#rank = new Float64Array(this.pieceCount);
    const first = order && order.length === this.pieceCount ? order : undefined;
    for (let i = this.pieceCount - 1; i >= 0; i--) {
      const piece = first ? first[i] : i;
      this.#queue.push(piece);
      this.#rank[piece] = i;
    }
  }

  /**
   * Indexes source `server`, which holds the pieces `has` accepts (a swarm peer): from now on
   * {@link next} finds its pieces without scanning the queue. Tell it of every piece the source
   * gains with {@link sourceHas}; pieces it stops holding are skipped (`has` is asked again).
   */
  indexSource(server: number, has: PieceFilter): void {
    const heap = new KeyedHeap();
    for (let piece = 0; piece < this.pieceCount; piece++) {
      if (this.#takeable(piece) && has(piece)) heap.push(this.#rank[piece], piece);
    }
    this.#indexed.set(server, { has, heap });
  }

  /** Source `server` now holds `piece` (see {@link indexSource}). */
  sourceHas(server: number, piece: number): void {
    const ix = this.#indexed.get(server);
    if (ix && piece >= 0 && piece < this.pieceCount && this.#takeable(piece)) {
      ix.heap.push(this.#rank[piece], piece);
    }
  }

  /** True when every piece has been verified. */
  get done(): boolean {
    return this.#verified === this.pieceCount;
  }

  /** Number of verified pieces. */
  get verifiedPieces(): number {
    return this.#verified;
  }

  /** Pieces being fetched now whose owner `owned` accepts (e.g. the servers among the sources). */
  activePieces(owned: (source: number) => boolean): number[] {
    const out: number[] = [];
    for (const [piece, p] of this.#active) {
      if (p.owner !== NO_OWNER && owned(p.owner)) out.push(piece);
    }
    return out;
  }

  /** Byte range `[start, end)` of a piece. */
  pieceRange(piece: number): [number, number] {
    const start = piece * this.layout.pieceSize;
    return [start, Math.min(this.layout.size, start + this.layout.pieceSize)];
  }

  /** Marks a piece as already present and verified (used when resuming). */
  markVerified(piece: number): void {
    if (!(piece >= 0 && piece < this.pieceCount) || this.#state[piece] === 3) return;
    this.#active.delete(piece);
    this.#byPiece[piece] = undefined;
    this.#queue = this.#queue.filter((p) => p !== piece);
    if (this.#state[piece] === 0) this.#queued--;
    this.#state[piece] = 3;
    this.#verified++;
  }

  /**
   * Next request for `server`, at most `maxBlocks` blocks, or `undefined` when it has nothing
   * useful to do right now (wait for a change). `has`: the pieces it holds; `swarm`: it is a
   * swarm's source (a peer, or a server asked with the swarm flag), whose second copies wait
   * for the end game (see `END_GAME_PIECES`).
   */
  next(
    server: number,
    maxBlocks: number,
    has: PieceFilter = ALL,
    swarm = false,
  ): Assignment | undefined {
    const ix = has === ALL ? undefined : this.#indexed.get(server);
    return this.#continueOwned(server, maxBlocks) ??
      (ix ? this.#takeIndexed(server, maxBlocks, ix) : this.#takeQueued(server, maxBlocks, has)) ??
      this.#duplicateInFlight(server, maxBlocks, has, swarm);
  }

  /**
   * Puts queued `pieces` at the front of the queue, in their order (a server named them as
   * never sent: the next request to it should be a first copy). Pieces taken, complete or
   * unknown are ignored.
   */
  promote(pieces: readonly number[]): void {
    for (let i = pieces.length - 1; i >= 0; i--) {
      const piece = pieces[i];
      if (!(piece >= 0 && piece < this.pieceCount) || this.#state[piece] !== 0) continue;
      this.#putFirst(piece); // (a second entry is harmless: the first one taken wins)
    }
  }

  /**
   * Ends a request (answered, timed out or abandoned): its unreceived blocks are free again.
   * With `lost` (it timed out), the server also gives up the piece, which goes to the front of
   * the queue: the next free lane, usually another server's, retries it.
   */
  release(a: Assignment, lost = false): void {
    const p = this.#byPiece[a.piece];
    if (!p || p.generation !== a.generation) return;
    for (let b = a.firstBlock; b < a.firstBlock + a.blockCount; b++) {
      if (p.holders[2 * b] === a.server) p.holders[2 * b] = NO_OWNER;
      else if (p.holders[2 * b + 1] === a.server) p.holders[2 * b + 1] = NO_OWNER;
    }
    if (lost && p.owner === a.server) {
      p.owner = NO_OWNER;
      this.#putFirst(a.piece);
    }
  }

  /**
   * Accounts for one received datagram at absolute `offset` with `length` data bytes. (The
   * outcomes are shared constants: this runs once per datagram and allocates nothing.)
   */
  onBlock(offset: number, length: number): BlockOutcome {
    const { pieceSize, blockSize, size } = this.layout;
    if (!Number.isSafeInteger(offset) || offset < 0 || offset >= size) return INVALID;
    const piece = Math.floor(offset / pieceSize);
    const start = piece * pieceSize;
    const end = Math.min(size, start + pieceSize);
    const rel = offset - start;
    if (rel % blockSize !== 0) return INVALID;
    if (length !== Math.min(blockSize, end - offset)) return INVALID;
    const p = this.#byPiece[piece];
    if (!p) return DUPLICATE;
    const block = rel / blockSize;
    if (p.received[block]) return DUPLICATE;
    p.received[block] = 1;
    p.missing--;
    if (p.missing > 0) return NEW;
    this.#active.delete(piece);
    this.#byPiece[piece] = undefined;
    this.#state[piece] = 2;
    return NEW_COMPLETE;
  }

  /** Records the verdict on a complete piece: verified, or corrupt and to be fetched again. */
  settlePiece(piece: number, ok: boolean): void {
    if (this.#state[piece] !== 2) return;
    if (ok) {
      this.#state[piece] = 3;
      this.#verified++;
    } else {
      this.#state[piece] = 0;
      this.#queued++;
      this.#putFirst(piece);
    }
  }

  /**
   * Forgets every claim: no request is in flight anywhere, so every unreceived block is free
   * and every active piece goes back to the queue. A safety net for the engine's liveness:
   * whatever bookkeeping went wrong, work can always be handed out again.
   */
  resetClaims(): void {
    for (const [piece, p] of this.#active) {
      p.holders.fill(NO_OWNER);
      if (p.owner === NO_OWNER) continue;
      p.owner = NO_OWNER;
      this.#putFirst(piece);
    }
  }

  /** A server left: its pieces go back to the front of the queue, keeping what arrived. */
  dropServer(server: number): void {
    for (const [piece, p] of this.#active) {
      if (p.owner !== server) continue;
      p.owner = NO_OWNER;
      this.#putFirst(piece);
    }
    this.#indexed.delete(server); // (gone: its index with it)
  }

  /** Puts `piece` at the front of the queue (the tail of the array is taken first). */
  #putFirst(piece: number): void {
    this.#queue.push(piece);
    const rank = --this.#lowestRank;
    this.#rank[piece] = rank;
    for (const ix of this.#indexed.values()) if (ix.has(piece)) ix.heap.push(rank, piece);
  }

  /** Whether `piece` may be taken by a source: queued, or active with nobody owning it. */
  #takeable(piece: number): boolean {
    const state = this.#state[piece];
    return state === 0 || (state === 1 && this.#byPiece[piece]?.owner === NO_OWNER);
  }

  /** `#takeQueued` for an indexed source: its lowest-ranked takeable piece, no scan. */
  #takeIndexed(server: number, maxBlocks: number, ix: IndexedSource): Assignment | undefined {
    const heap = ix.heap;
    for (let piece = heap.nextId; piece !== undefined; piece = heap.nextId) {
      const rank = heap.nextKey;
      heap.popDue();
      // an entry outranked by a newer one, taken, settled, or no longer held: skipped
      if (rank !== this.#rank[piece] || !this.#takeable(piece) || !ix.has(piece)) continue;
      const p = this.#byPiece[piece] ?? this.#newActive(piece);
      p.owner = server;
      const a = this.#claimRun(server, piece, p, maxBlocks, false);
      if (a) return a;
    }
    return undefined;
  }

  #continueOwned(server: number, maxBlocks: number): Assignment | undefined {
    for (const [piece, p] of this.#active) {
      if (p.owner !== server) continue;
      const a = this.#claimRun(server, piece, p, maxBlocks, false);
      if (a) return a;
    }
    return undefined;
  }

  #takeQueued(server: number, maxBlocks: number, has: PieceFilter): Assignment | undefined {
    let skipped: number[] | undefined;
    try {
      return this.#takeQueuedFrom(server, maxBlocks, has, (piece) => (skipped ??= []).push(piece));
    } finally {
      // pieces this source does not hold stay queued, in their order, for sources that do
      if (skipped) { for (let i = skipped.length - 1; i >= 0; i--) this.#queue.push(skipped[i]); }
    }
  }

  #takeQueuedFrom(
    server: number,
    maxBlocks: number,
    has: PieceFilter,
    skip: (piece: number) => void,
  ): Assignment | undefined {
    while (this.#queue.length > 0) {
      const piece = this.#queue.pop()!;
      if (has !== ALL && this.#state[piece] <= 1 && !has(piece)) {
        skip(piece);
        continue;
      }
      let p = this.#byPiece[piece];
      if (p && p.owner !== NO_OWNER) continue; // queued twice and already taken
      if (!p) {
        if (this.#state[piece] !== 0) continue; // settled meanwhile
        p = this.#newActive(piece);
      }
      p.owner = server;
      const a = this.#claimRun(server, piece, p, maxBlocks, false);
      if (a) return a;
    }
    return undefined;
  }

  #duplicateInFlight(
    server: number,
    maxBlocks: number,
    has: PieceFilter,
    swarm: boolean,
  ): Assignment | undefined {
    // pieces with the most missing blocks first: they are the likeliest to set the tail
    const candidates = [...this.#active].filter(([piece, p]) =>
      p.owner !== server && (has === ALL || has(piece))
    );
    candidates.sort((x, y) => y[1].missing - x[1].missing);
    // blocks of those pieces that nobody has asked for yet come first: a slow owner would ask
    // for them one request at a time, and its last piece would set the tail
    for (const [piece, p] of candidates) {
      const a = this.#claimRun(server, piece, p, maxBlocks, false);
      if (a) return a;
    }
    // from a swarm's source, a second copy only in the end game, for the last few pieces: a
    // peer that holds none of the queued pieces has nothing to do yet, and copies it sent would
    // be upload wasted (at N = 32 in the simulator they were most of the peers' waste), as
    // would a server's, the scarcest upload of all. A plain fetch keeps the old rule (any block
    // in flight once elsewhere), so its slowest server never sets the tail.
    if (swarm && (this.#queued > 0 || this.#active.size > END_GAME_PIECES)) return undefined;
    for (const [piece, p] of candidates) {
      const a = this.#claimRun(server, piece, p, maxBlocks, true);
      if (a) return a;
    }
    return undefined;
  }

  #newActive(piece: number): ActivePiece {
    const [start, end] = this.pieceRange(piece);
    const blocks = Math.ceil((end - start) / this.layout.blockSize);
    const p: ActivePiece = {
      owner: NO_OWNER,
      generation: ++this.#generations,
      received: new Uint8Array(blocks),
      holders: new Int32Array(2 * blocks).fill(NO_OWNER),
      missing: blocks,
    };
    this.#state[piece] = 1;
    this.#queued--;
    this.#active.set(piece, p);
    this.#byPiece[piece] = p;
    return p;
  }

  /**
   * Claims the first run of unreceived blocks that no request covers (or, for `duplicate`,
   * that exactly one request from another server covers).
   */
  #claimRun(
    server: number,
    piece: number,
    p: ActivePiece,
    maxBlocks: number,
    duplicate: boolean,
  ): Assignment | undefined {
    const n = p.received.length;
    const fits = (b: number) => !p.received[b] && claimable(p.holders, b, server, duplicate);
    let first = 0;
    while (first < n && !fits(first)) first++;
    if (first === n) return undefined;
    let last = first;
    while (last + 1 < n && last + 1 - first < maxBlocks && fits(last + 1)) last++;
    for (let b = first; b <= last; b++) {
      p.holders[p.holders[2 * b] === NO_OWNER ? 2 * b : 2 * b + 1] = server;
    }
    const [start, end] = this.pieceRange(piece);
    const offset = start + first * this.layout.blockSize;
    const length = Math.min(end, start + (last + 1) * this.layout.blockSize) - offset;
    return {
      server,
      piece,
      firstBlock: first,
      blockCount: last - first + 1,
      offset,
      length,
      duplicate,
      generation: p.generation,
    };
  }
}

const INVALID: BlockOutcome = Object.freeze({ kind: "invalid" });
const DUPLICATE: BlockOutcome = Object.freeze({ kind: "duplicate" });
const NEW: BlockOutcome = Object.freeze({ kind: "new", pieceComplete: false });
const NEW_COMPLETE: BlockOutcome = Object.freeze({ kind: "new", pieceComplete: true });

/** Whether `server` may request block `b`: a free block, or (end game) one held by one other. */
function claimable(holders: Int32Array, b: number, server: number, duplicate: boolean): boolean {
  const h0 = holders[2 * b];
  const h1 = holders[2 * b + 1];
  const count = (h0 !== NO_OWNER ? 1 : 0) + (h1 !== NO_OWNER ? 1 : 0);
  if (!duplicate) return count === 0;
  return count === 1 && h0 !== server && h1 !== server;
}
