/**
 * Lazily corrected buckets of pieces by level (a level is a rarity count: 0 = nobody known has
 * it). The structure behind rarest-first without a scan over all pieces.
 *
 * Why lazy: a piece's level changes on every "have" from any source, and a fetcher keeps one of
 * these per source. Moving the piece in every holder's buckets on each change would cost
 * O(holders) per have. Instead an entry keeps the level it was filed at, and `pop` checks it
 * against the current level (asked through `levelOf`): an entry that went up is re-filed
 * higher, one no longer wanted is dropped. Each entry is re-filed at most once per level change,
 * so a pop is amortised O(1) plus a walk over at most `maxLevel` bucket heads — never a walk
 * over pieces.
 *
 * Levels only rise while sources join and announce; when one leaves, levels fall, and the owner
 * re-files the pieces that became rare (see `PieceAvailability.removeSource`), so that entries
 * which became rarer are found too.
 *
 * @module
 */

/** Current level of a piece, or -1 when it is no longer wanted (have it, in flight, gone). */
export type LevelOf = (piece: number) => number;

/** Pieces filed by level; `pop` returns one of the lowest level, uniformly among ties. */
export class LevelBuckets {
  #buckets: number[][] = [];
  /** Lowest level that may be non-empty. */
  #low = 0;
  #size = 0;

  /**
   * @param levelOf current level of a piece (-1: drop it)
   * @param maxLevel levels above this count as this (rarity beyond it no longer matters)
   */
  constructor(readonly levelOf: LevelOf, readonly maxLevel: number) {
    for (let l = 0; l <= maxLevel; l++) this.#buckets.push([]);
  }

  /** Entries held, stale ones included (an upper bound on the wanted pieces filed). */
  get size(): number {
    return this.#size;
  }

  /** Files `piece` at `level` (the caller's current view of it). */
  push(piece: number, level: number): void {
    const l = this.#clamp(level);
    this.#buckets[l].push(piece);
    this.#size++;
    if (l < this.#low) this.#low = l;
  }

  /**
   * Removes and returns a wanted piece of the lowest current level not above `maxAccept`, chosen
   * uniformly among the pieces of that level; -1 when there is none. Stale entries met on the
   * way are dropped or re-filed.
   */
  pop(random: () => number, maxAccept = Infinity): number {
    const top = Math.min(this.maxLevel, maxAccept);
    for (let l = this.#low; l <= top; l++) {
      const piece = this.#popAt(l, random);
      if (piece >= 0) return piece;
    }
    return -1;
  }

  /**
   * Removes and returns a wanted piece chosen uniformly among all entries, whatever their
   * level (random first pieces); -1 when none is wanted. Stale entries met are dropped.
   */
  popAny(random: () => number): number {
    while (this.#size > 0) {
      let k = Math.floor(random() * this.#size);
      let l = 0;
      while (k >= this.#buckets[l].length) k -= this.#buckets[l++].length;
      const piece = this.#take(l, k);
      if (this.levelOf(piece) >= 0) return piece;
    }
    return -1;
  }

  /** Forgets every entry. */
  clear(): void {
    for (const b of this.#buckets) b.length = 0;
    this.#size = 0;
    this.#low = this.maxLevel + 1;
  }

  /** Pops from bucket `l` until a fresh entry is found or the bucket is empty. */
  #popAt(l: number, random: () => number): number {
    const b = this.#buckets[l];
    while (b.length > 0) {
      const piece = this.#take(l, Math.floor(random() * b.length));
      const now = this.levelOf(piece);
      if (now < 0) continue;
      const c = this.#clamp(now);
      if (c > l) {
        this.#buckets[c].push(piece);
        this.#size++;
        continue;
      }
      // (c < l: it became rarer since it was filed; every lower bucket is empty, so it is
      // still the rarest entry met)
      this.#low = l;
      return piece;
    }
    if (this.#low === l) this.#low = l + 1;
    return -1;
  }

  /** Swap-removes entry `k` of bucket `l`. */
  #take(l: number, k: number): number {
    const b = this.#buckets[l];
    const piece = b[k];
    b[k] = b[b.length - 1];
    b.pop();
    this.#size--;
    return piece;
  }

  #clamp(level: number): number {
    return level < 0 ? 0 : level > this.maxLevel ? this.maxLevel : level;
  }
}
