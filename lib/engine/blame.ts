/**
 * Who sent a corrupt piece. The servers that delivered a piece's blocks are recorded; when the
 * piece passes or fails its hash, each source is credited or blamed (a share of 1 / number of
 * sources). A server is excluded once it has been blamed for at least `MIN_BAD_TO_EXCLUDE`
 * pieces and for more pieces than it delivered good ones.
 *
 * Why a ratio and not "one strike": a server that lies is wrong on most pieces and goes after
 * two, while a path that corrupts the odd datagram (every server's, on a bad link) fails a few
 * pieces among many good ones. Excluding those servers would turn a repairable nuisance into a
 * failed download; their bad pieces are caught and fetched again either way.
 *
 * Pure bookkeeping: the caller drops the servers this returns.
 *
 * @module
 */

/** Blame (in pieces) below which a server is never excluded. */
export const MIN_BAD_TO_EXCLUDE = 2;

interface Record {
  good: number;
  bad: number;
}

/** Sources of the pieces in progress, and each server's good and bad deliveries. */
export class SourceLedger {
  #sources = new Map<number, Set<number>>();
  #servers = new Map<number, Record>();

  /** `server` delivered new bytes of `piece`. */
  record(piece: number, server: number): void {
    let s = this.#sources.get(piece);
    if (!s) this.#sources.set(piece, s = new Set());
    s.add(server);
  }

  /** The piece passed its hash: its sources are credited and forgotten. */
  verified(piece: number): void {
    const sources = this.#take(piece);
    for (const s of sources) this.#of(s).good += 1 / sources.length;
  }

  /**
   * The piece failed its hash: its sources are blamed; returns the servers to exclude now. An
   * `untrusted` source (a swarm peer: nobody vouched for it) gets no benefit of the doubt: it is
   * excluded at once when the bad piece was all its own, and otherwise once a whole piece's
   * worth of blame has gathered on it.
   */
  corrupt(piece: number, untrusted: (source: number) => boolean = () => false): number[] {
    const all = this.#take(piece);
    // a piece an untrusted source had a hand in is that source's fault, not a server's: a peer
    // that lies must not get the trusted servers excluded along with it
    const suspects = all.filter(untrusted);
    const sources = suspects.length > 0 ? suspects : all;
    return sources.filter((s) => {
      const r = this.#of(s);
      r.bad += 1 / sources.length;
      // (shares of 1/3 do not add up exactly: compare with a tolerance)
      if (untrusted(s)) return r.bad >= 1 - 1e-9;
      return r.bad >= MIN_BAD_TO_EXCLUDE - 1e-9 && r.bad > r.good;
    });
  }

  #take(piece: number): number[] {
    const sources = [...(this.#sources.get(piece) ?? [])];
    this.#sources.delete(piece);
    return sources;
  }

  #of(server: number): Record {
    let r = this.#servers.get(server);
    if (!r) this.#servers.set(server, r = { good: 0, bad: 0 });
    return r;
  }
}
