/**
 * Who sent a corrupt piece: the servers that delivered a piece's blocks are recorded, and when
 * the piece fails its hash they are blamed. A sole source is excluded at once; when several
 * servers contributed (end game), each gets a strike and two strikes exclude.
 *
 * Pure bookkeeping: the caller drops the servers this returns.
 *
 * @module
 */

/** Strikes that exclude a server that shared the blame for corrupt pieces. */
export const STRIKES_TO_EXCLUDE = 2;

/** Sources of the pieces in progress, and strikes against servers. */
export class SourceLedger {
  #sources = new Map<number, Set<number>>();
  #strikes = new Map<number, number>();

  /** `server` delivered new bytes of `piece`. */
  record(piece: number, server: number): void {
    let s = this.#sources.get(piece);
    if (!s) this.#sources.set(piece, s = new Set());
    s.add(server);
  }

  /** The piece passed its hash: its sources are forgotten. */
  verified(piece: number): void {
    this.#sources.delete(piece);
  }

  /** The piece failed its hash: returns the servers to exclude now. */
  corrupt(piece: number): number[] {
    const sources = [...(this.#sources.get(piece) ?? [])];
    this.#sources.delete(piece);
    if (sources.length === 1) return sources;
    return sources.filter((s) => {
      const n = (this.#strikes.get(s) ?? 0) + 1;
      this.#strikes.set(s, n);
      return n >= STRIKES_TO_EXCLUDE;
    });
  }
}
