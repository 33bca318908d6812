/**
 * The requests a fetcher has outstanding, indexed both ways: by piece (who was asked for it, for
 * the end game and to know when a piece is no longer in flight anywhere) and by source (its
 * pipeline, with each request's deadline).
 *
 * A request for a piece verified meanwhile from elsewhere stays in its source's pipeline until
 * its data arrives or it times out — the protocol has no cancel, so that upload is spent either
 * way and the slot is really taken — but it leaves the per-piece index.
 *
 * @module
 */

import type { Flight } from "./end_game.ts";

/** Outstanding requests by piece and by source. */
export class FlightTable {
  readonly #byPiece = new Map<number, Flight[]>();
  readonly #bySource = new Map<number, Map<number, number>>();
  #total = 0;

  /** Requests outstanding in all. */
  get total(): number {
    return this.#total;
  }

  /** Pieces in flight (not yet verified) with who was asked: for the end game. */
  get pieces(): ReadonlyMap<number, readonly Flight[]> {
    return this.#byPiece;
  }

  /** Requests outstanding at `source`: piece → deadline. */
  ofSource(source: number): ReadonlyMap<number, number> {
    return this.#bySource.get(source) ?? EMPTY;
  }

  /** Whether `piece` is asked of some source (and not yet verified). */
  inFlight(piece: number): boolean {
    return this.#byPiece.has(piece);
  }

  /** Requests outstanding at `source`. */
  countAt(source: number): number {
    return this.#bySource.get(source)?.size ?? 0;
  }

  /**
   * `source` was asked for `piece` at `at`; expected by `due`, given up at `deadline`. False
   * when that request was already outstanding.
   */
  add(source: number, piece: number, at: number, due: number, deadline: number): boolean {
    let s = this.#bySource.get(source);
    if (!s) this.#bySource.set(source, s = new Map());
    if (s.has(piece)) return false;
    s.set(piece, deadline);
    this.#total++;
    this.#list(piece, { source, at, due });
    return true;
  }

  /** The request of `source` for `piece` ended (data, refusal, timeout); false if none. */
  remove(source: number, piece: number): boolean {
    const s = this.#bySource.get(source);
    if (!s?.delete(piece)) return false;
    this.#total--;
    this.#unlist(piece, source);
    return true;
  }

  /** `piece` is verified: it leaves the per-piece index (its other requests stay, see above). */
  settle(piece: number): void {
    this.#byPiece.delete(piece);
  }

  /** Every request of `source` ends; returns the pieces it was asked for. */
  removeSource(source: number): number[] {
    const s = this.#bySource.get(source);
    if (!s) return [];
    const pieces = [...s.keys()];
    for (const p of pieces) this.remove(source, p);
    this.#bySource.delete(source);
    return pieces;
  }

  #list(piece: number, f: Flight): void {
    const list = this.#byPiece.get(piece);
    if (list) list.push(f);
    else this.#byPiece.set(piece, [f]);
  }

  #unlist(piece: number, source: number): void {
    const list = this.#byPiece.get(piece);
    if (!list) return;
    const i = list.findIndex((f) => f.source === source);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.#byPiece.delete(piece);
  }
}

const EMPTY: ReadonlyMap<number, number> = new Map();
