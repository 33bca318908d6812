import assert from "node:assert/strict";
import { LiarDetector } from "../../lib/swarm/liar_detection.ts";
import { seededRandom } from "../../lib/sim/prng.ts";

Deno.test("liar detection: a bad piece from one source convicts it at once", () => {
  const d = new LiarDetector();
  assert.deepEqual(d.pieceFailed([5]), [5]);
  assert.ok(d.isExcluded(5));
});

Deno.test("liar detection: mixed pieces put every contributor on parole; a solo piece finds the liar", () => {
  const d = new LiarDetector();
  assert.deepEqual(d.pieceFailed([1, 2, 3]), []);
  assert.ok(d.onParole(1) && d.onParole(2) && d.onParole(3));
  // (on parole each gets whole pieces alone: the honest ones pass, the liar fails)
  d.pieceVerified([1]);
  d.pieceVerified([3]);
  assert.deepEqual(d.pieceFailed([2]), [2]);
  assert.ok(!d.isExcluded(1) && !d.isExcluded(3));
});

Deno.test("liar detection: parole ends after clean solo pieces", () => {
  const d = new LiarDetector({ clearAfter: 2 });
  d.pieceFailed([1, 2]);
  d.pieceVerified([1]);
  assert.ok(d.onParole(1));
  d.pieceVerified([1]);
  assert.ok(!d.onParole(1));
});

Deno.test("liar detection: a liar that lies only when mixed is excluded on strikes", () => {
  const d = new LiarDetector({ maxStrikes: 3 });
  d.pieceFailed([9, 1]);
  d.pieceFailed([9, 2]);
  assert.deepEqual(d.pieceFailed([9, 3]), [9]);
});

Deno.test("liar detection: parole finds one liar among 20 sources in a few pieces", () => {
  const r = seededRandom(3);
  const liar = 13;
  const d = new LiarDetector();
  let wasted = 0;
  for (let piece = 0; piece < 200 && !d.isExcluded(liar); piece++) {
    // (end game: a piece's blocks come from two sources, unless one is on parole)
    const a = Math.floor(r() * 20);
    const b = Math.floor(r() * 20);
    const contributors = d.onParole(a) || a === b ? [a] : [a, b];
    if (contributors.includes(liar)) {
      wasted++;
      d.pieceFailed(contributors);
    } else d.pieceVerified(contributors);
  }
  assert.ok(d.isExcluded(liar));
  assert.ok(wasted <= 3, `wasted ${wasted}`);
  for (let s = 0; s < 20; s++) if (s !== liar) assert.ok(!d.isExcluded(s));
});

Deno.test("liar detection: claims not kept exclude after the limit", () => {
  const d = new LiarDetector({ maxBrokenClaims: 2 });
  assert.equal(d.claimBroken(4), false);
  assert.equal(d.claimBroken(4), true);
  assert.ok(d.isExcluded(4));
});
