/**
 * The bounded peer set: which sources a fetcher keeps (tens, not the whole swarm) and which new
 * candidates from the tracker or peer exchange it connects to.
 *
 * Order of value: complete sources first (they can serve anything), then partial peers by how
 * much they hold that the fetcher still needs, then by measured rate. When the set is full, a
 * partial peer that has had nothing needed for a while makes room for an unknown candidate — a
 * few per round, so the set does not churn.
 *
 * @module
 */

/** What the fetcher knows of a peer in its set. */
export interface PeerFacts {
  /** Peer id. */
  readonly id: number;
  /** Holds every piece. */
  readonly complete: boolean;
  /** Pieces it holds that the fetcher needs (an estimate is fine). */
  readonly useful: number;
  /** Measured bytes per ms from it (0 before any delivery). */
  readonly rate: number;
  /** How long it has been in the set, ms. */
  readonly ageMs: number;
}

/** The decision of one ranking round. */
export interface PeerSetChange {
  /** Candidates to connect to. */
  connect: number[];
  /** Peers to drop. */
  drop: number[];
}

/** Tuning of {@link rankPeers}. */
export interface PeerSetOptions {
  /** Most peers in the set (default 40). */
  max?: number;
  /** Most peers replaced in one round when the set is full (default 4). */
  maxSwaps?: number;
  /**
   * A peer is only replaced after this long in the set, ms (default 5000): at the start every
   * peer holds nothing, and replacing them then would only churn.
   */
  minAgeMs?: number;
}

/** Orders two peers: negative when `a` is worth more than `b`. */
export function comparePeers(a: PeerFacts, b: PeerFacts): number {
  if (a.complete !== b.complete) return a.complete ? -1 : 1;
  if (a.useful !== b.useful) return b.useful - a.useful;
  return b.rate - a.rate;
}

/**
 * Which `candidates` (ids not already in `current`) to connect and which current peers to drop,
 * so the set stays within `max` and useless peers give way to unknown ones.
 */
export function rankPeers(
  current: readonly PeerFacts[],
  candidates: readonly number[],
  options: PeerSetOptions = {},
): PeerSetChange {
  const max = options.max ?? 40;
  const known = new Set(current.map((p) => p.id));
  const fresh = candidates.filter((id) => !known.has(id));
  const room = Math.max(0, max - current.length);
  const connect = fresh.slice(0, room);
  const drop: number[] = [];
  const left = fresh.slice(room);
  if (left.length === 0) return { connect, drop };
  const minAge = options.minAgeMs ?? 0;
  const useless = current
    .filter((p) => !p.complete && p.useful === 0 && p.ageMs >= minAge)
    .sort(comparePeers);
  const swaps = Math.min(left.length, useless.length, options.maxSwaps ?? 4);
  for (let i = 0; i < swaps; i++) {
    drop.push(useless[useless.length - 1 - i].id);
    connect.push(left[i]);
  }
  return { connect, drop };
}
