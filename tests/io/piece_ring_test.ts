import assert from "node:assert/strict";
import { partOffset, RingSink, streamRingPieces } from "../../lib/io/piece_ring.ts";
import type { BlockSink } from "../../lib/io/block_writer.ts";

Deno.test("piece ring: piece p lives in slot p mod ring; no ring is the file's own offsets", () => {
  const piece = 1000;
  assert.equal(partOffset(5 * piece + 17, piece, 0), 5 * piece + 17);
  assert.equal(partOffset(5 * piece + 17, piece, 4), 1 * piece + 17);
  assert.equal(partOffset(3 * piece, piece, 4), 3 * piece);
  assert.equal(partOffset(8 * piece + 999, piece, 4), 999);
});

Deno.test("piece ring: 64 MiB of pieces, at least 4, at most the file", () => {
  assert.equal(streamRingPieces(1 << 20, 4096), 64);
  assert.equal(streamRingPieces(64 << 20, 100), 4, "huge pieces: still a few in flight");
  assert.equal(streamRingPieces(1 << 20, 10), 10, "a small file: the whole of it");
});

Deno.test("piece ring: the sink puts each block in its piece's slot", () => {
  const staged: number[] = [];
  const inner = {
    error: undefined,
    written: 0,
    writes: 0,
    holdsViews: true,
    stage: (offset: number) => staged.push(offset),
    flush: () => {},
    close: () => {},
  } as BlockSink;
  const ring = new RingSink(inner, 1000, 3);
  const src = new Uint8Array(10);
  for (const offset of [0, 500, 3000, 3500, 7250]) ring.stage(offset, src, 0, 10);
  assert.deepEqual(staged, [0, 500, 0, 500, 1250]);
  assert.equal(ring.holdsViews, true);
});
