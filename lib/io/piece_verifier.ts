/**
 * Checks the pieces of a `.part` against their SHA-256 (and, when asked, hashes the whole
 * file) off the main thread, so that hashing — the client's biggest CPU cost — runs on the
 * other core while the main thread receives.
 *
 * Two ways, one contract. Piece by piece, with `--allow-ffi`, libcrypto's SHA-256 runs as a
 * nonblocking FFI call on one of Deno's blocking threads, so no worker is needed (a worker is a
 * second V8 isolate: about 15 MiB of a fetch's peak memory). The whole-file hash (a stream fed
 * in order), and every hash without FFI, run on a worker (`verify_worker.ts`).
 *
 * @module
 */

import { partOffset } from "./piece_ring.ts";
import { loadSha256, type Sha256 } from "./libcrypto.ts";

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

/** What the fetch needs from a verifier. */
export interface PieceVerifier {
  /** Whether the whole file is hashed too (`--verify full`, or no piece hashes). */
  readonly whole: boolean;
  /** Checks a complete piece (already written to the file) against its hash. */
  verify(piece: number): Promise<boolean>;
  /** SHA-256 of the whole file once every piece is verified; `undefined` if not (or not asked). */
  digest(): Promise<Uint8Array | undefined>;
  /** Stops checking: pending checks settle (as failed or rejected), the file is closed. */
  close(): void;
}

/** Where the `.part` is and how it is cut. */
export interface VerifyTarget {
  /** The `.part` file. */
  path: string;
  /** The file's size in bytes. */
  size: number;
  /** Bytes per piece. */
  pieceSize: number;
  /** Pieces the `.part` holds in a ring (`-o -`, see `piece_ring.ts`), 0 for a whole `.part`. */
  ring: number;
}

/**
 * The verifier for `target`: piece hashes alone are checked without a worker; the whole-file
 * hash (`whole`, or no `hashes` to check pieces against) runs on one.
 */
export function openPieceVerifier(
  target: VerifyTarget,
  hashes: Uint8Array | undefined,
  whole: boolean,
): PieceVerifier {
  const sha256 = loadSha256();
  if (hashes !== undefined && !whole && typeof sha256 !== "string") {
    return new DigestVerifier(target, hashes, sha256);
  }
  return new WorkerVerifier(target, hashes, whole || hashes === undefined);
}

/**
 * Pieces in hand at once in a `DigestVerifier`. Two, so that a hash is always running: with
 * one, the hashing thread idles while the busy main thread gets round to the next piece (a
 * 1 GiB fetch took 0.25 s longer than on a worker).
 */
export const DIGEST_LANES = 2;

/** One piece read and hashed at a time: its own file handle (reads seek) and buffer. */
interface DigestLane {
  file: Deno.FsFile;
  buf: Uint8Array;
  digest: Uint8Array;
}

/**
 * Piece hashes checked with `sha256` (hashed on a blocking thread) through `DIGEST_LANES`
 * reusable buffers, so memory stays at a few pieces however many are queued. Answers may come
 * out of order.
 */
export class DigestVerifier implements PieceVerifier {
  /** Never: this verifier checks pieces only. */
  readonly whole = false;
  #target: VerifyTarget;
  #hashes: Uint8Array;
  #free: DigestLane[] = [];
  #lanes: DigestLane[] = [];
  #queue: { piece: number; done: (ok: boolean) => void; fail: (e: unknown) => void }[] = [];
  #closed = false;
  #sha256: Sha256;

  /** Opens `target.path` for reading; `hashes` holds 32 bytes per piece. */
  constructor(target: VerifyTarget, hashes: Uint8Array, sha256: Sha256) {
    this.#sha256 = sha256;
    this.#target = target;
    this.#hashes = hashes;
    const bufSize = Math.min(target.pieceSize, Math.max(target.size, 1));
    try {
      for (let i = 0; i < DIGEST_LANES; i++) {
        const lane = {
          file: Deno.openSync(target.path, { read: true }),
          buf: new Uint8Array(bufSize),
          digest: new Uint8Array(32),
        };
        this.#lanes.push(lane);
        this.#free.push(lane);
      }
    } catch (e) {
      for (const lane of this.#lanes) lane.file.close(); // (the handles opened before it)
      throw e;
    }
  }

  /** Checks `piece` as soon as a lane is free. */
  verify(piece: number): Promise<boolean> {
    if (this.#closed) return Promise.resolve(false);
    return new Promise((done, fail) => {
      this.#queue.push({ piece, done, fail });
      this.#next();
    });
  }

  /** Never a digest: nothing hashes the whole file here. */
  digest(): Promise<Uint8Array | undefined> {
    return Promise.resolve(undefined);
  }

  /** Closes the files; checks not answered yet answer `false`. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const q of this.#queue.splice(0)) q.done(false);
    for (const lane of this.#lanes) lane.file.close();
  }

  #next(): void {
    while (this.#free.length > 0 && this.#queue.length > 0) {
      const lane = this.#free.pop()!;
      const q = this.#queue.shift()!;
      // a check that was in a lane when the verifier closed answers false, as queued ones do
      const answer = (ok: boolean) => q.done(ok && !this.#closed);
      this.#check(lane, q.piece).then(answer, q.fail).finally(() => {
        this.#free.push(lane);
        if (!this.#closed) this.#next();
      });
    }
  }

  async #check(lane: DigestLane, piece: number): Promise<boolean> {
    const { size, pieceSize, ring } = this.#target;
    const start = piece * pieceSize;
    const len = Math.min(pieceSize, size - start);
    if (len <= 0) return false;
    // a piece is read synchronously (a copy from the page cache, ~0.1 ms per MiB): an async
    // read costs two more turns of the event loop, which a busy receive loop makes long
    lane.file.seekSync(partOffset(start, pieceSize, ring), Deno.SeekMode.Start);
    let got = 0;
    while (got < len) {
      const n = lane.file.readSync(lane.buf.subarray(got, len));
      if (n === null || n === 0) return false; // a short .part cannot hold the piece
      got += n;
    }
    const digest = lane.digest;
    await this.#sha256(lane.buf, len, digest);
    return sameBytes(digest, this.#hashes.subarray(piece * 32, piece * 32 + 32));
  }
}

/** Hashes pieces and the whole file on a worker thread (`verify_worker.ts`). */
export class WorkerVerifier implements PieceVerifier {
  #worker: Worker;
  #waiting: ((r: VerifyReply) => void)[] = [];

  /**
   * Starts the worker on `target`. With `whole`, it also computes the SHA-256 of the whole
   * file (a second hash pass over every byte).
   */
  constructor(
    target: VerifyTarget,
    hashes: Uint8Array | undefined,
    /** Whether the whole file is hashed too. */
    readonly whole: boolean,
  ) {
    this.#worker = new Worker(new URL("./verify_worker.ts", import.meta.url).href, {
      type: "module",
    });
    this.#worker.onmessage = (e: MessageEvent<VerifyReply>) => this.#waiting.shift()?.(e.data);
    const { path, size, pieceSize, ring } = target;
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

/** Whether two byte strings are equal. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
