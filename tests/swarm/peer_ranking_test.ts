import assert from "node:assert/strict";
import { comparePeers, type PeerFacts, rankPeers } from "../../lib/swarm/peer_ranking.ts";

const peer = (id: number, o: Partial<PeerFacts> = {}): PeerFacts => ({
  id,
  complete: false,
  useful: 10,
  rate: 0,
  ageMs: 10_000,
  ...o,
});

Deno.test("peer ranking: complete first, then by pieces needed, then by rate", () => {
  const order = [peer(1, { useful: 5 }), peer(2, { complete: true }), peer(3, { useful: 9 })]
    .sort(comparePeers)
    .map((p) => p.id);
  assert.deepEqual(order, [2, 3, 1]);
});

Deno.test("peer ranking: fills the set, then swaps only peers with nothing needed", () => {
  const current = [peer(1), peer(2, { useful: 0 }), peer(3, { useful: 0, ageMs: 100 })];
  assert.deepEqual(rankPeers(current, [4, 5], { max: 5 }), { connect: [4, 5], drop: [] });
  const full = rankPeers(current, [1, 6, 7], { max: 3, minAgeMs: 1000 });
  assert.deepEqual(full, { connect: [6], drop: [2] });
});
