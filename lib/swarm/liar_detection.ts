/**
 * Finding a peer that lies — sends bytes that fail the piece hash, or claims pieces it then does
 * not deliver — without trusting any peer's bytes.
 *
 * A piece that fails verification is attributed to the sources whose blocks made it:
 * - one source alone: it lied; it is excluded at once.
 * - several (the end game mixed blocks): each of them goes on parole — from then on it gets only
 *   whole pieces, alone, so its next bad piece convicts it. A paroled source that delivers
 *   `clearAfter` clean pieces alone leaves parole (an honest peer caught with a liar), and a
 *   source in `maxStrikes` failed pieces is excluded even if never caught alone (a liar that
 *   only lies when mixed).
 * A claimed piece that is refused or never arrives is a broken claim; `maxBrokenClaims` of them
 * exclude the source (a peer advertising pieces it lacks).
 *
 * @module
 */

/** Tuning of {@link LiarDetector}. */
export interface LiarOptions {
  /** Failed pieces a source may be part of before it is excluded (default 3). */
  maxStrikes?: number;
  /** Clean solo pieces that end a parole (default 4). */
  clearAfter?: number;
  /** Claims refused or timed out before the source is excluded (default 2). */
  maxBrokenClaims?: number;
}

interface SourceRecord {
  strikes: number;
  paroleClean: number;
  onParole: boolean;
  brokenClaims: number;
}

/** Per-source strikes and parole; answers which sources to exclude. */
export class LiarDetector {
  readonly #records = new Map<number, SourceRecord>();
  readonly #excluded = new Set<number>();
  readonly #maxStrikes: number;
  readonly #clearAfter: number;
  readonly #maxBrokenClaims: number;

  /** Starts with every source trusted as far as any peer is (its bytes are still verified). */
  constructor(options: LiarOptions = {}) {
    this.#maxStrikes = options.maxStrikes ?? 3;
    this.#clearAfter = options.clearAfter ?? 4;
    this.#maxBrokenClaims = options.maxBrokenClaims ?? 2;
  }

  /** Whether `source` has been excluded. */
  isExcluded(source: number): boolean {
    return this.#excluded.has(source);
  }

  /** Whether `source` must be given whole pieces alone (no blocks mixed with other sources). */
  onParole(source: number): boolean {
    return this.#records.get(source)?.onParole ?? false;
  }

  /** A piece made of `contributors`' blocks failed its hash; returns sources excluded now. */
  pieceFailed(contributors: readonly number[]): number[] {
    const solo = contributors.length === 1;
    const out: number[] = [];
    for (const id of contributors) {
      if (this.#excluded.has(id)) continue;
      const r = this.#record(id);
      r.strikes++;
      if (solo || r.strikes >= this.#maxStrikes) {
        this.#exclude(id);
        out.push(id);
      } else {
        r.onParole = true;
        r.paroleClean = 0;
      }
    }
    return out;
  }

  /** A piece made of `contributors`' blocks verified. */
  pieceVerified(contributors: readonly number[]): void {
    if (contributors.length !== 1) return;
    const r = this.#records.get(contributors[0]);
    if (!r?.onParole) return;
    if (++r.paroleClean >= this.#clearAfter) r.onParole = false;
  }

  /** `source` refused or never delivered a piece it claimed; true when it is excluded now. */
  claimBroken(source: number): boolean {
    if (this.#excluded.has(source)) return false;
    const r = this.#record(source);
    if (++r.brokenClaims < this.#maxBrokenClaims) return false;
    this.#exclude(source);
    return true;
  }

  #record(id: number): SourceRecord {
    let r = this.#records.get(id);
    if (!r) {
      r = { strikes: 0, paroleClean: 0, onParole: false, brokenClaims: 0 };
      this.#records.set(id, r);
    }
    return r;
  }

  #exclude(id: number): void {
    this.#excluded.add(id);
    this.#records.delete(id);
  }
}
