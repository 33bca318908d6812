import assert from "node:assert/strict";
import fc from "fast-check";
import {
  type Assignment,
  END_GAME_PIECES,
  type PieceLayout,
  PieceScheduler,
} from "../../lib/engine/scheduler.ts";
import { mulberry32 } from "../relay.ts";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/** Number of blocks of `piece`. */
function blocksOf(layout: PieceLayout, piece: number): number {
  const start = piece * layout.pieceSize;
  const end = Math.min(layout.size, start + layout.pieceSize);
  return Math.ceil((end - start) / layout.blockSize);
}

/** Absolute offset and length of one block. */
function blockAt(layout: PieceLayout, piece: number, block: number): [number, number] {
  const start = piece * layout.pieceSize;
  const end = Math.min(layout.size, start + layout.pieceSize);
  const offset = start + block * layout.blockSize;
  return [offset, Math.min(layout.blockSize, end - offset)];
}

/** Checks the geometry of one assignment against the layout. */
function checkAssignment(
  s: PieceScheduler,
  a: Assignment,
  server: number,
  maxBlocks: number,
): void {
  const { pieceSize, blockSize, size } = s.layout;
  assert.equal(a.server, server);
  assert.ok(
    Number.isInteger(a.piece) && a.piece >= 0 && a.piece < s.pieceCount,
    `piece ${a.piece}`,
  );
  assert.ok(a.blockCount >= 1, `blockCount ${a.blockCount} < 1`);
  assert.ok(a.blockCount <= maxBlocks, `blockCount ${a.blockCount} > maxBlocks ${maxBlocks}`);
  const [start, end] = s.pieceRange(a.piece);
  assert.deepEqual([start, end], [a.piece * pieceSize, Math.min(size, (a.piece + 1) * pieceSize)]);
  assert.ok(a.firstBlock >= 0);
  assert.ok(a.firstBlock + a.blockCount <= blocksOf(s.layout, a.piece), "run past the piece");
  assert.equal(a.offset, start + a.firstBlock * blockSize);
  const runEnd = Math.min(end, start + (a.firstBlock + a.blockCount) * blockSize);
  assert.equal(a.length, runEnd - a.offset);
  assert.ok(a.offset >= start && a.offset + a.length <= end, "assignment crosses its piece");
}

/** Every block (as [offset, length]) an assignment covers. */
function blocksIn(s: PieceScheduler, a: Assignment): [number, number][] {
  const out: [number, number][] = [];
  for (let b = a.firstBlock; b < a.firstBlock + a.blockCount; b++) {
    out.push(blockAt(s.layout, a.piece, b));
  }
  return out;
}

/** Calls next() until it returns undefined, checking every assignment. */
function drain(
  s: PieceScheduler,
  server: number,
  maxBlocks: number,
  limit = 100_000,
): Assignment[] {
  const out: Assignment[] = [];
  for (let a = s.next(server, maxBlocks); a; a = s.next(server, maxBlocks)) {
    checkAssignment(s, a, server, maxBlocks);
    out.push(a);
    assert.ok(out.length <= limit, "next() never runs dry");
  }
  return out;
}

/** Delivers every block of `a` (in order); returns the outcomes' kinds. */
function deliver(s: PieceScheduler, a: Assignment): string[] {
  return blocksIn(s, a).map(([o, l]) => s.onBlock(o, l).kind);
}

const NEW_DONE = { kind: "new", pieceComplete: true } as const;
const NEW_MORE = { kind: "new", pieceComplete: false } as const;
const DUP = { kind: "duplicate" } as const;
const INVALID = { kind: "invalid" } as const;

// ---------------------------------------------------------------------------------------------
// Construction and geometry
// ---------------------------------------------------------------------------------------------

Deno.test("constructor rejects non-positive piece or block size and negative file size", () => {
  assert.throws(() => new PieceScheduler({ size: 10, pieceSize: 0, blockSize: 1 }), RangeError);
  assert.throws(() => new PieceScheduler({ size: 10, pieceSize: 4, blockSize: 0 }), RangeError);
  assert.throws(() => new PieceScheduler({ size: 10, pieceSize: -4, blockSize: 1 }), RangeError);
  assert.throws(() => new PieceScheduler({ size: -1, pieceSize: 4, blockSize: 1 }), RangeError);
});

Deno.test("empty file: no pieces, done at once, no work, every block invalid", () => {
  const s = new PieceScheduler({ size: 0, pieceSize: 16, blockSize: 4 });
  assert.equal(s.pieceCount, 0);
  assert.equal(s.done, true);
  assert.equal(s.verifiedPieces, 0);
  assert.equal(s.next(0, 8), undefined);
  assert.equal(s.next(1, 8), undefined);
  assert.deepEqual(s.onBlock(0, 0), INVALID);
  assert.deepEqual(s.onBlock(0, 4), INVALID);
});

Deno.test("one-byte file: one piece, one one-byte block", () => {
  const s = new PieceScheduler({ size: 1, pieceSize: 16, blockSize: 4 });
  assert.equal(s.pieceCount, 1);
  assert.equal(s.done, false);
  assert.deepEqual(s.pieceRange(0), [0, 1]);
  const a = s.next(0, 8)!;
  const { server, piece, firstBlock, blockCount, offset, length, duplicate } = a;
  assert.deepEqual({ server, piece, firstBlock, blockCount, offset, length, duplicate }, {
    server: 0,
    piece: 0,
    firstBlock: 0,
    blockCount: 1,
    offset: 0,
    length: 1,
    duplicate: false,
  });
  assert.deepEqual(s.onBlock(0, 4), INVALID); // the only block is 1 byte long
  assert.deepEqual(s.onBlock(0, 1), NEW_DONE);
  assert.deepEqual(s.onBlock(0, 1), DUP);
  assert.equal(s.done, false, "complete is not verified");
  s.settlePiece(0, true);
  assert.equal(s.done, true);
  assert.equal(s.verifiedPieces, 1);
  assert.equal(s.next(0, 8), undefined);
});

const GEOMETRIES: { name: string; layout: PieceLayout }[] = [];
for (const [pieceSize, blockSize] of [[10, 3], [10, 10], [10, 4], [10, 1], [10, 25], [12, 5]]) {
  for (
    const size of [1, pieceSize - 1, pieceSize, pieceSize + 1, 3 * pieceSize + 7, 4 * pieceSize]
  ) {
    if (size <= 0) continue;
    GEOMETRIES.push({
      name: `size ${size}, piece ${pieceSize}, block ${blockSize}`,
      layout: { size, pieceSize, blockSize },
    });
  }
}

Deno.test("single server: assignments respect maxBlocks, stay in a piece, cover the file once", () => {
  for (const { name, layout } of GEOMETRIES) {
    for (const maxBlocks of [1, 2, 3, 64]) {
      const s = new PieceScheduler(layout);
      assert.equal(s.pieceCount, Math.ceil(layout.size / layout.pieceSize), name);
      const assignments = drain(s, 0, maxBlocks);
      const cover = new Uint8Array(layout.size);
      for (const a of assignments) {
        assert.equal(a.duplicate, false, `${name}: lone server got a duplicate`);
        for (let i = a.offset; i < a.offset + a.length; i++) cover[i]++;
      }
      assert.ok(cover.every((c) => c === 1), `${name} max ${maxBlocks}: not covered exactly once`);
      // Lowest offsets first.
      const offsets = assignments.map((a) => a.offset);
      assert.deepEqual(offsets, [...offsets].sort((x, y) => x - y), name);

      // Deliver everything: each piece completes on exactly its last missing block.
      const completed: number[] = [];
      for (const a of assignments) {
        for (const [o, l] of blocksIn(s, a)) {
          const r = s.onBlock(o, l);
          assert.equal(r.kind, "new", `${name}: block ${o}+${l}`);
          if (r.kind === "new" && r.pieceComplete) completed.push(Math.floor(o / layout.pieceSize));
        }
        s.release(a);
      }
      assert.deepEqual(completed, [...Array(s.pieceCount).keys()], name);
      assert.equal(s.next(0, maxBlocks), undefined, `${name}: work left after every block`);
      for (const p of completed) s.settlePiece(p, true);
      assert.equal(s.done, true, name);
      assert.equal(s.verifiedPieces, s.pieceCount, name);
    }
  }
});

Deno.test("pieceRange: last piece is shorter, others are pieceSize", () => {
  const s = new PieceScheduler({ size: 27, pieceSize: 10, blockSize: 3 });
  assert.equal(s.pieceCount, 3);
  assert.deepEqual(s.pieceRange(0), [0, 10]);
  assert.deepEqual(s.pieceRange(1), [10, 20]);
  assert.deepEqual(s.pieceRange(2), [20, 27]);
});

Deno.test("blockSize not dividing pieceSize: the last block of every piece is short", () => {
  const s = new PieceScheduler({ size: 27, pieceSize: 10, blockSize: 3 });
  const a0 = s.next(0, 100)!;
  assert.deepEqual([a0.piece, a0.firstBlock, a0.blockCount, a0.offset, a0.length], [
    0,
    0,
    4,
    0,
    10,
  ]);
  const a1 = s.next(0, 100)!;
  assert.deepEqual([a1.piece, a1.firstBlock, a1.blockCount, a1.offset, a1.length], [
    1,
    0,
    4,
    10,
    10,
  ]);
  const a2 = s.next(0, 100)!;
  assert.deepEqual([a2.piece, a2.firstBlock, a2.blockCount, a2.offset, a2.length], [
    2,
    0,
    3,
    20,
    7,
  ]);
  assert.deepEqual(blocksIn(s, a1), [[10, 3], [13, 3], [16, 3], [19, 1]]);
  assert.deepEqual(blocksIn(s, a2), [[20, 3], [23, 3], [26, 1]]);
});

Deno.test("a run stops at maxBlocks and the next one starts where it stopped", () => {
  const s = new PieceScheduler({ size: 27, pieceSize: 10, blockSize: 3 });
  const a = s.next(0, 3)!;
  assert.deepEqual([a.piece, a.firstBlock, a.blockCount, a.offset, a.length], [0, 0, 3, 0, 9]);
  const b = s.next(0, 3)!;
  assert.deepEqual([b.piece, b.firstBlock, b.blockCount, b.offset, b.length], [0, 3, 1, 9, 1]);
});

// ---------------------------------------------------------------------------------------------
// onBlock validation
// ---------------------------------------------------------------------------------------------

Deno.test("onBlock: misaligned offsets, wrong lengths and out-of-range offsets are invalid", () => {
  const s = new PieceScheduler({ size: 27, pieceSize: 10, blockSize: 3 });
  drain(s, 0, 100); // activate every piece
  // Misaligned: blocks are aligned to the piece start, not to multiples of blockSize.
  for (const o of [1, 2, 4, 8, 11, 12, 21, 25]) assert.deepEqual(s.onBlock(o, 3), INVALID, `@${o}`);
  for (const o of [9, 19, 26]) assert.deepEqual(s.onBlock(o, 3), INVALID, `short block @${o}`);
  // Wrong lengths.
  assert.deepEqual(s.onBlock(0, 2), INVALID);
  assert.deepEqual(s.onBlock(0, 4), INVALID);
  assert.deepEqual(s.onBlock(0, 0), INVALID);
  assert.deepEqual(s.onBlock(0, -3), INVALID);
  assert.deepEqual(s.onBlock(9, 3), INVALID); // last block of piece 0 is 1 byte
  assert.deepEqual(s.onBlock(9, 2), INVALID);
  assert.deepEqual(s.onBlock(26, 2), INVALID); // last block of the file is 1 byte
  assert.deepEqual(s.onBlock(0, 3.5), INVALID);
  // Out of range.
  assert.deepEqual(s.onBlock(27, 1), INVALID);
  assert.deepEqual(s.onBlock(30, 3), INVALID);
  assert.deepEqual(s.onBlock(-3, 3), INVALID);
  assert.deepEqual(s.onBlock(Number.MAX_SAFE_INTEGER, 3), INVALID);
  assert.deepEqual(s.onBlock(2 ** 60, 3), INVALID);
  assert.deepEqual(s.onBlock(NaN, 3), INVALID);
  assert.deepEqual(s.onBlock(Infinity, 3), INVALID);
  assert.deepEqual(s.onBlock(1.5, 3), INVALID);
  // None of that counted: every real block is still new.
  const kinds = [[0, 3], [3, 3], [6, 3], [9, 1], [10, 3], [13, 3], [16, 3], [19, 1]].map(
    ([o, l]) => s.onBlock(o, l).kind,
  );
  assert.deepEqual(kinds, Array(8).fill("new"));
  assert.deepEqual(s.onBlock(20, 3), NEW_MORE);
  assert.deepEqual(s.onBlock(23, 3), NEW_MORE);
  assert.deepEqual(s.onBlock(26, 1), NEW_DONE);
});

Deno.test("onBlock: a repeated block is a duplicate, before and after its piece completes", () => {
  const s = new PieceScheduler({ size: 8, pieceSize: 4, blockSize: 2 });
  drain(s, 0, 10);
  assert.deepEqual(s.onBlock(2, 2), NEW_MORE);
  assert.deepEqual(s.onBlock(2, 2), DUP);
  assert.deepEqual(s.onBlock(0, 2), NEW_DONE);
  assert.deepEqual(s.onBlock(0, 2), DUP);
  assert.deepEqual(s.onBlock(2, 2), DUP);
  s.settlePiece(0, true);
  assert.deepEqual(s.onBlock(0, 2), DUP);
  assert.deepEqual(s.onBlock(4, 2), NEW_MORE);
  assert.deepEqual(s.onBlock(4, 2), DUP);
});

// ---------------------------------------------------------------------------------------------
// release, ownership
// ---------------------------------------------------------------------------------------------

Deno.test("release: unreceived blocks become assignable again, received ones do not", () => {
  const s = new PieceScheduler({ size: 4, pieceSize: 4, blockSize: 1 });
  const a = s.next(0, 4)!;
  assert.deepEqual([a.firstBlock, a.blockCount], [0, 4]);
  assert.equal(s.next(0, 4), undefined, "everything is in flight");
  assert.deepEqual(s.onBlock(0, 1), NEW_MORE);
  assert.deepEqual(s.onBlock(2, 1), NEW_MORE);
  s.release(a);
  const b = s.next(0, 4)!;
  assert.deepEqual([b.piece, b.firstBlock, b.blockCount, b.offset, b.length, b.duplicate], [
    0,
    1,
    1,
    1,
    1,
    false,
  ]);
  const c = s.next(0, 4)!;
  assert.deepEqual([c.firstBlock, c.blockCount, c.offset, c.length], [3, 1, 3, 1]);
  assert.equal(s.next(0, 4), undefined);
});

Deno.test("release: an unanswered request gives back exactly the same run", () => {
  const s = new PieceScheduler({ size: 20, pieceSize: 10, blockSize: 3 });
  const a = s.next(0, 2)!;
  s.release(a);
  assert.deepEqual(s.next(0, 2), a);
});

Deno.test("release after the piece completed or was verified is harmless", () => {
  const s = new PieceScheduler({ size: 4, pieceSize: 2, blockSize: 1 });
  const a = s.next(0, 2)!;
  deliver(s, a);
  s.release(a);
  s.release(a);
  s.settlePiece(0, true);
  s.release(a);
  const b = s.next(0, 2)!;
  assert.equal(b.piece, 1);
  assert.equal(s.verifiedPieces, 1);
});

Deno.test("a server owns its piece and continues it before taking a new one", () => {
  const s = new PieceScheduler({ size: 16, pieceSize: 4, blockSize: 1 });
  const a0 = s.next(0, 2)!;
  assert.deepEqual([a0.piece, a0.firstBlock, a0.blockCount], [0, 0, 2]);
  const b0 = s.next(1, 2)!;
  assert.deepEqual([b0.piece, b0.firstBlock, b0.blockCount], [1, 0, 2], "server 1 takes piece 1");
  const a1 = s.next(0, 2)!;
  assert.deepEqual([a1.piece, a1.firstBlock], [0, 2], "server 0 continues piece 0");
  const b1 = s.next(1, 2)!;
  assert.deepEqual([b1.piece, b1.firstBlock], [1, 2], "server 1 continues piece 1");
  // Piece 0 is entirely in flight: server 0 may start a new piece meanwhile.
  const a2 = s.next(0, 2)!;
  assert.deepEqual([a2.piece, a2.firstBlock, a2.duplicate], [2, 0, false]);
  // Server 0's first request times out: it goes back to piece 0 before anything newer.
  s.release(a0);
  const a3 = s.next(0, 2)!;
  assert.deepEqual([a3.piece, a3.firstBlock, a3.blockCount, a3.duplicate], [0, 0, 2, false]);
  // Piece 0's blocks are not handed to server 1 (it owns piece 1 and the queue is not empty).
  s.release(b0);
  const b2 = s.next(1, 2)!;
  assert.deepEqual([b2.piece, b2.firstBlock], [1, 0]);
  const b3 = s.next(1, 2)!;
  assert.deepEqual([b3.piece, b3.firstBlock, b3.duplicate], [3, 0, false]);
});

// ---------------------------------------------------------------------------------------------
// dropServer, settlePiece, markVerified
// ---------------------------------------------------------------------------------------------

Deno.test("dropServer: the piece is requeued first and only its missing blocks are re-requested", () => {
  const s = new PieceScheduler({ size: 12, pieceSize: 4, blockSize: 1 });
  const a = s.next(0, 4)!; // piece 0, all four blocks
  const b = s.next(1, 4)!; // piece 1
  assert.deepEqual([a.piece, b.piece], [0, 1]);
  assert.deepEqual(s.onBlock(0, 1), NEW_MORE);
  assert.deepEqual(s.onBlock(2, 1), NEW_MORE);
  s.dropServer(0);
  s.release(a); // its request is abandoned
  // Server 1's piece is entirely in flight: it takes the dropped piece before piece 2.
  const c = s.next(1, 4)!;
  assert.deepEqual([c.piece, c.firstBlock, c.blockCount, c.offset, c.duplicate], [
    0,
    1,
    1,
    1,
    false,
  ]);
  const d = s.next(1, 4)!;
  assert.deepEqual([d.piece, d.firstBlock, d.blockCount, d.offset, d.duplicate], [
    0,
    3,
    1,
    3,
    false,
  ]);
  const e = s.next(1, 4)!;
  assert.equal(e.piece, 2, "only then a new piece");
  // The blocks that had arrived are kept: two more complete the piece.
  assert.deepEqual(s.onBlock(0, 1), DUP);
  assert.deepEqual(s.onBlock(1, 1), NEW_MORE);
  assert.deepEqual(s.onBlock(3, 1), NEW_DONE);
});

Deno.test("dropServer: blocks of the dropped server still in flight wait for their release", () => {
  const s = new PieceScheduler({ size: 8, pieceSize: 4, blockSize: 1 });
  const a = s.next(0, 4)!; // piece 0 in flight on server 0
  s.dropServer(0);
  // Server 1 takes over piece 0 but nothing in it is free yet; it starts piece 1.
  const b = s.next(1, 4)!;
  assert.equal(b.piece, 1);
  s.release(a);
  const c = s.next(1, 4)!;
  assert.deepEqual([c.piece, c.firstBlock, c.blockCount, c.duplicate], [0, 0, 4, false]);
  // Server 0 is gone and owns nothing; server 1 keeps both pieces.
  assert.equal(s.next(1, 4), undefined);
});

Deno.test("dropServer of a server that owns nothing changes nothing", () => {
  const s = new PieceScheduler({ size: 8, pieceSize: 4, blockSize: 1 });
  const a = s.next(0, 2)!;
  s.dropServer(5);
  const b = s.next(0, 2)!;
  assert.deepEqual([a.piece, a.firstBlock, b.piece, b.firstBlock], [0, 0, 0, 2]);
});

Deno.test("settlePiece(false) re-fetches the whole piece, ahead of the queue", () => {
  const s = new PieceScheduler({ size: 12, pieceSize: 4, blockSize: 1 });
  const a = s.next(0, 4)!;
  assert.deepEqual(deliver(s, a), ["new", "new", "new", "new"]);
  s.release(a);
  s.settlePiece(0, false);
  assert.equal(s.verifiedPieces, 0);
  assert.equal(s.done, false);
  const b = s.next(1, 4)!;
  assert.deepEqual([b.server, b.piece, b.firstBlock, b.blockCount, b.duplicate], [
    1,
    0,
    0,
    4,
    false,
  ]);
  // Every block counts as new again, and the piece completes again.
  assert.deepEqual(s.onBlock(0, 1), NEW_MORE);
  assert.deepEqual(s.onBlock(1, 1), NEW_MORE);
  assert.deepEqual(s.onBlock(2, 1), NEW_MORE);
  assert.deepEqual(s.onBlock(3, 1), NEW_DONE);
  s.settlePiece(0, true);
  assert.equal(s.verifiedPieces, 1);
});

Deno.test("settlePiece is ignored unless the piece is complete and unsettled", () => {
  const s = new PieceScheduler({ size: 8, pieceSize: 4, blockSize: 2 });
  s.settlePiece(0, true); // queued
  assert.equal(s.verifiedPieces, 0);
  const a = s.next(0, 1)!;
  s.settlePiece(0, true); // active, incomplete
  s.settlePiece(0, false);
  assert.equal(s.verifiedPieces, 0);
  const b = s.next(0, 1)!;
  assert.deepEqual([a.firstBlock, b.firstBlock, b.piece], [0, 1, 0], "piece 0 not requeued");
  deliver(s, a);
  deliver(s, b);
  s.settlePiece(0, true);
  s.settlePiece(0, true); // twice
  s.settlePiece(0, false); // after verification
  assert.equal(s.verifiedPieces, 1);
  const c = s.next(0, 4)!;
  assert.equal(c.piece, 1);
  assert.equal(s.next(0, 4), undefined);
});

Deno.test("markVerified: skips the piece, is idempotent, and can finish the file", () => {
  const s = new PieceScheduler({ size: 12, pieceSize: 4, blockSize: 2 });
  s.markVerified(0);
  s.markVerified(0);
  assert.equal(s.verifiedPieces, 1);
  const a = s.next(0, 4)!;
  assert.equal(a.piece, 1, "piece 0 is not fetched");
  // An active piece can be marked too: its blocks are no longer handed out.
  s.markVerified(1);
  assert.equal(s.verifiedPieces, 2);
  const b = s.next(0, 4)!;
  assert.equal(b.piece, 2);
  assert.deepEqual(s.onBlock(0, 2), DUP);
  assert.deepEqual(s.onBlock(4, 2), DUP);
  // A complete piece awaiting its verdict can be marked; a later verdict changes nothing.
  deliver(s, b);
  s.markVerified(2);
  s.settlePiece(2, false);
  assert.equal(s.verifiedPieces, 3);
  assert.equal(s.done, true);
  assert.equal(s.next(0, 4), undefined);
  assert.equal(s.next(1, 4), undefined);
});

Deno.test("markVerified on every piece up front: done with no work", () => {
  const s = new PieceScheduler({ size: 100, pieceSize: 10, blockSize: 3 });
  for (let p = 0; p < s.pieceCount; p++) s.markVerified(p);
  assert.equal(s.done, true);
  assert.equal(s.next(0, 4), undefined);
});

// ---------------------------------------------------------------------------------------------
// End game
// ---------------------------------------------------------------------------------------------

Deno.test("end game: once the queue is empty another server duplicates blocks in flight", () => {
  const s = new PieceScheduler({ size: 4, pieceSize: 4, blockSize: 1 });
  const a = s.next(0, 4)!;
  assert.equal(a.duplicate, false);
  assert.equal(s.next(0, 4), undefined, "the owner does not duplicate its own blocks");
  const b = s.next(1, 4)!;
  assert.deepEqual([b.server, b.piece, b.firstBlock, b.blockCount, b.offset, b.length], [
    1,
    0,
    0,
    4,
    0,
    4,
  ]);
  assert.equal(b.duplicate, true);
  assert.equal(s.next(2, 4), undefined, "no block gets a third request");
  assert.equal(s.next(1, 4), undefined);
  // The first answer wins, the copy is a duplicate.
  assert.deepEqual(s.onBlock(0, 1), NEW_MORE);
  assert.deepEqual(s.onBlock(0, 1), DUP);
  // Server 0 times out: blocks 1..3 are still in flight once (on server 1); block 0 arrived.
  s.release(a);
  const c = s.next(2, 4)!;
  assert.deepEqual([c.firstBlock, c.blockCount, c.duplicate], [1, 3, true]);
  assert.equal(s.next(0, 4), undefined, "every missing block has two requests");
});

Deno.test("end game: duplicates never cover received blocks and respect maxBlocks", () => {
  const s = new PieceScheduler({ size: 10, pieceSize: 10, blockSize: 1 });
  const a = s.next(0, 10)!;
  for (const o of [0, 3, 4, 9]) s.onBlock(o, 1);
  const got = drain(s, 1, 2);
  assert.ok(got.every((g) => g.duplicate));
  assert.deepEqual(got.map((g) => [g.firstBlock, g.blockCount]), [[1, 2], [5, 2], [7, 2]]);
  s.release(a);
  for (const g of got) s.release(g);
  // All free again: the owner gets the missing runs back, not as duplicates.
  const again = drain(s, 0, 10);
  assert.deepEqual(again.map((g) => [g.firstBlock, g.blockCount, g.duplicate]), [
    [1, 2, false],
    [5, 4, false],
  ]);
});

Deno.test("end game: no duplicates while the queue still has pieces", () => {
  const s = new PieceScheduler({ size: 8, pieceSize: 4, blockSize: 1 });
  s.next(0, 4);
  const b = s.next(1, 4)!;
  assert.deepEqual([b.piece, b.duplicate], [1, false]);
  const c = s.next(2, 4)!;
  assert.equal(c.duplicate, true, "queue is empty now");
});

Deno.test("end game: a peer holding none of the queued pieces makes no second copies", () => {
  // pieces 0 and 1; a peer holds only piece 0, a server takes it first: piece 1 is still queued
  const s = new PieceScheduler({ size: 8, pieceSize: 4, blockSize: 1 }, [0, 1]);
  const server = s.next(0, 4)!;
  assert.equal(server.piece, 0);
  const holdsFirst = (piece: number) => piece === 0;
  assert.equal(
    s.next(5, 4, holdsFirst, true),
    undefined,
    "no copy of blocks in flight: 1 is queued",
  );
  const copy = s.next(6, 4, holdsFirst)!;
  assert.equal(copy.duplicate, true, "a server would copy (multi-server tail)");
  s.release(copy);
  s.next(0, 4); // (the server takes piece 1: nothing queued now)
  const dup = s.next(5, 4, holdsFirst, true)!;
  assert.deepEqual([dup.piece, dup.duplicate], [0, true], "the end game: now it may");
});

Deno.test(`end game: a peer makes second copies only for the last ${END_GAME_PIECES} pieces`, () => {
  const pieces = END_GAME_PIECES + 2;
  const s = new PieceScheduler({ size: 4 * pieces, pieceSize: 4, blockSize: 1 });
  for (let i = 0; i < pieces; i++) assert.equal(s.next(0, 4)!.duplicate, false);
  const all = () => true; // (a peer holding every piece is still a peer)
  assert.equal(s.next(1, 4, all, true), undefined, `${pieces} pieces in flight: no copies yet`);
  assert.equal(s.next(2, 4, all)!.duplicate, true, "a server still duplicates (multi-server tail)");
  s.onBlock(0, 1), s.onBlock(1, 1), s.onBlock(2, 1), s.onBlock(3, 1);
  s.onBlock(4, 1), s.onBlock(5, 1), s.onBlock(6, 1), s.onBlock(7, 1);
  assert.equal(s.next(1, 4, all, true)?.duplicate, true, `${END_GAME_PIECES} left: copies`);
});

Deno.test("end game: an idle server helps with any block in flight only once elsewhere", () => {
  // Piece 0 (owner 0) has the most missing blocks: 0-1 in flight on server 0, 2-3 not requested
  // yet; piece 1's last block is in flight once on server 1. Idle server 2 first takes what
  // nobody asked for (2-3), then duplicates 0-1, then block 7 instead of idling.
  const s = new PieceScheduler({ size: 8, pieceSize: 4, blockSize: 1 });
  const a = s.next(0, 2)!;
  assert.deepEqual([a.piece, a.firstBlock, a.blockCount], [0, 0, 2]);
  const b = s.next(1, 4)!;
  assert.deepEqual([b.piece, b.firstBlock, b.blockCount], [1, 0, 4]);
  for (const o of [4, 5, 6]) assert.equal(s.onBlock(o, 1).kind, "new");
  const steal = s.next(2, 4)!;
  assert.deepEqual(
    [steal.piece, steal.firstBlock, steal.blockCount, steal.duplicate],
    [0, 2, 2, false],
    "the slow owner's unrequested blocks first",
  );
  const c = s.next(2, 4)!;
  assert.deepEqual([c.piece, c.firstBlock, c.blockCount, c.duplicate], [0, 0, 2, true]);
  const d = s.next(2, 4);
  assert.ok(d !== undefined, "server 2 idles although block 7 is in flight on server 1 only");
  assert.deepEqual([d.piece, d.firstBlock, d.blockCount, d.offset, d.duplicate], [
    1,
    3,
    1,
    7,
    true,
  ]);
});

Deno.test("end game: a server is not given a second copy of a request it already has", () => {
  const s = new PieceScheduler({ size: 1, pieceSize: 1, blockSize: 1 });
  const a = s.next(0, 1)!;
  const b = s.next(1, 1)!;
  assert.equal(b.duplicate, true);
  s.release(a); // server 0's request timed out; the block is now in flight on server 1 only
  assert.equal(
    s.next(1, 1),
    undefined,
    "server 1 was told to request the block it is already waiting for",
  );
});

Deno.test("no block exceeds 2 requests in flight across a failed verification (stale release)", () => {
  // Server 1's end-game copy of piece 0 is still in flight when server 0 completes the piece
  // and it fails verification. Server 2 re-fetches it; then server 1's old request ends.
  // Releasing that old request must not free blocks of the new round.
  const s = new PieceScheduler({ size: 4, pieceSize: 4, blockSize: 1 });
  const a1 = s.next(0, 4)!;
  const a2 = s.next(1, 4)!;
  assert.equal(a2.duplicate, true);
  assert.deepEqual(deliver(s, a1), ["new", "new", "new", "new"]);
  s.settlePiece(0, false);
  s.release(a1);
  const a3 = s.next(2, 4)!;
  assert.deepEqual([a3.piece, a3.firstBlock, a3.blockCount, a3.duplicate], [0, 0, 4, false]);
  s.release(a2); // stale: belongs to the round that failed
  // Blocks 0..3 are in flight exactly once (a3, on server 2).
  assert.equal(s.next(2, 4), undefined, "owner re-requests blocks it already has in flight");
  const dup = s.next(0, 4);
  assert.equal(dup?.duplicate, true);
  assert.equal(s.next(1, 4), undefined, "a block got a third request");
});

// ---------------------------------------------------------------------------------------------
// Property: random operations keep the in-flight invariants
// ---------------------------------------------------------------------------------------------

type Op =
  | { op: "next"; server: number; max: number }
  | { op: "release"; pick: number }
  | { op: "block"; pick: number; within: number }
  | { op: "drop"; server: number };

Deno.test("property: assignments are sound and no block ever has more than 2 requests", () => {
  const opArb: fc.Arbitrary<Op> = fc.oneof(
    fc.record({
      op: fc.constant("next" as const),
      server: fc.integer({ min: 0, max: 3 }),
      max: fc.integer({ min: 1, max: 5 }),
    }),
    fc.record({ op: fc.constant("release" as const), pick: fc.nat() }),
    fc.record({ op: fc.constant("block" as const), pick: fc.nat(), within: fc.nat() }),
    fc.record({ op: fc.constant("drop" as const), server: fc.integer({ min: 0, max: 3 }) }),
  );
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 60 }),
      fc.integer({ min: 1, max: 16 }),
      fc.integer({ min: 1, max: 6 }),
      fc.array(opArb, { maxLength: 120 }),
      (size, pieceSize, blockSize, ops) => {
        const layout = { size, pieceSize, blockSize };
        const s = new PieceScheduler(layout);
        const open: Assignment[] = [];
        const received = new Set<string>(); // "piece/block"
        // Requests in flight per block: server list.
        const flight = new Map<string, number[]>();
        const dropped = new Set<number>();
        for (const o of ops) {
          if (o.op === "next") {
            if (dropped.has(o.server)) continue;
            const a = s.next(o.server, o.max);
            if (!a) continue;
            checkAssignment(s, a, o.server, o.max);
            for (let b = a.firstBlock; b < a.firstBlock + a.blockCount; b++) {
              const key: string = `${a.piece}/${b}`;
              assert.ok(!received.has(key), `block ${key} requested after it arrived`);
              const holders: number[] = flight.get(key) ?? [];
              assert.equal(holders.length, a.duplicate ? 1 : 0, `block ${key}: ${holders}`);
              holders.push(o.server);
              assert.ok(holders.length <= 2);
              flight.set(key, holders);
            }
            open.push(a);
          } else if (o.op === "release") {
            if (open.length === 0) continue;
            const [a] = open.splice(o.pick % open.length, 1);
            s.release(a);
            for (let b = a.firstBlock; b < a.firstBlock + a.blockCount; b++) {
              const holders = flight.get(`${a.piece}/${b}`)!;
              holders.splice(holders.indexOf(a.server), 1);
            }
          } else if (o.op === "block") {
            if (open.length === 0) continue;
            const a = open[o.pick % open.length];
            const b = a.firstBlock + (o.within % a.blockCount);
            const [offset, length] = blockAt(layout, a.piece, b);
            const r = s.onBlock(offset, length);
            const key: string = `${a.piece}/${b}`;
            assert.equal(r.kind, received.has(key) ? "duplicate" : "new", key);
            received.add(key);
            if (r.kind === "new" && r.pieceComplete) {
              for (let k = 0; k < blocksOf(layout, a.piece); k++) {
                assert.ok(received.has(`${a.piece}/${k}`), "complete with a block missing");
              }
              s.settlePiece(a.piece, true);
            }
          } else {
            s.dropServer(o.server);
            dropped.add(o.server);
          }
        }
      },
    ),
    { seed: 0x5eed, numRuns: 400 },
  );
});

// ---------------------------------------------------------------------------------------------
// Seeded end-to-end simulation
// ---------------------------------------------------------------------------------------------

interface SimStats {
  steps: number;
  refetched: number;
  killed: boolean;
  lost: number;
  duplicates: number;
}

interface Datagram {
  server: number;
  offset: number;
  length: number;
}

function simulate(seed: number): SimStats {
  const rnd = mulberry32(seed);
  const int = (lo: number, hi: number) => lo + Math.floor(rnd() * (hi - lo + 1));
  const blockSize = int(1, 9);
  const pieceSize = int(1, 48);
  const size = int(0, 600);
  const maxBlocks = int(1, 6);
  const lossRate = rnd() * 0.3;
  const dupRate = rnd() * 0.25;
  const delayRate = rnd() * 0.25;
  const layout = { size, pieceSize, blockSize };
  const what = `seed ${seed}: ${JSON.stringify(layout)} max ${maxBlocks}`;
  const s = new PieceScheduler(layout);

  let totalBlocks = 0;
  for (let p = 0; p < s.pieceCount; p++) totalBlocks += blocksOf(layout, p);

  const servers = 3;
  const alive = [true, true, true];
  const victim = int(0, servers - 1);
  const killStep = rnd() < 0.75 ? int(0, Math.max(1, Math.ceil(totalBlocks / 4))) : -1;
  const failedOnce = new Set<number>();
  const newCount = new Uint8Array(size); // times each byte was "new" in the piece's current round
  let delayed: Datagram[] = [];
  const stats: SimStats = { steps: 0, refetched: 0, killed: false, lost: 0, duplicates: 0 };

  const onDatagram = (d: Datagram) => {
    const r = s.onBlock(d.offset, d.length);
    if (r.kind === "invalid") assert.fail(`${what}: valid block ${d.offset}+${d.length} refused`);
    if (r.kind === "duplicate") {
      stats.duplicates++;
      return;
    }
    for (let i = d.offset; i < d.offset + d.length; i++) {
      assert.equal(newCount[i], 0, `${what}: byte ${i} new twice`);
      newCount[i] = 1;
    }
    if (!r.pieceComplete) return;
    const piece = Math.floor(d.offset / pieceSize);
    const [start, end] = s.pieceRange(piece);
    for (let i = start; i < end; i++) {
      assert.equal(newCount[i], 1, `${what}: piece ${piece} complete without byte ${i}`);
    }
    if (!failedOnce.has(piece) && rnd() < 0.2) {
      failedOnce.add(piece);
      newCount.fill(0, start, end);
      stats.refetched++;
      s.settlePiece(piece, false);
    } else {
      s.settlePiece(piece, true);
    }
  };

  const maxSteps = 40 * totalBlocks + 100;
  while (!s.done) {
    stats.steps++;
    assert.ok(stats.steps <= maxSteps, `${what}: not done after ${maxSteps} steps`);

    // Every live server asks for a few requests; check them against the in-flight model.
    const open: Assignment[] = [];
    const flight = new Map<string, number[]>();
    for (let server = 0; server < servers; server++) {
      if (!alive[server]) continue;
      const want = int(1, 3);
      for (let k = 0; k < want; k++) {
        const a = s.next(server, maxBlocks);
        if (!a) break;
        checkAssignment(s, a, server, maxBlocks);
        for (let b = a.firstBlock; b < a.firstBlock + a.blockCount; b++) {
          const key: string = `${a.piece}/${b}`;
          const holders: number[] = flight.get(key) ?? [];
          assert.equal(holders.length, a.duplicate ? 1 : 0, `${what}: block ${key} ${holders}`);
          holders.push(server);
          flight.set(key, holders);
        }
        open.push(a);
      }
    }

    // The network: the answers plus late datagrams from earlier steps, in random order.
    const net: Datagram[] = delayed;
    delayed = [];
    for (const a of open) {
      for (const [offset, length] of blocksIn(s, a)) net.push({ server: a.server, offset, length });
    }
    for (let i = net.length - 1; i > 0; i--) {
      const j = int(0, i);
      [net[i], net[j]] = [net[j], net[i]];
    }
    const killAt = stats.steps - 1 === killStep ? int(0, net.length) : -1;
    for (let i = 0; i < net.length; i++) {
      if (i === killAt && alive[victim]) {
        alive[victim] = false;
        stats.killed = true;
        s.dropServer(victim);
      }
      const d = net[i];
      if (!alive[d.server] && rnd() < 0.5) continue; // a dead server's datagrams mostly vanish
      if (rnd() < lossRate) {
        stats.lost++;
        continue;
      }
      if (rnd() < delayRate) {
        delayed.push(d); // arrives in a later step, after its request was released
        continue;
      }
      onDatagram(d);
      if (rnd() < dupRate) onDatagram(d);
      if (rnd() < dupRate / 2) delayed.push(d);
    }
    if (killAt === net.length && alive[victim]) {
      alive[victim] = false;
      stats.killed = true;
      s.dropServer(victim);
    }
    // Every request ends (answered, timed out), in random order.
    for (let i = open.length - 1; i > 0; i--) {
      const j = int(0, i);
      [open[i], open[j]] = [open[j], open[i]];
    }
    for (const a of open) s.release(a);
  }

  assert.equal(s.verifiedPieces, s.pieceCount, what);
  assert.ok(newCount.every((c) => c === 1), `${what}: some byte never delivered`);
  for (let server = 0; server < servers; server++) assert.equal(s.next(server, 4), undefined);
  // Late datagrams after the end are duplicates.
  for (const d of delayed) assert.deepEqual(s.onBlock(d.offset, d.length), DUP, what);
  return stats;
}

Deno.test("simulation: 3 lossy, duplicating, reordering servers, one killed, reach done", () => {
  let killed = 0;
  let refetched = 0;
  let lost = 0;
  let duplicates = 0;
  for (let seed = 1; seed <= 300; seed++) {
    const st = simulate(seed);
    if (st.killed) killed++;
    refetched += st.refetched;
    lost += st.lost;
    duplicates += st.duplicates;
  }
  // The seeds actually exercise the interesting paths.
  assert.ok(killed > 50, `only ${killed} runs killed a server`);
  assert.ok(refetched > 50, `only ${refetched} failed verifications`);
  assert.ok(lost > 1000, `only ${lost} datagrams lost`);
  assert.ok(duplicates > 1000, `only ${duplicates} duplicate datagrams`);
});

Deno.test("simulation is deterministic for a seed", () => {
  assert.deepEqual(simulate(42), simulate(42));
});

Deno.test("a timed-out request (release lost) hands its piece to the next server", () => {
  const s = new PieceScheduler({ size: 8, pieceSize: 8, blockSize: 1 });
  const a = s.next(0, 4)!;
  assert.deepEqual([a.server, a.firstBlock, a.blockCount], [0, 0, 4]);
  assert.equal(s.onBlock(0, 1).kind, "new");
  s.release(a, true);
  const b = s.next(1, 8)!;
  assert.equal(b.server, 1);
  assert.equal(b.duplicate, false);
  assert.deepEqual([b.firstBlock, b.blockCount], [1, 7], "block 0 arrived and is not asked again");
  assert.equal(s.next(0, 8)?.duplicate, true, "server 0 no longer owns it: only end game");
});

Deno.test("dropServer again releases what was handed to the server after the first drop", () => {
  // The client calls dropServer whenever it sees a dropped server's answer: a lane that was
  // waiting (e.g. on --limit) may have taken work for it after the first call.
  const s = new PieceScheduler({ size: 4 * 1024, pieceSize: 1024, blockSize: 512 });
  s.dropServer(0);
  const late = s.next(0, 2)!;
  assert.equal(late.piece, 0);
  s.release(late); // answered STALE: not lost, so the server still owns piece 0
  // (before the end game: there, idle servers also take blocks of others' pieces)
  const others = [1, 2, 3].map(() => s.next(1, 2)!.piece);
  assert.ok(!others.includes(0), "piece 0 is stuck with server 0 until it is dropped again");
  s.dropServer(0);
  assert.equal(s.next(2, 2)?.piece, 0);
});

Deno.test("scheduler: an indexed partial source gets the very piece the queue scan gives it, through gains, withdrawals, promotions, losses, drops and bad pieces", () => {
  const layout: PieceLayout = { size: 40 * 4096 + 100, pieceSize: 4096, blockSize: 1024 };
  for (let seed = 1; seed <= 40; seed++) {
    const random = mulberry32(seed);
    const pick = (n: number) => Math.floor(random() * n);
    const order = Array.from({ length: 41 }, (_, i) => i).sort(() => random() - 0.5);
    const indexed = new PieceScheduler(layout, order);
    const scanned = new PieceScheduler(layout, order);
    const holds = [new Set<number>(), new Set<number>(), new Set<number>(), new Set<number>()];
    const filter = (peer: number) => (piece: number) => holds[peer].has(piece);
    for (let peer = 1; peer <= 3; peer++) indexed.indexSource(peer, filter(peer));
    const inFlight: Assignment[] = [];
    for (let step = 0; step < 600; step++) {
      const peer = 1 + pick(3);
      const op = pick(10);
      if (op <= 2) { // a peer gains a piece
        const piece = pick(41);
        holds[peer].add(piece);
        indexed.sourceHas(peer, piece);
      } else if (op === 3) { // a peer's claim is withdrawn (NOT_HELD)
        holds[peer].delete(pick(41));
      } else if (op === 4) { // a piece put first (fresh in the swarm)
        const pieces = [pick(41), pick(41)];
        indexed.promote(pieces);
        scanned.promote(pieces);
      } else if (op === 5 && inFlight.length > 0) { // a request ends: lost or answered in part
        const a = inFlight.splice(pick(inFlight.length), 1)[0];
        const lost = random() < 0.5;
        if (!lost) {
          for (const [o, l] of blocksIn(indexed, a).slice(0, 1)) {
            assert.deepEqual(indexed.onBlock(o, l), scanned.onBlock(o, l));
          }
        }
        indexed.release(a, lost);
        scanned.release(a, lost);
      } else if (op === 6 && random() < 0.2) { // a source leaves (and may come back)
        const who = pick(4);
        indexed.dropServer(who);
        scanned.dropServer(who);
        for (let i = inFlight.length - 1; i >= 0; i--) {
          if (inFlight[i].server === who) inFlight.splice(i, 1);
        }
        if (who > 0) indexed.indexSource(who, filter(who));
      } else { // a source asks for work; sometimes it is delivered whole, a bad piece or good
        const who = op === 9 ? 0 : peer;
        const has = who === 0 ? undefined : filter(who);
        const max = 1 + pick(4);
        const a = indexed.next(who, max, has, true);
        const b = scanned.next(who, max, has, true);
        assert.deepEqual(
          a && { ...a, generation: 0 },
          b && { ...b, generation: 0 },
          `seed ${seed} step ${step}`,
        );
        if (!a || !b) continue;
        if (random() < 0.5) {
          inFlight.push(a);
          continue;
        }
        for (const [o, l] of blocksIn(indexed, a)) {
          const r = indexed.onBlock(o, l);
          assert.deepEqual(r, scanned.onBlock(o, l));
          if (r.kind === "new" && r.pieceComplete) {
            const ok = random() < 0.9;
            indexed.settlePiece(a.piece, ok);
            scanned.settlePiece(a.piece, ok);
          }
        }
      }
    }
  }
});
