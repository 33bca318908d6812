/**
 * Main-thread side of the verification worker (`verify_worker.ts`): one promise per piece
 * submitted, answered in order, and the whole-file digest at the end.
 *
 * @module
 */

/** Messages to the worker. */
export type VerifyRequest =
  | {
    kind: "open";
    path: string;
    size: number;
    pieceSize: number;
    hashes?: Uint8Array;
    whole: boolean;
    /** Pieces the `.part` holds in a ring (streaming; see `piece_ring.ts`); 0 or absent: all. */
    ring?: number;
  }
  | { kind: "piece"; piece: number }
  | { kind: "finish" };

/** Messages from the worker. */
export type VerifyReply =
  | { kind: "opened" }
  | { kind: "piece"; piece: number; ok: boolean }
  | { kind: "digest"; digest?: Uint8Array };

/** Hashes pieces and the whole file on a worker thread. */
export class PieceVerifier {
  #worker: Worker;
  #waiting: ((r: VerifyReply) => void)[] = [];

  /**
   * Starts the worker on the `.part` file at `path`. With `whole`, it also computes the
   * SHA-256 of the whole file (a second hash pass over every byte).
   */
  constructor(
    path: string,
    size: number,
    pieceSize: number,
    hashes: Uint8Array | undefined,
    /** Whether the whole file is hashed too (`--verify full`, or no piece hashes). */
    readonly whole: boolean,
    /** Pieces the `.part` holds in a ring (`-o -`), 0 for a whole `.part`. */
    ring = 0,
  ) {
    this.#worker = new Worker(new URL("./verify_worker.ts", import.meta.url).href, {
      type: "module",
    });
    this.#worker.onmessage = (e: MessageEvent<VerifyReply>) => this.#waiting.shift()?.(e.data);
    this.#ask({ kind: "open", path, size, pieceSize, hashes, whole, ring });
  }

  /** Checks a complete piece (already written to the file) against its hash. */
  async verify(piece: number): Promise<boolean> {
    const r = await this.#ask({ kind: "piece", piece });
    return r.kind === "piece" && r.ok;
  }

  /** SHA-256 of the whole file once every piece is verified; `undefined` if not (or not asked). */
  async digest(): Promise<Uint8Array | undefined> {
    const r = await this.#ask({ kind: "finish" });
    return r.kind === "digest" ? r.digest : undefined;
  }

  /** Stops the worker. */
  close(): void {
    this.#worker.terminate();
    for (const w of this.#waiting.splice(0)) w({ kind: "digest" });
  }

  #ask(m: VerifyRequest): Promise<VerifyReply> {
    return new Promise((resolve) => {
      this.#waiting.push(resolve);
      this.#worker.postMessage(m);
    });
  }
}
