/**
 * Writes received blocks straight from the receive slab into the output with `pwritev` (libc
 * through FFI): a run of contiguous blocks is one system call whose iovecs point at the data of
 * each datagram where it was received, so no byte is copied in JavaScript. The batched layer's
 * counterpart of `BlockWriter`, same contract: `stage` during a batch, `flush` before the slab
 * is reused or anything reads the file; a write error is kept in `error`, never thrown into the
 * receive loop.
 *
 * @module
 */

import type { BlockSink } from "./block_writer.ts";
import { C, LAYOUT, type Libc } from "./udp/libc.ts";

/** A `BlockSink` over its own descriptor of the output file (see the module comment). */
export class VectoredWriter implements BlockSink {
  error: Error | undefined;
  readonly holdsViews = true;
  written = 0;
  writes = 0;
  #libc: Libc;
  #fd: number;
  #iov = new Uint8Array(C.IOV_MAX * LAYOUT.IOVEC);
  #iov32 = new Uint32Array(this.#iov.buffer);
  #count = 0;
  #start = 0;
  #bytes = 0;
  #lastBuffer: ArrayBufferLike | undefined;
  #lastBase = 0;

  private constructor(libc: Libc, fd: number) {
    this.#libc = libc;
    this.#fd = fd;
  }

  /** Opens `path` (which must exist) for writing; throws the system's message if it cannot. */
  static open(libc: Libc, path: string): VectoredWriter {
    const name = new TextEncoder().encode(path + "\0");
    const fd = libc.sym.open(name, C.O_WRONLY | C.O_CLOEXEC | C.O_NOFOLLOW);
    if (fd < 0) throw new Error(`${path}: ${libc.describe(libc.errno())}`);
    return new VectoredWriter(libc, fd);
  }

  stage(offset: number, src: Uint8Array, at: number, length: number): void {
    if (this.error || length === 0) return;
    if (this.#count > 0 && (offset !== this.#start + this.#bytes || this.#count === C.IOV_MAX)) {
      this.flush();
    }
    if (src.buffer !== this.#lastBuffer) {
      this.#lastBuffer = src.buffer;
      this.#lastBase = this.#libc.address(new Uint8Array(src.buffer));
    }
    if (this.#count === 0) this.#start = offset;
    const address = this.#lastBase + src.byteOffset + at;
    const i = this.#count * 4;
    this.#iov32[i] = address >>> 0;
    this.#iov32[i + 1] = Math.floor(address / 4294967296);
    this.#iov32[i + 2] = length;
    this.#iov32[i + 3] = 0;
    this.#count++;
    this.#bytes += length;
  }

  flush(): void {
    if (this.#count === 0) return;
    let first = 0;
    let offset = this.#start;
    let left = this.#bytes;
    const count = this.#count;
    this.#count = 0;
    this.#bytes = 0;
    while (left > 0 && !this.error) {
      const iov = this.#iov.subarray(first * LAYOUT.IOVEC);
      const n = Number(this.#libc.sym.pwritev(this.#fd, iov, count - first, BigInt(offset)));
      if (n < 0) {
        const errno = this.#libc.errno();
        if (errno === C.EINTR) continue;
        this.error = new Error(this.#libc.describe(errno));
        return;
      }
      if (n === 0) {
        this.error = new Error("the file accepted no more bytes");
        return;
      }
      this.writes++;
      this.written += n;
      offset += n;
      left -= n;
      first = this.#skip(first, n);
    }
  }

  /** After a short write of `n` bytes from iovec `first`: the iovec to go on from (trimmed). */
  #skip(first: number, n: number): number {
    let i = first;
    while (n > 0) {
      const len = this.#iov32[i * 4 + 2];
      if (n < len) {
        const lo = this.#iov32[i * 4] + n;
        // (carry into the high half when the low half overflows)
        this.#iov32[i * 4] = lo >>> 0;
        this.#iov32[i * 4 + 1] += Math.floor(lo / 4294967296);
        this.#iov32[i * 4 + 2] = len - n;
        return i;
      }
      n -= len;
      i++;
    }
    return i;
  }

  /** Writes what is staged and closes the descriptor. */
  close(): void {
    this.flush();
    if (this.#fd >= 0) this.#libc.sym.close(this.#fd);
    this.#fd = -1;
  }
}
