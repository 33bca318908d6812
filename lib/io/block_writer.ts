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
  /**
   * True when staged blocks are views of the caller's buffers (flush before those are reused);
   * false when they are copied (flush only before the file is read).
   */
  readonly holdsViews: boolean;
  /** Queues `src[at, at + length)` for file offset `offset` (`src` must stay until `flush`). */
  stage(offset: number, src: Uint8Array, at: number, length: number): void;
  /** Writes what is staged. Call before `src` is reused or anything reads the file. */
  flush(): void;
  /** Flushes and lets go of what the sink holds. */
  close(): void;
}

/**
 * Stages contiguous blocks and writes them as runs (see the module comment). Several runs are
 * kept open at once: replies to requests in flight on different sockets arrive interleaved, and
 * with a single run every datagram would break it.
 */
export class BlockWriter implements BlockSink {
  /** The first write error, if any; nothing more is written after it. */
  error: Error | undefined;
  readonly holdsViews = false;
  /** Bytes written and write calls made, for the microbenchmark. */
  written = 0;
  writes = 0;
  #file: WritableAt;
  #stage: Uint8Array;
  #slot: number;
  /** Per run slot: file offset of its first byte, bytes used, last time extended. */
  #start: number[] = [];
  #used: number[] = [];
  #touched: number[] = [];
  #tick = 0;

  constructor(file: WritableAt, capacity = 1 << 20, runs = RUNS) {
    this.#file = file;
    this.#stage = new Uint8Array(capacity);
    this.#slot = Math.floor(capacity / runs);
    for (let i = 0; i < runs; i++) {
      this.#start.push(0);
      this.#used.push(0);
      this.#touched.push(0);
    }
  }

  /** Queues `src[at, at + length)` for file offset `offset`. */
  stage(offset: number, src: Uint8Array, at: number, length: number): void {
    if (this.error) return;
    if (length > this.#slot) {
      this.#write(offset, src.subarray(at, at + length));
      return;
    }
    const i = this.#slotFor(offset, length);
    this.#stage.set(src.subarray(at, at + length), i * this.#slot + this.#used[i]);
    this.#used[i] += length;
    this.#touched[i] = ++this.#tick;
  }

  /** Writes what is staged. Call before anything reads the file (verification). */
  flush(): void {
    for (let i = 0; i < this.#used.length; i++) this.#flushSlot(i);
  }

  close(): void {
    this.flush();
  }

  /** The run `offset` continues (with room for `length`), else a free or freed slot. */
  #slotFor(offset: number, length: number): number {
    let free = -1;
    let oldest = 0;
    for (let i = 0; i < this.#used.length; i++) {
      const used = this.#used[i];
      if (used === 0) {
        if (free < 0) free = i;
        continue;
      }
      if (this.#start[i] + used === offset) {
        if (used + length <= this.#slot) return i;
        this.#flushSlot(i);
        this.#start[i] = offset;
        return i;
      }
      if (this.#touched[i] < this.#touched[oldest] || this.#used[oldest] === 0) oldest = i;
    }
    const i = free >= 0 ? free : oldest;
    if (free < 0) this.#flushSlot(i);
    this.#start[i] = offset;
    return i;
  }

  #flushSlot(i: number): void {
    const n = this.#used[i];
    if (n === 0) return;
    this.#used[i] = 0;
    this.#write(this.#start[i], this.#stage.subarray(i * this.#slot, i * this.#slot + n));
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

/** Runs kept open at once (a few requests in flight per socket, a few sockets). */
const RUNS = 8;
