/**
 * Which pieces of a file a server has given to swarm fetchers: the server's side of
 * super-seeding (PROTOCOL.md §10.6). A server's upload is a swarm's floor, and only the server
 * knows exactly what it has already sent, so for requests carrying the swarm flag it decides:
 *
 * - a piece nobody was given yet is served, and recorded as given to the asker;
 * - the same asker is served again (its losses, its re-requests);
 * - a piece given to another swarm fetcher gets GIVEN_OUT while pieces never sent remain (the
 *   first pass), with a few of those: the asker fetches it from its peers and asks for a first
 *   copy instead. Peers learn of a piece through have-maps that reach a few tens of peers each,
 *   so in a swarm of hundreds a fetcher often knows no holder yet: a time limit here would hand
 *   the server's upload back to exactly those requests;
 * - after the first pass, a repeat is served while the server's queue is short
 *   (`repeatBacklogMs`), or when the piece has not been sent for `repeatAfterMs`: spare upload
 *   helps the tail and whatever the swarm lost (a holder that left), a busy server does not
 *   replace what the peers relay, and nothing is withheld for good (a queue kept full by plain
 *   fetchers cannot starve a swarm fetcher of a piece nobody shares).
 *
 * A claim costs its asker the piece: a host holds at most `maxOpenClaims` pieces it has not yet
 * been sent whole (a one-byte request claims nothing more once that many are open). So a client
 * that sets the flag and never shares holds back what it downloaded, for one pass of the file
 * at most, and after it only while the server is busy and for `repeatAfterMs` at most. Requests without the flag (plain fetchers, which
 * share nothing) are never refused; what they are sent counts as sent (hints name only pieces
 * nobody got) but is held by nobody. Pure: no clock, no sockets.
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
  /** Queued data (ms of the server's rate) up to which a repeat is still served. */
  repeatBacklogMs?: number;
  /** After the first pass, a piece not sent for this long (ms) is served whatever the queue. */
  repeatAfterMs?: number;
  /** Pieces a host may hold claimed and not yet sent whole. */
  maxOpenClaims?: number;
  /** Unsent pieces named in a GIVEN_OUT answer at most. */
  hints?: number;
}

/** Default `repeatBacklogMs` (the simulator's policy: 50 ms). */
export const REPEAT_BACKLOG_MS = 50;
/** Default `repeatAfterMs`: by then its peers hold a piece, or it was lost with its holder. */
export const REPEAT_AFTER_MS = 5000;
/** Default `maxOpenClaims`: a fetcher has a few pieces in flight; eight on one host, tens. */
export const MAX_OPEN_CLAIMS = 64;
/** Default `hints`. */
const HINTS = 8;
/**
 * Swarm fetchers a file's piece hashes go to per `HASH_LIST_WINDOW_MS` (PROTOCOL.md §10.7). Each
 * fetcher meets tens of peers: with eight holders among 200 fetchers, nine in ten of them have one
 * among 50 peers at once, and the rest a hop later.
 */
export const HASH_LIST_COPIES = 8;
/** See {@link HASH_LIST_COPIES} (ms). */
export const HASH_LIST_WINDOW_MS = 2000;
/** The BUSY retry time for the hash list, ms (spread ±50 %): peers have it by then. */
export const HASH_LIST_RETRY_MS = 300;

/** First copies of one file's pieces (see the module comment). */
export class FirstCopyLedger {
  /** Who was given each piece first (the asker's address and port), or undefined. */
  readonly #holder: (string | undefined)[];
  /** Bytes of each piece sent to its holder so far (a claim is open until the whole piece). */
  readonly #claimBytes: Float64Array;
  /** When each piece was last sent (ms). */
  readonly #lastSentAt: Float64Array;
  /** Open claims per host (the asker's address without the port). */
  readonly #open = new Map<string, number>();
  readonly #repeatAfterMs: number;
  readonly #maxOpenClaims: number;
  /** The file's size: where the last (shorter) piece ends. */
  readonly #fileEnd: number;
  /** Pieces never given, unordered; `#at[piece]` is a piece's place in it, −1 once given. */
  readonly #unsent: Int32Array;
  readonly #at: Int32Array;
  #unsentCount: number;
  readonly #repeatBacklogMs: number;
  readonly #hints: number;
  /** Bytes per piece. */
  readonly pieceSize: number;
  /** Pieces of the file. */
  readonly pieceCount: number;
  #random: () => number;
  /** When a request last consulted this ledger (ms): idle ledgers make room for others. */
  lastUsed = 0;
  /** Swarm fetchers sent the piece hashes lately, and when (`HASH_LIST_COPIES` at most). */
  readonly #hashAskers = new Map<string, number>();

  /** A ledger of a `size`-byte file in `pieceSize` pieces, nothing given; `random` picks hints. */
  constructor(
    size: number,
    pieceSize: number,
    random: () => number,
    options: FirstCopyOptions = {},
  ) {
    const pieceCount = Math.max(1, Math.ceil(size / pieceSize));
    this.#fileEnd = size;
    this.pieceCount = pieceCount;
    this.pieceSize = pieceSize;
    this.#random = random;
    this.#holder = new Array<string | undefined>(pieceCount).fill(undefined);
    this.#claimBytes = new Float64Array(pieceCount);
    this.#lastSentAt = new Float64Array(pieceCount);
    this.#repeatAfterMs = options.repeatAfterMs ?? REPEAT_AFTER_MS;
    this.#maxOpenClaims = options.maxOpenClaims ?? MAX_OPEN_CLAIMS;
    this.#unsent = new Int32Array(pieceCount);
    this.#at = new Int32Array(pieceCount);
    for (let p = 0; p < pieceCount; p++) this.#unsent[p] = this.#at[p] = p;
    this.#unsentCount = pieceCount;
    this.#repeatBacklogMs = options.repeatBacklogMs ?? REPEAT_BACKLOG_MS;
    this.#hints = options.hints ?? HINTS;
  }

  /** Pieces never given to anyone. */
  get unsent(): number {
    return this.#unsentCount;
  }

  /**
   * A flagged HASHES_REQUEST from `asker` (address and port) at `now`: 0 to send the hashes, or
   * the ms after which to ask again (BUSY). The list goes to `HASH_LIST_COPIES` swarm fetchers
   * per `HASH_LIST_WINDOW_MS`, and to each of them again (its other ranges, a lost reply); the
   * rest take it from their peers, which check it against pieces_root as they would a server's:
   * a crowd's hash lists otherwise leave the server once per fetcher, ahead of the data (200
   * fetchers of 8 MiB in 64 KiB pieces: 0.10 F, its first pass over at 1.13 × the bound).
   */
  hashList(now: number, asker: string): number {
    const askers = this.#hashAskers;
    for (const [a, at] of askers) if (now - at >= HASH_LIST_WINDOW_MS) askers.delete(a);
    if (askers.has(asker)) return 0;
    if (askers.size < HASH_LIST_COPIES) return void askers.set(asker, now), 0;
    return HASH_LIST_RETRY_MS * (0.5 + this.#random());
  }

  /**
   * Whether a flagged request from `asker` for bytes `[offset, offset + length)` (already
   * checked against the file) may be served at `now`, with `backlogMs` of data queued at the
   * server, or gets GIVEN_OUT. Records nothing: a request served is recorded by {@link record}
   * once it passed every other check.
   */
  check(
    now: number,
    asker: string,
    offset: number,
    length: number,
    backlogMs = 0,
  ): FirstCopyAnswer {
    const [first, last] = this.#pieces(offset, length);
    for (let p = first; p <= last; p++) {
      const holder = this.#holder[p];
      if (holder === undefined || holder === asker) continue;
      if (this.#unsentCount > 0) return { kind: "given_out", piece: p, unsent: this.#sample() };
      const busy = backlogMs > this.#repeatBacklogMs;
      if (busy && now - this.#lastSentAt[p] < this.#repeatAfterMs) {
        return { kind: "given_out", piece: p, unsent: [] };
      }
    }
    return SERVE;
  }

  /**
   * A request from `asker` is being served at `now`: pieces nobody had are now the asker's
   * (undefined: a plain request, whose pieces count as sent but are held by nobody; so are those
   * of a host with `maxOpenClaims` claims open).
   */
  record(now: number, asker: string | undefined, offset: number, length: number): void {
    const [first, last] = this.#pieces(offset, length);
    const host = asker?.slice(0, asker.lastIndexOf("|"));
    for (let p = first; p <= last; p++) {
      this.#lastSentAt[p] = now;
      const at = this.#at[p];
      if (at >= 0) {
        const claims = host === undefined ? 0 : this.#open.get(host) ?? 0;
        const claim = host !== undefined && claims < this.#maxOpenClaims;
        this.#holder[p] = claim ? asker : undefined;
        if (claim) this.#open.set(host, claims + 1);
        // swap-remove from the unsent set
        const moved = this.#unsent[--this.#unsentCount];
        this.#unsent[at] = moved;
        this.#at[moved] = at;
        this.#at[p] = -1;
      }
      if (asker !== undefined && this.#holder[p] === asker) this.#sent(p, host!, offset, length);
    }
  }

  /** Bytes of piece `p` sent to its holder; the claim closes once the whole piece went. */
  #sent(p: number, host: string, offset: number, length: number): void {
    const start = p * this.pieceSize;
    const whole = Math.min(this.pieceSize, this.#fileEnd - start); // (the last one is shorter)
    const bytes = Math.min(start + whole, offset + length) - Math.max(start, offset);
    const before = this.#claimBytes[p];
    if (before >= whole) return;
    this.#claimBytes[p] = before + Math.max(0, bytes);
    if (this.#claimBytes[p] < whole) return;
    const left = (this.#open.get(host) ?? 1) - 1;
    if (left > 0) this.#open.set(host, left);
    else this.#open.delete(host);
  }

  #pieces(offset: number, length: number): [number, number] {
    const first = Math.floor(offset / this.pieceSize);
    const last = Math.floor((offset + Math.max(1, length) - 1) / this.pieceSize);
    return [first, Math.min(this.pieceCount - 1, last)];
  }

  /** A few distinct unsent pieces, at random (different askers get different ones). */
  #sample(): number[] {
    const n = Math.min(this.#hints, this.#unsentCount);
    const out = new Set<number>();
    for (let tries = 0; out.size < n && tries < 4 * n; tries++) {
      out.add(this.#unsent[Math.floor(this.#random() * this.#unsentCount)]);
    }
    return [...out];
  }
}

const SERVE: FirstCopyAnswer = { kind: "serve" };

/** Pieces in all ledgers at most (about 24 bytes each): 4 Mi pieces, 100 MiB. */
export const MAX_LEDGER_PIECES = 1 << 22;
/** A ledger unused this long (ms) may be dropped to make room for another file's. */
const LEDGER_IDLE_MS = 60_000;

/**
 * The ledgers of the files a server has seen flagged requests for, bounded: at most `maxFiles`
 * of them and {@link MAX_LEDGER_PIECES} pieces in all. When full, a new file gets a ledger only
 * in place of one idle for a minute; otherwise its swarm requests are served like any other
 * (no ledger is ever rebuilt per request, whatever a client cycles through).
 */
export class FirstCopyLedgers {
  readonly #byFile = new Map<bigint, FirstCopyLedger>();
  #pieces = 0;
  readonly #maxFiles: number;
  readonly #random: () => number;
  readonly #options: FirstCopyOptions;

  /** Up to `maxFiles` ledgers, each made with `random` and `options`. */
  constructor(maxFiles: number, random: () => number, options: FirstCopyOptions = {}) {
    this.#maxFiles = maxFiles;
    this.#random = random;
    this.#options = options;
  }

  /**
   * The ledger of file `fileId` (`size` bytes in `pieceSize` pieces) at `now`, made on first use
   * if there is room; undefined if there is none.
   */
  of(now: number, fileId: bigint, size: number, pieceSize: number): FirstCopyLedger | undefined {
    const l = this.#byFile.get(fileId);
    if (l && l.pieceSize === pieceSize) {
      l.lastUsed = now;
      return l;
    }
    if (l) this.#drop(fileId, l);
    const pieces = Math.max(1, Math.ceil(size / pieceSize));
    if (pieces > MAX_LEDGER_PIECES) return undefined;
    while (this.#byFile.size >= this.#maxFiles || this.#pieces + pieces > MAX_LEDGER_PIECES) {
      if (!this.#dropIdle(now)) return undefined;
    }
    const made = new FirstCopyLedger(size, pieceSize, this.#random, this.#options);
    made.lastUsed = now;
    this.#byFile.set(fileId, made);
    this.#pieces += pieces;
    return made;
  }

  /** The ledger of file `fileId` if there is one (plain requests never make one), at `now`. */
  existing(now: number, fileId: bigint, pieceSize: number): FirstCopyLedger | undefined {
    const l = this.#byFile.get(fileId);
    if (!l || l.pieceSize !== pieceSize) return undefined;
    l.lastUsed = now;
    return l;
  }

  /** Drops the ledger idle the longest, if one has been idle long enough. */
  #dropIdle(now: number): boolean {
    let oldest: [bigint, FirstCopyLedger] | undefined;
    for (const e of this.#byFile) if (!oldest || e[1].lastUsed < oldest[1].lastUsed) oldest = e;
    if (!oldest || now - oldest[1].lastUsed < LEDGER_IDLE_MS) return false;
    this.#drop(...oldest);
    return true;
  }

  #drop(fileId: bigint, l: FirstCopyLedger): void {
    this.#byFile.delete(fileId);
    this.#pieces -= l.pieceCount;
  }
}
