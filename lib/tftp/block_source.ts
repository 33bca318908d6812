/**
 * Where a TFTP transfer gets its blocks: `BlockSource` is the small read interface of the
 * transfer state machine. Two implementations over a `FileReader` (random access to the file's
 * bytes, synchronous): octet mode slices blocks out of a read-ahead buffer filled in large
 * chunks (one read per `READ_AHEAD_BYTES`, not one per block), netascii mode converts the file
 * as a stream and keeps the converted bytes the window may still ask for again.
 *
 * Pure: the reader is injected, so tests use byte arrays and the server uses a file handle.
 *
 * @module
 */

import { netasciiEncode } from "./netascii.ts";

/** Synchronous random access to a file's bytes. */
export interface FileReader {
  /** Fills `buf` with the bytes from `offset`; false if the file ended first or a read failed. */
  readAt(buf: Uint8Array, offset: number): boolean;
}

/** The blocks of one transfer, numbered from 1 without rolling over. */
export interface BlockSource {
  /**
   * Writes block `block` into `dst` (blksize bytes long) and returns its length: `blksize`, or
   * less for the last block (0 when the data is a multiple of blksize). -1: it cannot be read
   * (the file shrank, an I/O error, or a block released earlier).
   */
  read(block: number, dst: Uint8Array): number;
  /** Blocks up to and including `block` are acknowledged and will not be asked for again. */
  release(block: number): void;
}

/** Bytes read from the file at once by the octet source. */
export const READ_AHEAD_BYTES = 128 * 1024;

/** Octet mode: block `b` is bytes `[(b-1)·blksize, b·blksize)` of a file of `size` bytes. */
export class OctetSource implements BlockSource {
  #reader: FileReader;
  #size: number;
  #blksize: number;
  #cache: Uint8Array | undefined;
  #cacheBytes: number;
  #cacheStart = 0;
  #cacheLen = 0;

  /** Reads `size` bytes of `reader` in blocks of `blksize`, `readAhead` bytes at a time. */
  constructor(reader: FileReader, size: number, blksize: number, readAhead = READ_AHEAD_BYTES) {
    this.#reader = reader;
    this.#size = size;
    this.#blksize = blksize;
    // whole blocks per chunk, and no bigger than the file: small files stay small
    const perChunk = Math.max(1, Math.floor(readAhead / blksize)) * blksize;
    this.#cacheBytes = Math.min(perChunk, Math.ceil(size / blksize) * blksize);
  }

  /** See `BlockSource.read`. */
  read(block: number, dst: Uint8Array): number {
    const off = (block - 1) * this.#blksize;
    if (block < 1 || off > this.#size) return -1;
    const n = Math.min(this.#blksize, this.#size - off);
    if (n === 0) return 0;
    if (off < this.#cacheStart || off + n > this.#cacheStart + this.#cacheLen) {
      this.#cache ??= new Uint8Array(this.#cacheBytes);
      const len = Math.min(this.#cache.length, this.#size - off);
      this.#cacheLen = 0;
      if (!this.#reader.readAt(this.#cache.subarray(0, len), off)) return -1;
      this.#cacheStart = off;
      this.#cacheLen = len;
    }
    const at = off - this.#cacheStart;
    dst.set(this.#cache!.subarray(at, at + n));
    return n;
  }

  /** Nothing to do: any block can be read again from the file. */
  release(_block: number): void {}
}

/** Bytes of the file converted at once by the netascii source. */
const NETASCII_CHUNK = 16 * 1024;

/**
 * Netascii mode: the file converted (LF → CR LF, CR → CR NUL) and cut into blocks. The converted
 * size is only known at the end, so the last block is found when the conversion runs out.
 */
export class NetasciiSource implements BlockSource {
  #reader: FileReader;
  #size: number;
  #blksize: number;
  #in = new Uint8Array(0);
  /** Converted bytes `[#outBase, #outBase + #outLen)` of the stream. */
  #out = new Uint8Array(0);
  #outBase = 0;
  #outLen = 0;
  /** File bytes converted so far. */
  #fileOff = 0;
  /** Converted bytes before this offset are released. */
  #keepFrom = 0;

  /** Converts `size` bytes of `reader`, cut into blocks of `blksize`. */
  constructor(reader: FileReader, size: number, blksize: number) {
    this.#reader = reader;
    this.#size = size;
    this.#blksize = blksize;
  }

  /** See `BlockSource.read`. */
  read(block: number, dst: Uint8Array): number {
    const start = (block - 1) * this.#blksize;
    if (block < 1 || start < this.#outBase) return -1;
    const need = start + this.#blksize;
    while (this.#outBase + this.#outLen < need && this.#fileOff < this.#size) {
      if (!this.#convertMore()) return -1;
    }
    const end = Math.min(need, this.#outBase + this.#outLen);
    if (end < start) return -1; // past the end of the stream
    dst.set(this.#out.subarray(start - this.#outBase, end - this.#outBase));
    return end - start;
  }

  /** See `BlockSource.release`. */
  release(block: number): void {
    this.#keepFrom = Math.max(this.#keepFrom, block * this.#blksize);
  }

  #convertMore(): boolean {
    const len = Math.min(NETASCII_CHUNK, this.#size - this.#fileOff);
    if (this.#in.length < len) this.#in = new Uint8Array(NETASCII_CHUNK);
    const src = this.#in.subarray(0, len);
    if (!this.#reader.readAt(src, this.#fileOff)) return false;
    this.#fileOff += len;
    // drop what was released, then make room for the worst case (every byte doubled)
    const drop = Math.min(this.#outLen, this.#keepFrom - this.#outBase);
    if (drop > 0) {
      this.#out.copyWithin(0, drop, this.#outLen);
      this.#outBase += drop;
      this.#outLen -= drop;
    }
    if (this.#out.length < this.#outLen + 2 * len) {
      const bigger = new Uint8Array(Math.max(2 * this.#out.length, this.#outLen + 2 * len));
      bigger.set(this.#out.subarray(0, this.#outLen));
      this.#out = bigger;
    }
    this.#outLen += netasciiEncode(src, this.#out.subarray(this.#outLen));
    return true;
  }
}
