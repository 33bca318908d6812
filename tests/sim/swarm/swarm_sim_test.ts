import assert from "node:assert/strict";
import { boundMs, simulateSwarm } from "../../../lib/sim/swarm/swarm_sim.ts";
import { churnCrowd, flashCrowd, MiB, withLiars } from "../../../lib/sim/swarm/swarm_scenarios.ts";

Deno.test("swarm sim: the bound is Kumar & Ross's (scenario F: 16 s)", () => {
  assert.equal(boundMs(flashCrowd({ peers: 8 })), 16_000);
  const rich = flashCrowd({ peers: 8, serverUpBytesPerSec: 64 * MiB });
  assert.equal(boundMs(rich), 8_000);
});

Deno.test("swarm sim: scenario F (N = 8) — last done ≤ 1.2 × bound, server ≤ 1.3 × F", () => {
  const o = simulateSwarm(flashCrowd({ peers: 8 }));
  assert.ok(o.finished);
  assert.equal(o.badAccepted, 0);
  assert.ok(o.ratio <= 1.2, `ratio ${o.ratio.toFixed(3)}`);
  assert.ok(o.serverShare <= 1.3, `server ${o.serverShare.toFixed(3)} F`);
});

Deno.test("swarm sim: a seed replays exactly", () => {
  const a = simulateSwarm(flashCrowd({ peers: 8, seed: 5 }));
  const b = simulateSwarm(flashCrowd({ peers: 8, seed: 5 }));
  assert.deepEqual(a, b);
});

Deno.test("swarm sim: a server-rich swarm (u_s = 64 MiB/s) still reaches ≤ 1.2 × bound", () => {
  const o = simulateSwarm(flashCrowd({ peers: 8, serverUpBytesPerSec: 64 * MiB }));
  assert.ok(o.finished);
  assert.ok(o.ratio <= 1.2, `ratio ${o.ratio.toFixed(3)}`);
});

Deno.test("swarm sim: why the seed coordinates — plain fetchers overload it, fetcher-side rules idle it", () => {
  const naive = simulateSwarm(flashCrowd({ peers: 8, seedMode: "naive" }));
  assert.ok(naive.serverShare > 1.2, `naive server ${naive.serverShare.toFixed(3)} F`);
  const rich = flashCrowd({ peers: 8, serverUpBytesPerSec: 64 * MiB, seedMode: "fetcher" });
  const fetcher = simulateSwarm(rich);
  assert.ok(fetcher.ratio > 1.5, `fetcher-coordinated ratio ${fetcher.ratio.toFixed(3)}`);
});

Deno.test("swarm sim: 200 fetchers in a flash crowd finish within 1.25 × bound", () => {
  const o = simulateSwarm(flashCrowd({ peers: 200 }));
  assert.ok(o.finished);
  assert.equal(o.badAccepted, 0);
  assert.ok(o.ratio <= 1.25, `ratio ${o.ratio.toFixed(3)}`);
  assert.ok(o.serverShare <= 1.3, `server ${o.serverShare.toFixed(3)} F`);
});

Deno.test("swarm sim: 20 % leave mid-download, arrivals staggered — nobody stalls", () => {
  const sc = churnCrowd({ peers: 100 });
  const o = simulateSwarm(sc);
  assert.ok(o.finished);
  const stayed = o.peers.filter((p) => Number.isNaN(p.leftMs));
  assert.equal(stayed.length, 80);
  for (const p of stayed) {
    assert.ok(p.doneMs - p.arriveMs <= 2 * o.boundMs, `took ${p.doneMs - p.arriveMs} ms`);
    assert.ok(p.longestStallMs <= 4000, `stalled ${p.longestStallMs} ms`);
  }
});

for (const liar of ["corrupt", "phantom", "silent"] as const) {
  Deno.test(`swarm sim: a ${liar} peer costs a few pieces at most and nothing bad is accepted`, () => {
    const honest = flashCrowd({ peers: 30 });
    const base = simulateSwarm(honest);
    const o = simulateSwarm(withLiars(honest, 1, liar));
    assert.ok(o.finished);
    assert.equal(o.badAccepted, 0);
    for (const p of o.peers.filter((p) => !p.liar)) assert.ok(p.badReceived <= 2);
    assert.ok(o.lastDoneMs <= base.lastDoneMs * 1.1, `${o.lastDoneMs} vs ${base.lastDoneMs}`);
  });
}
