import assert from "node:assert/strict";
import { LevelBuckets } from "../../lib/swarm/level_buckets.ts";
import { seededRandom } from "../../lib/sim/prng.ts";

Deno.test("level buckets: pop returns the lowest current level, re-filing entries that rose", () => {
  const level = new Map<number, number>([[1, 3], [2, 1], [3, 2]]);
  const b = new LevelBuckets((p) => level.get(p) ?? -1, 16);
  for (const [p, l] of level) b.push(p, l);
  level.set(2, 5); // (piece 2 became common after it was filed)
  const r = seededRandom(1);
  assert.deepEqual([b.pop(r), b.pop(r), b.pop(r), b.pop(r)], [3, 1, 2, -1]);
});

Deno.test("level buckets: unwanted entries are dropped, maxAccept stops the walk", () => {
  const level = new Map<number, number>([[1, 0], [2, 0], [3, 1]]);
  const b = new LevelBuckets((p) => level.get(p) ?? -1, 16);
  for (const [p, l] of level) b.push(p, l);
  level.delete(1);
  const r = seededRandom(2);
  assert.equal(b.pop(r, 0), 2);
  assert.equal(b.pop(r, 0), -1); // (piece 3 is at level 1)
  assert.equal(b.pop(r), 3);
});

Deno.test("level buckets: ties are broken uniformly at random", () => {
  const counts = new Array(8).fill(0);
  const r = seededRandom(3);
  for (let round = 0; round < 4000; round++) {
    const b = new LevelBuckets(() => 2, 16);
    for (let p = 0; p < 8; p++) b.push(p, 2);
    counts[b.pop(r)]++;
  }
  for (const c of counts) assert.ok(c > 400 && c < 600, `counts ${counts}`);
});

Deno.test("level buckets: popAny draws from every level", () => {
  const b = new LevelBuckets((p) => p, 16);
  for (let p = 0; p < 4; p++) b.push(p, p);
  const r = seededRandom(4);
  const got = new Set([b.popAny(r), b.popAny(r), b.popAny(r), b.popAny(r)]);
  assert.deepEqual([...got].sort(), [0, 1, 2, 3]);
  assert.equal(b.popAny(r), -1);
});
