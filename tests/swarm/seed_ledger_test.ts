import assert from "node:assert/strict";
import { SeedLedger } from "../../lib/swarm/seed_ledger.ts";
import { seededRandom } from "../../lib/sim/prng.ts";

Deno.test("seed ledger: every piece leaves once before any repeat", () => {
  const l = new SeedLedger(16, seededRandom(1));
  const sent = new Set<number>();
  for (let i = 0; i < 16; i++) {
    const a = l.answer(0, 0); // (everyone asks for piece 0)
    assert.ok(a.kind === "serve" || a.kind === "substitute");
    sent.add(a.piece);
  }
  assert.equal(sent.size, 16);
  assert.equal(l.firstCopies, 16);
  const repeat = l.answer(3, 0);
  assert.deepEqual(repeat, { kind: "serve", piece: 3, firstCopy: false });
});

Deno.test("seed ledger: repeats wait for a short backlog, busy above the cap", () => {
  const l = new SeedLedger(1, seededRandom(1), { repeatBacklogMs: 50, maxBacklogMs: 1000 });
  l.answer(0, 0);
  assert.deepEqual(l.answer(0, 80), { kind: "redirect", retryAfterMs: 30 });
  assert.deepEqual(l.answer(0, 1500), { kind: "busy", retryAfterMs: 500 });
});

Deno.test("seed ledger: without substitution an already-sent piece is redirected", () => {
  const l = new SeedLedger(4, seededRandom(1), { substitute: false });
  l.answer(2, 0);
  assert.equal(l.answer(2, 0).kind, "redirect");
});

Deno.test("seed ledger: a plain server serves whatever is asked", () => {
  const l = new SeedLedger(4, seededRandom(1), { coordinate: false });
  l.answer(1, 0);
  assert.deepEqual(l.answer(1, 0), { kind: "serve", piece: 1, firstCopy: false });
});
