import assert from "node:assert/strict";
import { FirstCopyLedger, FirstCopyLedgers } from "../../lib/serving/first_copy_ledger.ts";
import { seededRandom } from "../../lib/sim/prng.ts";

const PIECE = 1000;

Deno.test("first copies: a piece goes to one swarm fetcher; another is told it was given out", () => {
  const l = new FirstCopyLedger(4, PIECE, seededRandom(1), { holdMs: 100 });
  assert.deepEqual(l.answer(0, "a", 0, 500), { kind: "serve" });
  assert.equal(l.unsent, 3);
  assert.deepEqual(l.answer(1, "a", 500, 500), { kind: "serve" }, "its own piece, again");
  const b = l.answer(2, "b", 0, 1000);
  assert.equal(b.kind, "given_out");
  if (b.kind !== "given_out") return;
  assert.equal(b.piece, 0);
  assert.deepEqual([...b.unsent].sort(), [1, 2, 3], "the pieces never sent");
  assert.deepEqual(l.answer(3, "b", 2000, 1000), { kind: "serve" }, "an unsent one is served");
});

Deno.test("first copies: a holder quiet for the hold time loses the piece; repeats once all went out", () => {
  const l = new FirstCopyLedger(3, PIECE, seededRandom(2), { holdMs: 100 });
  l.answer(0, "a", 0, PIECE);
  assert.equal(l.answer(50, "b", 0, PIECE).kind, "given_out");
  assert.equal(l.answer(60, "a", 0, PIECE).kind, "serve", "its holder asks again: held longer");
  assert.equal(l.answer(150, "b", 0, PIECE).kind, "given_out");
  assert.equal(l.answer(161, "b", 0, PIECE).kind, "serve", "quiet for 100 ms: b may have it");
  assert.equal(l.answer(162, "a", 0, PIECE).kind, "given_out", "now b's");
  l.answer(170, "c", PIECE, 2 * PIECE); // spans pieces 1 and 2: every piece went out
  assert.equal(l.unsent, 0);
  assert.equal(l.answer(171, "a", 0, PIECE).kind, "serve", "the first pass is over: repeats");
});

Deno.test("first copies: a request spanning a given-out piece is refused whole", () => {
  const l = new FirstCopyLedger(3, PIECE, seededRandom(3));
  l.answer(0, "a", PIECE, 1);
  const r = l.answer(1, "b", 0, 3 * PIECE);
  assert.equal(r.kind, "given_out");
  assert.equal(r.kind === "given_out" && r.piece, 1);
  assert.equal(l.unsent, 2, "nothing of the refused request counts as given");
});

Deno.test("first copies: hints are distinct unsent pieces, a few at most", () => {
  const l = new FirstCopyLedger(1000, PIECE, seededRandom(4), { hints: 8 });
  l.answer(0, "a", 0, PIECE);
  for (let k = 0; k < 50; k++) {
    const r = l.answer(1, "b", 0, PIECE);
    assert.ok(r.kind === "given_out");
    assert.ok(r.unsent.length > 0 && r.unsent.length <= 8);
    assert.equal(new Set(r.unsent).size, r.unsent.length);
    assert.ok(!r.unsent.includes(0), "never the piece already given");
  }
});

Deno.test("first copies: one ledger per file, the oldest dropped past the cap", () => {
  const ls = new FirstCopyLedgers(2, seededRandom(5));
  const one = ls.of(1n, 10 * PIECE, PIECE);
  assert.equal(one.pieceCount, 10);
  assert.equal(ls.of(1n, 10 * PIECE, PIECE), one, "the same file, the same ledger");
  ls.of(2n, PIECE, PIECE);
  ls.of(3n, PIECE, PIECE);
  assert.notEqual(ls.of(1n, 10 * PIECE, PIECE), one, "dropped for the third file, made anew");
});
