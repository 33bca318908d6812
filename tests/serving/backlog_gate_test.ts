import assert from "node:assert/strict";
import { BacklogGate, busyFor } from "../../lib/serving/backlog_gate.ts";

Deno.test("backlog gate: admits up to the backlog, then staggers retry turns", () => {
  assert.equal(busyFor(100, 300), 0);
  assert.equal(busyFor(400, 300), 100);
  const g = new BacklogGate(300, 500);
  assert.equal(g.admit(0, 200, 125), 0);
  const turns = [g.admit(0, 400, 125), g.admit(0, 400, 125), g.admit(0, 400, 125)];
  assert.deepEqual(turns, [100, 225, 350]);
  for (let i = 0; i < 10; i++) g.admit(0, 400, 125);
  assert.equal(g.admit(0, 400, 125), 600); // (never past the horizon)
});

Deno.test("backlog gate: with a random source, refusals past the horizon spread over it", () => {
  const draws = [0.1, 0.9, 0.5];
  const g = new BacklogGate(300, 500, () => draws.shift() ?? 0);
  const turns = Array.from({ length: 8 }, () => g.admit(0, 400, 125));
  assert.deepEqual(turns.slice(0, 5), [100, 225, 350, 475, 600], "staggered first");
  assert.deepEqual(turns.slice(5), [150, 550, 350], "then busy + horizon × random");
});
