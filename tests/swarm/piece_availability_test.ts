import assert from "node:assert/strict";
import { PieceAvailability, PieceState } from "../../lib/swarm/piece_availability.ts";
import { seededRandom } from "../../lib/sim/prng.ts";

function map(pieces: number, held: number[]): Uint8Array {
  const m = new Uint8Array(pieces);
  for (const p of held) m[p] = 1;
  return m;
}

Deno.test("availability: counts follow have-maps, haves and removal", () => {
  const state = new Uint8Array(8);
  const a = new PieceAvailability(8, (p) => state[p] as PieceState);
  a.addSource(1, { server: false, complete: false, haves: map(8, [0, 1]) });
  a.addSource(2, { server: false, complete: false, haves: map(8, [1]) });
  assert.deepEqual([a.level(0), a.level(1), a.level(2)], [1, 2, 0]);
  a.sourceHas(2, 2);
  a.sourceHas(2, 2); // (a repeated have counts once)
  assert.equal(a.level(2), 1);
  a.removeSource(1);
  assert.deepEqual([a.level(0), a.level(1), a.level(2)], [0, 1, 1]);
  assert.equal(a.has(2, 2), true);
  assert.equal(a.has(1, 0), false);
});

Deno.test("availability: rarest first for a peer; a server is asked for claim level 0 first", () => {
  const state = new Uint8Array(4);
  const a = new PieceAvailability(4, (p) => state[p] as PieceState);
  a.addSource(0, { server: true, complete: true });
  a.addSource(1, { server: false, complete: false, haves: map(4, [0, 1, 2]) });
  a.addSource(2, { server: false, complete: false, haves: map(4, [0, 1]) });
  a.addSource(3, { server: false, complete: false, haves: map(4, [0]) });
  const r = seededRandom(1);
  assert.equal(a.pickRarest(1, r), 2); // (held by one peer only)
  assert.equal(a.pickRarest(0, r, 0), 3); // (held by no peer)
  a.wantAgain(3, 0); // (not asked after all)
  a.sourceFetching(2, 3, 0); // (peer 2 says it fetches piece 3 from the server)
  assert.equal(a.claimLevel(3), 1);
  assert.equal(a.pickRarest(0, r, 0), -1); // (nothing left at claim level 0)
  assert.ok([2, 3].includes(a.pickRarest(0, r))); // (claim level 1 both; 0 and 1 are commoner)
});

Deno.test("availability: a piece dropped while in flight comes back where it was dropped", () => {
  const state = new Uint8Array(2);
  const a = new PieceAvailability(2, (p) => state[p] as PieceState);
  a.addSource(1, { server: false, complete: false, haves: map(2, [0]) });
  a.addSource(2, { server: false, complete: false, haves: map(2, [0]) });
  const r = seededRandom(1);
  assert.equal(a.pickRarest(1, r), 0);
  state[0] = PieceState.InFlight;
  assert.equal(a.pickRarest(2, r), -1); // (parks source 2 for piece 0)
  state[0] = PieceState.Wanted;
  assert.deepEqual(a.wantAgain(0, 1).sort(), [1, 2]);
  assert.equal(a.pickRarest(2, r), 0);
});

Deno.test("availability: picks do no scan — 10 000 pieces, 200 sources, O(1) work per pick", () => {
  const pieces = 10_000;
  const state = new Uint8Array(pieces);
  let looks = 0;
  const a = new PieceAvailability(pieces, (p) => {
    looks++;
    return state[p] as PieceState;
  });
  const r = seededRandom(7);
  a.addSource(0, { server: true, complete: true });
  for (let s = 1; s <= 200; s++) {
    const held: number[] = [];
    for (let p = 0; p < pieces; p++) if (r() < 0.3) held.push(p);
    a.addSource(s, { server: false, complete: false, haves: map(pieces, held) });
  }
  looks = 0;
  const t0 = performance.now();
  let picks = 0;
  for (let round = 0; round < 20 && picks < pieces; round++) {
    for (let s = 0; s <= 200; s++) {
      const p = a.pickRarest(s, r);
      if (p < 0) continue;
      state[p] = PieceState.Done;
      a.settled(p);
      picks++;
      // (the swarm moves on meanwhile: a few haves per pick)
      for (let k = 0; k < 3; k++) a.sourceHas(1 + Math.floor(r() * 200), Math.floor(r() * pieces));
    }
  }
  const ms = performance.now() - t0;
  assert.ok(picks > 3000, `picks ${picks}`);
  // (a look is one bucket entry met; each entry is met about once, so the work is bounded by
  // the haves received — a few tens per piece with 60 holders each — never O(pieces) per pick)
  assert.ok(looks / picks < 100, `looks per pick ${(looks / picks).toFixed(1)}`);
  assert.ok(ms / picks < 0.05, `${(ms / picks * 1000).toFixed(1)} µs per pick`);
});
