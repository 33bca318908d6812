/**
 * Which pieces of a file a server has given to swarm fetchers: the server's side of
 * super-seeding (PROTOCOL.md §10.6). A server's upload is a swarm's floor, and only the server
 * knows exactly what it has already sent, so for requests carrying the swarm flag it decides:
 *
 * - a piece nobody was given yet is served, and recorded as given to the asker;
 * - a piece given to this same asker is served again (its losses, its re-requests);
 * - a piece given to another swarm fetcher within the last `holdMs` (counted from that
 *   fetcher's latest request for it) gets GIVEN_OUT, with a few pieces never sent, while such
 *   pieces remain: the asker fetches it from its peers and asks for a first copy instead;
 * - once every piece went out (the first pass is over), or the holder has been quiet on it for
 *   `holdMs` (it left, or its peers never got it), anything is served: the server's spare upload
 *   then helps the tail, and no piece can be withheld for good.
 *
 * Requests without the flag (plain fetchers, which share nothing) are never refused and never
 * recorded. Pure: times come in, no clock.
 *
 * @module
 */

/** What to do with one flagged request. */
export type FirstCopyAnswer =
  /** Send what was asked. */
  | { kind: "serve" }
  /** Refuse with GIVEN_OUT: `piece` went to another swarm fetcher; `unsent` were never sent. */
  | { kind: "given_out"; piece: number; unsent: number[] };

/** Tuning of {@link FirstCopyLedger}. */
export interface FirstCopyOptions {
  /** How long a piece stays its holder's after the holder's latest request for it (ms). */
  holdMs?: number;
  /** Unsent pieces named in a GIVEN_OUT answer at most. */
  hints?: number;
}

/** Default `holdMs`: a piece takes well under a second to cross even a capped server. */
export const FIRST_COPY_HOLD_MS = 10_000;
/** Default `hints`. */
const HINTS = 8;

/** First copies of one file's pieces (see the module comment). */
export class FirstCopyLedger {
  /** Who was given each piece (the asker's address), or undefined. */
  readonly #holder: (string | undefined)[];
  /** When each piece's holder last asked for it (ms). */
  readonly #lastAt: Float64Array;
  /** Pieces never given, unordered; `#at[piece]` is a piece's place in it, −1 once given. */
  readonly #unsent: Int32Array;
  readonly #at: Int32Array;
  #unsentCount: number;
  readonly #holdMs: number;
  readonly #hints: number;

  /** A ledger of `pieceCount` pieces of `pieceSize` bytes, nothing given; `random` picks hints. */
  constructor(
    readonly pieceCount: number,
    readonly pieceSize: number,
    readonly random: () => number,
    options: FirstCopyOptions = {},
  ) {
    this.#holder = new Array<string | undefined>(pieceCount).fill(undefined);
    this.#lastAt = new Float64Array(pieceCount);
    this.#unsent = new Int32Array(pieceCount);
    this.#at = new Int32Array(pieceCount);
    for (let p = 0; p < pieceCount; p++) this.#unsent[p] = this.#at[p] = p;
    this.#unsentCount = pieceCount;
    this.#holdMs = options.holdMs ?? FIRST_COPY_HOLD_MS;
    this.#hints = options.hints ?? HINTS;
  }

  /** Pieces never given to anyone. */
  get unsent(): number {
    return this.#unsentCount;
  }

  /**
   * A flagged request from `asker` for bytes `[offset, offset + length)` (already checked
   * against the file) at `now`: serve it (and record the pieces as the asker's), or GIVEN_OUT.
   */
  answer(now: number, asker: string, offset: number, length: number): FirstCopyAnswer {
    const first = Math.floor(offset / this.pieceSize);
    const last = Math.min(this.pieceCount - 1, Math.floor((offset + length - 1) / this.pieceSize));
    if (this.#unsentCount > 0) {
      for (let p = first; p <= last; p++) {
        if (this.#heldByOther(p, asker, now)) {
          return { kind: "given_out", piece: p, unsent: this.#sample() };
        }
      }
    }
    for (let p = first; p <= last; p++) this.#give(p, asker, now);
    return { kind: "serve" };
  }

  #heldByOther(piece: number, asker: string, now: number): boolean {
    const holder = this.#holder[piece];
    return holder !== undefined && holder !== asker && now - this.#lastAt[piece] < this.#holdMs;
  }

  #give(piece: number, asker: string, now: number): void {
    this.#holder[piece] = asker;
    this.#lastAt[piece] = now;
    const at = this.#at[piece];
    if (at < 0) return;
    // swap-remove from the unsent set
    const moved = this.#unsent[--this.#unsentCount];
    this.#unsent[at] = moved;
    this.#at[moved] = at;
    this.#at[piece] = -1;
  }

  /** A few distinct unsent pieces, at random (different askers get different ones). */
  #sample(): number[] {
    const n = Math.min(this.#hints, this.#unsentCount);
    const out = new Set<number>();
    for (let tries = 0; out.size < n && tries < 4 * n; tries++) {
      out.add(this.#unsent[Math.floor(this.random() * this.#unsentCount)]);
    }
    return [...out];
  }
}

/** Ledgers of the files a server has seen flagged requests for, the oldest dropped past a cap. */
export class FirstCopyLedgers {
  readonly #byFile = new Map<bigint, FirstCopyLedger>();

  /** Up to `maxFiles` ledgers, each made with `random` and `options`. */
  constructor(
    readonly maxFiles: number,
    readonly random: () => number,
    readonly options: FirstCopyOptions = {},
  ) {}

  /** The ledger of file `fileId` (`size` bytes in `pieceSize` pieces), made on first use. */
  of(fileId: bigint, size: number, pieceSize: number): FirstCopyLedger {
    let l = this.#byFile.get(fileId);
    if (!l || l.pieceSize !== pieceSize) {
      if (this.#byFile.size >= this.maxFiles) {
        this.#byFile.delete(this.#byFile.keys().next().value!);
      }
      const pieces = Math.max(1, Math.ceil(size / pieceSize));
      l = new FirstCopyLedger(pieces, pieceSize, this.random, this.options);
      this.#byFile.set(fileId, l);
    }
    return l;
  }
}
