/**
 * Streaming a download to a pipe or terminal (`-o -`): pieces are written out in file order,
 * each only once it is verified, by copying them from the temporary `.part` file. A piece that
 * arrives early waits there until every piece before it is out. Without piece hashes nothing
 * is verified before the whole-file digest, so nothing is written before `finish`.
 *
 * @module
 */

import { ExitCode, UdpgetError } from "../base/exit.ts";
import { partOffset } from "./piece_ring.ts";

/** Writes the verified prefix of a `.part` file to a stream, in order. */
export class OrderedOutput {
  #verified: Uint8Array;
  #next = 0;
  #chain: Promise<void> = Promise.resolve();
  #failed: unknown;
  /** Bytes written to the stream so far. */
  written = 0;
  /** Pieces written out whole: their ring slots may be reused. */
  released = 0;

  /**
   * Copies from `part` (read at `pieceSize` boundaries) to `sink`. With `early`, pieces are
   * written as soon as they and all before them are verified; without, only at `finish`.
   */
  constructor(
    readonly part: Deno.FsFile,
    readonly size: number,
    readonly pieceSize: number,
    readonly sink: WritableStreamDefaultWriter<Uint8Array>,
    readonly early: boolean,
    /** Pieces the `.part` holds in a ring (see `piece_ring.ts`); 0: the whole file. */
    readonly ring = 0,
    /** Called after each piece went out (its slot is free). */
    readonly onReleased: () => void = () => {},
  ) {
    this.#verified = new Uint8Array(Math.ceil(size / pieceSize));
  }

  /** `piece` passed its check: write it (and any that waited for it) if writing early. */
  verified(piece: number): void {
    this.#verified[piece] = 1;
    if (this.early) this.#pump(false);
  }

  /** The error that stopped the output (the reader went away...), if any. */
  get failed(): unknown {
    return this.#failed;
  }

  /** Resolves once every write queued so far is done. */
  flushed(): Promise<void> {
    return this.#chain;
  }

  /** Every piece is verified (and the digest checked): write the rest and wait for it. */
  async finish(): Promise<void> {
    this.#verified.fill(1);
    this.#pump(true);
    await this.#chain;
    if (this.#failed) throw this.#failed;
  }

  /** Queues the copy of every piece now writable; copies never overlap. */
  #pump(all: boolean): void {
    this.#chain = this.#chain.then(async () => {
      while (this.#failed === undefined && this.#next < this.#verified.length) {
        if (!all && !this.#verified[this.#next]) return;
        await this.#copy(this.#next++);
        this.released = this.#next;
        this.onReleased();
      }
    }).catch((e) => {
      this.#failed ??= new UdpgetError(ExitCode.LocalIo, `cannot write the output: ${brief(e)}`);
      this.onReleased(); // (woken to find `failed`: a reader gone must end the fetch now)
    });
  }

  async #copy(piece: number): Promise<void> {
    const start = piece * this.pieceSize;
    const buf = new Uint8Array(Math.min(this.pieceSize, this.size - start));
    let got = 0;
    while (got < buf.length) {
      // (a handle of its own: the download's writes move another file position)
      this.part.seekSync(partOffset(start, this.pieceSize, this.ring) + got, Deno.SeekMode.Start);
      const n = this.part.readSync(buf.subarray(got));
      if (n === null || n === 0) throw new Error(`short read at ${start + got}`);
      got += n;
    }
    await this.sink.write(buf);
    this.written += buf.length;
  }
}

function brief(e: unknown): string {
  return e instanceof Error ? e.message.split("\n")[0] : String(e);
}
