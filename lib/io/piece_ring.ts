/**
 * Where pieces live in the `.part` of a streamed fetch (`-o -`). A stream is written in order
 * and never resumed, so its temporary file needs to hold only the pieces between the write point
 * and the farthest piece being fetched: a ring of `ring` piece slots, piece `p` in slot
 * `p mod ring`, a slot reused once its piece went out. The fetch asks only for pieces that fit
 * the ring (see `client.ts`), which makes the ring the reorder buffer: bounded, and documented
 * as `STREAM_BUFFER_BYTES`. `ring` 0 is a plain `.part`: every piece at its own offset.
 *
 * @module
 */

import type { BlockSink } from "./block_writer.ts";

/** Bytes of the reorder buffer a streamed fetch keeps on disk (at least 4 pieces). */
export const STREAM_BUFFER_BYTES = 64 << 20;

/** Slots a streamed fetch of `pieceCount` pieces of `pieceSize` keeps: at most the whole file. */
export function streamRingPieces(pieceSize: number, pieceCount: number): number {
  return Math.min(pieceCount, Math.max(4, Math.floor(STREAM_BUFFER_BYTES / pieceSize)));
}

/** The `.part` offset of file offset `offset` (`ring` 0: the same offset). */
export function partOffset(offset: number, pieceSize: number, ring: number): number {
  if (ring === 0) return offset;
  const piece = Math.floor(offset / pieceSize);
  return (piece % ring) * pieceSize + (offset - piece * pieceSize);
}

/** A sink that puts each block in its piece's ring slot (blocks never straddle pieces). */
export class RingSink implements BlockSink {
  /** Wraps `inner`, which writes at `.part` offsets. */
  constructor(
    readonly inner: BlockSink,
    readonly pieceSize: number,
    readonly ring: number,
  ) {}

  get error(): Error | undefined {
    return this.inner.error;
  }

  get written(): number {
    return this.inner.written;
  }

  get writes(): number {
    return this.inner.writes;
  }

  get holdsViews(): boolean {
    return this.inner.holdsViews;
  }

  stage(offset: number, src: Uint8Array, at: number, length: number): void {
    this.inner.stage(partOffset(offset, this.pieceSize, this.ring), src, at, length);
  }

  flush(): void {
    this.inner.flush();
  }

  close(): void {
    this.inner.close();
  }
}
