import assert from "node:assert/strict";
import { ModelBasedController } from "../../lib/engine/congestion/model_based.ts";
import type { Assignment } from "../../lib/engine/scheduler.ts";
import { type LostRun, REORDER_THRESHOLD, SourcePath } from "../../lib/engine/source_path.ts";

const BS = 1000;

function path(): SourcePath {
  const cc = new ModelBasedController({
    initialWindow: 64 * BS,
    initialRttMs: 50,
    minWindow: 4 * BS,
    maxWindow: Infinity,
  });
  return new SourcePath(0, cc, 0, BS);
}

function run(offset: number, blocks: number): Assignment {
  return {
    server: 0,
    piece: 0,
    firstBlock: offset / BS,
    blockCount: blocks,
    offset,
    length: blocks * BS,
    duplicate: false,
    generation: 1,
  };
}

Deno.test("source path: a block overtaken by three later ones is lost, not before", () => {
  const p = path();
  const r = p.sent(0, 1, run(0, 8), false);
  const lost: LostRun[] = [];
  p.onBlock(50, r, 1, BS, lost);
  p.onBlock(50, r, 2, BS, lost);
  p.onBlock(50, r, 3, BS, lost);
  assert.equal(lost.length, 0, "block 0 overtaken by 3: not yet");
  p.onBlock(50, r, REORDER_THRESHOLD + 1, BS, lost);
  assert.deepEqual(lost.map((l) => [l.firstBlock, l.blockCount]), [[0, 1]]);
  assert.equal(p.inflight, 8 * BS - 5 * BS);
});

Deno.test("source path: a lost request is found by the next request's blocks", () => {
  const p = path();
  p.sent(0, 1, run(0, 4), false); // its request never reaches the server
  const r2 = p.sent(1, 2, run(4000, 4), false);
  const lost: LostRun[] = [];
  for (let b = 0; b < 4; b++) p.onBlock(51, r2, b, BS, lost);
  assert.ok(lost.every((l) => l.request.id === 1));
  assert.equal(lost.reduce((n, l) => n + l.blockCount, 0), 4);
  assert.equal(p.inflight, 0);
  assert.equal(p.requests.length, 0, "both settled and retired");
});

Deno.test("source path: order only counts within a lane (another socket is read in any order)", () => {
  const p = path();
  p.sent(0, 1, run(0, 4), false, 0);
  const r2 = p.sent(1, 2, run(4000, 4), false, 1);
  const lost: LostRun[] = [];
  for (let b = 0; b < 4; b++) p.onBlock(51, r2, b, BS, lost);
  assert.equal(lost.length, 0);
});

Deno.test("source path: a tail is lost at its deadline; a late block is still counted once", () => {
  const p = path();
  const r = p.sent(0, 1, run(0, 2), false);
  const lost: LostRun[] = [];
  p.onBlock(50, r, 0, BS, lost);
  assert.equal(p.expire(60, lost), false, "not yet due");
  const due = p.nextDeadline();
  assert.ok(Number.isFinite(due));
  assert.equal(p.expire(due, lost), true);
  assert.deepEqual(lost.map((l) => [l.firstBlock, l.blockCount]), [[1, 1]]);
  assert.equal(p.inflight, 0);
  assert.equal(p.onBlock(due + 1, r, 1, BS, lost), true, "late but new");
  assert.equal(p.onBlock(due + 2, r, 1, BS, lost), false, "a duplicate");
  assert.equal(p.inflight, 0);
});

Deno.test("source path: pacing spaces requests at the controller's rate", () => {
  const p = path();
  assert.ok(p.canSend(0, 4 * BS));
  p.sent(0, 1, run(0, 16), false);
  const next = p.nextSendTime(4 * BS);
  assert.ok(next > 0, "the next request waits for its pacing slot");
  assert.ok(Math.abs(next - 16 * BS / p.cc.pacingRate()) < 1e-9);
});
