/**
 * Writes received blocks into the output in runs: blocks that continue the previous one are
 * copied into a staging buffer and written with one seek and one write when the run breaks, the
 * buffer fills, or the batch ends (`flush`). A datagram-sized write per block cost two system
 * calls per datagram; a batch of GRO segments is one contiguous run.
 *
 * A write error is kept, not thrown into the receive loop (where it would look like silence from
 * the servers): the shell checks `error` and ends the transfer with a local I/O error.
 *
 * @module
 */

/** The file operations the writer needs (a `Deno.FsFile`, or a test double). */
export interface WritableAt {
  seekSync(offset: number, whence: Deno.SeekMode): number;
  writeSync(p: Uint8Array): number;
}

/** Where received blocks go: staged during a batch, written by `flush`. */
export interface BlockSink {
  /** The first write error, if any; nothing more is written after it. */
  error: Error | undefined;
  /** Bytes written and write calls made. */
  written: number;
  writes: number;
  /** Queues `src[at, at + length)` for file offset `offset` (`src` must stay until `flush`). */
  stage(offset: number, src: Uint8Array, at: number, length: number): void;
  /** Writes what is staged. Call before `src` is reused or anything reads the file. */
  flush(): void;
  /** Flushes and lets go of what the sink holds. */
  close(): void;
}

/** Stages contiguous blocks and writes them as runs (see the module comment). */
export class BlockWriter implements BlockSink {
  /** The first write error, if any; nothing more is written after it. */
  error: Error | undefined;
  /** Bytes written and write calls made, for the microbenchmark. */
  written = 0;
  writes = 0;
  #file: WritableAt;
  #stage: Uint8Array;
  #start = 0;
  #used = 0;

  constructor(file: WritableAt, capacity = 1 << 20) {
    this.#file = file;
    this.#stage = new Uint8Array(capacity);
  }

  /** Queues `src[at, at + length)` for file offset `offset`. */
  stage(offset: number, src: Uint8Array, at: number, length: number): void {
    if (this.error) return;
    if (
      this.#used > 0 &&
      (offset !== this.#start + this.#used || this.#used + length > this.#stage.length)
    ) {
      this.flush();
    }
    if (length > this.#stage.length) {
      this.#write(offset, src.subarray(at, at + length));
      return;
    }
    if (this.#used === 0) this.#start = offset;
    this.#stage.set(src.subarray(at, at + length), this.#used);
    this.#used += length;
  }

  /** Writes what is staged. Call before anything reads the file (verification). */
  flush(): void {
    if (this.#used === 0) return;
    const n = this.#used;
    this.#used = 0;
    this.#write(this.#start, this.#stage.subarray(0, n));
  }

  close(): void {
    this.flush();
  }

  #write(offset: number, bytes: Uint8Array): void {
    if (this.error) return;
    try {
      this.#file.seekSync(offset, Deno.SeekMode.Start);
      let done = 0;
      while (done < bytes.length) done += this.#file.writeSync(bytes.subarray(done));
      this.written += bytes.length;
      this.writes++;
    } catch (e) {
      this.error = e instanceof Error ? e : new Error(String(e));
    }
  }
}
