/**
 * The strict end game: only when every missing piece is already in flight (the tail), a source
 * with room gets a second copy of an in-flight piece it holds — one that is overdue (its
 * expected arrival has passed), the one asked for longest ago first — and never more than
 * `maxCopies` copies of a piece. Earlier than the tail, or for pieces that are on time,
 * duplicates only waste upload that another fetcher could use.
 *
 * @module
 */

/** One outstanding request for a piece. */
export interface Flight {
  /** Source asked. */
  readonly source: number;
  /** When it was asked (ms). */
  readonly at: number;
  /** When it is expected to arrive (ms). */
  readonly due: number;
}

/**
 * The in-flight piece to ask `source` for as a duplicate at `now`, or -1: overdue, held by it
 * (`has`), not already asked of it, with fewer than `maxCopies` requests, oldest first request
 * first. O(pieces in flight), which at the tail is at most the pipelines' total.
 */
export function pickDuplicate(
  inFlight: ReadonlyMap<number, readonly Flight[]>,
  source: number,
  has: (piece: number) => boolean,
  maxCopies: number,
  now: number,
): number {
  let best = -1;
  let bestAt = Infinity;
  for (const [piece, flights] of inFlight) {
    if (flights.length >= maxCopies || flights[0].at >= bestAt) continue;
    if (flights.every((f) => f.due > now)) continue;
    if (flights.some((f) => f.source === source) || !has(piece)) continue;
    best = piece;
    bestAt = flights[0].at;
  }
  return best;
}
