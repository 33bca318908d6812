/**
 * A source's side of have-maps (PROTOCOL.md §10.3): the pieces it holds, in the order it verified
 * them, and the HAVE_REPLY that answers a HAVE_REQUEST. The log is append-only, so a client that
 * knows its first `since` entries asks only for the rest: the pull form of BitTorrent's "have"
 * messages, needing no per-client state at the source. When the rest would not fit one reply (a
 * client that just arrived at a source holding many pieces), a bitfield page answers instead.
 *
 * Pure: no I/O, no clock.
 *
 * @module
 */

import {
  HaveForm,
  type HaveReply,
  type HaveRequest,
  MAX_FETCHING,
  MAX_HAVE_BYTES,
} from "../wire/packet.ts";

/** Most have-log entries in one list reply (4 bytes each). */
export const MAX_HAVE_LIST = MAX_HAVE_BYTES / 4;

/** The pieces a source holds and the order it came to hold them. */
export class HaveLog {
  /** Pieces of the file. */
  readonly pieces: number;
  #log: Uint32Array;
  #held = 0;
  #bits: Uint8Array;

  constructor(pieces: number) {
    this.pieces = pieces;
    this.#log = new Uint32Array(pieces);
    this.#bits = new Uint8Array(Math.ceil(pieces / 8));
  }

  /** Number of pieces held (also the log's length). */
  get held(): number {
    return this.#held;
  }

  /** Whether every piece is held. */
  get complete(): boolean {
    return this.#held === this.pieces;
  }

  /** Whether `piece` is held. */
  has(piece: number): boolean {
    return piece >= 0 && piece < this.pieces &&
      (this.#bits[piece >> 3] & (0x80 >> (piece & 7))) !== 0;
  }

  /** Records a verified piece; a piece already held or out of range changes nothing. */
  add(piece: number): void {
    if (!Number.isInteger(piece) || piece < 0 || piece >= this.pieces || this.has(piece)) return;
    this.#bits[piece >> 3] |= 0x80 >> (piece & 7);
    this.#log[this.#held++] = piece;
  }

  /**
   * The answer to `p` for the file `fileId`: the log from `p.since` when it fits one reply, else
   * the bitfield page that starts at `p.firstPiece` (rounded down to a byte); with the pieces
   * this node is `fetching` from a server now (the first MAX_FETCHING).
   */
  answer(p: HaveRequest, fileId: bigint, fetching: readonly number[] = []): HaveReply {
    const head = { type: "have_reply", requestId: p.requestId, fileId } as const;
    const counts = { pieces: this.pieces, held: this.#held, fetching: u32List(fetching) };
    if (this.complete) return completeHaveReply(p, this.pieces);
    if (p.since <= this.#held && this.#held - p.since <= MAX_HAVE_LIST) {
      const list = this.#log.subarray(p.since, this.#held);
      return { ...head, ...counts, form: HaveForm.List, first: p.since, entries: bigEndian(list) };
    }
    const first = Math.min(p.firstPiece, Math.max(0, this.pieces - 1)) & ~7;
    const bytes = Math.min(MAX_HAVE_BYTES, Math.ceil((this.pieces - first) / 8));
    const entries = this.#bits.slice(first >> 3, (first >> 3) + bytes);
    return { ...head, ...counts, form: HaveForm.Bitfield, first, entries };
  }
}

/** The answer of a source that holds every piece: no entries, `held === pieces`. */
export function completeHaveReply(p: HaveRequest, pieces: number): HaveReply {
  return {
    type: "have_reply",
    requestId: p.requestId,
    fileId: p.fileId,
    pieces,
    held: pieces,
    form: HaveForm.Bitfield,
    first: 0,
    entries: new Uint8Array(0),
    fetching: new Uint8Array(0),
  };
}

/** Up to MAX_FETCHING piece indices as big-endian u32s. */
function u32List(pieces: readonly number[]): Uint8Array {
  return bigEndian(Uint32Array.from(pieces.slice(0, MAX_FETCHING)));
}

/** The entries as the wire carries them: u32 big-endian each. */
function bigEndian(list: Uint32Array): Uint8Array {
  const out = new Uint8Array(list.length * 4);
  const view = new DataView(out.buffer);
  for (let i = 0; i < list.length; i++) view.setUint32(4 * i, list[i]);
  return out;
}
