/**
 * A client's view of what one source holds (PROTOCOL.md §10.3), kept current by HAVE_REPLYs: the
 * bitfield pages of a first look, then the source's have-log from where the client left off.
 * It reports each piece the first time the source is seen to hold it, so that per-piece
 * availability counts can follow without rescanning the map.
 *
 * Nothing here trusts the source: a claim only decides where to *ask*; every piece is verified
 * against its trusted hash whoever sent it, and a source that answers NOT_HELD for a piece it
 * claimed loses the claim ({@link HaveMap.forget}) and is counted by the caller.
 *
 * Pure: no I/O, no clock.
 *
 * @module
 */

import { HaveForm, type HaveReply } from "../wire/packet.ts";

/** What to put in the next HAVE_REQUEST to this source. */
export interface HaveQuery {
  since: number;
  firstPiece: number;
}

/** One source's pieces, as far as its answers told. */
export class HaveMap {
  /** Pieces of the file. */
  readonly pieces: number;
  #bits: Uint8Array;
  #count = 0;
  /** Have-log position known: the entries before it have been applied. */
  #since = 0;
  /** Next bitfield page to read, while a first look is under way; undefined otherwise. */
  #page: number | undefined = 0;
  /** Smallest `held` of the pages of the current look: where the log continues after it. */
  #pageSince = Infinity;
  #complete = false;

  constructor(pieces: number) {
    this.pieces = pieces;
    this.#bits = new Uint8Array(Math.ceil(pieces / 8));
  }

  /** Number of pieces the source is known to hold. */
  get count(): number {
    return this.#count;
  }

  /** Whether the source holds every piece (it said so). */
  get complete(): boolean {
    return this.#complete;
  }

  /** Whether the source is known to hold `piece`. */
  has(piece: number): boolean {
    return (this.#bits[piece >> 3] & (0x80 >> (piece & 7))) !== 0;
  }

  /** What to ask next: the next bitfield page during a first look, else the log's rest. */
  query(): HaveQuery {
    return { since: this.#page === undefined ? this.#since : 0, firstPiece: this.#page ?? 0 };
  }

  /**
   * Applies an answer; `onNew` is called once for every piece it shows for the first time. A
   * reply for another piece count, or a list that skips log entries, changes nothing and
   * returns false (the caller counts it as a bad answer).
   */
  apply(r: HaveReply, onNew: (piece: number) => void): boolean {
    if (r.pieces !== this.pieces || r.held > r.pieces) return false;
    if (r.held === r.pieces) return this.#applyComplete(onNew);
    if (r.form === HaveForm.List) return this.#applyList(r, onNew);
    return this.#applyPage(r, onNew);
  }

  /**
   * Whether `r` shows a log shorter than what was already read of it: the source started over
   * (a restart without its `.part`), and holds less than this map says. The map cannot shrink
   * piece by piece (the log says what was added, never what was lost): start a new one.
   */
  shrank(r: HaveReply): boolean {
    return r.pieces === this.pieces && r.held < r.pieces && r.held < this.#since;
  }

  /**
   * The source answered NOT_HELD for `piece` it had claimed: the claim is withdrawn (and a
   * complete source is one no more). Returns whether it was claimed.
   */
  forget(piece: number): boolean {
    if (!this.has(piece)) return false;
    this.#bits[piece >> 3] &= ~(0x80 >> (piece & 7));
    this.#count--;
    this.#complete = false;
    return true;
  }

  #applyComplete(onNew: (piece: number) => void): boolean {
    this.#complete = true;
    this.#page = undefined;
    this.#since = this.pieces;
    for (let p = 0; p < this.pieces; p++) this.#mark(p, onNew);
    return true;
  }

  #applyList(r: HaveReply, onNew: (piece: number) => void): boolean {
    const n = r.entries.length / 4;
    // a list starting past what is known would leave a gap the client could never fill in
    if (r.first > this.#since || r.first + n > r.held) return false;
    const view = new DataView(r.entries.buffer, r.entries.byteOffset, r.entries.byteLength);
    for (let i = 0; i < n; i++) {
      const piece = view.getUint32(4 * i);
      if (piece < this.pieces) this.#mark(piece, onNew);
    }
    this.#since = Math.max(this.#since, r.first + n);
    // a list that covers the log from the start is a whole first look by itself
    if (r.first === 0 && this.#since === r.held) this.#page = undefined;
    return true;
  }

  #applyPage(r: HaveReply, onNew: (piece: number) => void): boolean {
    if (r.first % 8 !== 0 || r.first >= Math.max(1, this.pieces)) return false;
    const end = Math.min(this.pieces, r.first + 8 * r.entries.length);
    for (let p = r.first; p < end; p++) {
      if (r.entries[(p - r.first) >> 3] & (0x80 >> ((p - r.first) & 7))) this.#mark(p, onNew);
    }
    this.#pageSince = Math.min(this.#pageSince, r.held);
    if (end < this.pieces && r.entries.length > 0) {
      this.#page = end;
      return true;
    }
    // the look is over: the log continues from the oldest snapshot among its pages
    this.#page = undefined;
    this.#since = Math.max(this.#since, this.#pageSince);
    this.#pageSince = Infinity;
    return true;
  }

  #mark(piece: number, onNew: (piece: number) => void): void {
    if (this.has(piece)) return;
    this.#bits[piece >> 3] |= 0x80 >> (piece & 7);
    this.#count++;
    onNew(piece);
  }
}
