import assert from "node:assert/strict";
import {
  type FetchScenario,
  idealMs,
  type SimServer,
  simulateFetch,
} from "../../lib/sim/fetch_simulation.ts";
import type { LinkSpec } from "../../lib/sim/link.ts";

const MiB = 1 << 20;

/** One direction of a WAN path: rate, 25 ms each way (50 ms RTT), a BDP of queue. */
function wan(mbit: number, loss: number, extra: Partial<LinkSpec> = {}): LinkSpec {
  const rateBps = mbit * 1e6;
  return { rateBps, delayMs: 25, queueBytes: rateBps / 8 * 0.05, loss, ...extra };
}

function mirrors(n: number, mbit: number, loss: number, extra: Partial<SimServer> = {}) {
  return Array.from({ length: n }, () => ({
    down: wan(mbit, loss),
    up: wan(mbit, loss),
    ...extra,
  }));
}

function scenario(size: number, servers: SimServer[], seed = 1): FetchScenario {
  return { seed, size, pieceSize: MiB, blockSize: 1444, servers };
}

/** Goodput as a share of the ideal (size over Σ rate × (1 − loss)), on simulated time. */
function share(sc: FetchScenario, simMs: number): number {
  return idealMs(sc) / simMs;
}

Deno.test("sim: 256 MiB over 3 × 100 Mbit/s × 50 ms × 3 % loss: every byte right, ≥ 88 % of ideal", () => {
  const sc = scenario(256 * MiB, mirrors(3, 100, 0.03));
  const o = simulateFetch(sc);
  assert.ok(o.finished, o.failure);
  assert.ok(o.correct);
  assert.ok(share(sc, o.simMs) >= 0.88, `share ${share(sc, o.simMs).toFixed(3)}`);
});

for (const [loss, want] of [[0, 0.88], [0.01, 0.88], [0.05, 0.85]] as const) {
  Deno.test(`sim: 128 MiB over 3 × 100 Mbit/s × 50 ms at ${loss * 100} % loss: ≥ ${want * 100} % of ideal`, () => {
    const sc = scenario(128 * MiB, mirrors(3, 100, loss), 2);
    const o = simulateFetch(sc);
    assert.ok(o.finished && o.correct, o.failure);
    assert.ok(share(sc, o.simMs) >= want, `share ${share(sc, o.simMs).toFixed(3)}`);
  });
}

Deno.test("sim: random loss costs about its share: re-requested stays near the loss rate", () => {
  const sc = scenario(64 * MiB, mirrors(3, 100, 0.03), 3);
  const o = simulateFetch(sc);
  assert.ok(o.finished && o.correct);
  // every datagram is lost with 3 %; a lossy path's requests go twice, so a lost request
  // (which would lose all of its blocks) is rare
  assert.ok(o.rerequested / sc.size < 0.045, `re-requested ${o.rerequested / sc.size}`);
});

Deno.test("sim: with requests sent twice, loss on the way to the server costs next to nothing", () => {
  const both = scenario(128 * MiB, mirrors(3, 100, 0.03), 4);
  const downOnly = {
    ...both,
    servers: both.servers.map((s) => ({ ...s, up: { ...s.up, loss: 0 } })),
  };
  const a = share(both, simulateFetch(both).simMs);
  const b = share(downOnly, simulateFetch(downOnly).simMs);
  assert.ok(b - a < 0.01, `3 % both ways ${a.toFixed(3)}, downlink only ${b.toFixed(3)}`);
});

Deno.test("sim: a clean path re-requests under 1 % of the file", () => {
  const sc = scenario(256 * MiB, mirrors(3, 100, 0), 4);
  const o = simulateFetch(sc);
  assert.ok(o.finished && o.correct);
  assert.ok(
    o.rerequested / sc.size < 0.01,
    `re-requested ${(100 * o.rerequested / sc.size).toFixed(2)} %`,
  );
});

Deno.test("sim: servers capped by their own --rate are not mistaken for lossy (< 1 % re-requested)", () => {
  const servers = mirrors(3, 100, 0, { serverRateBps: 10e6 });
  const sc = scenario(32 * MiB, servers, 5);
  const o = simulateFetch(sc);
  assert.ok(o.finished && o.correct);
  assert.ok(
    o.rerequested / sc.size < 0.01,
    `re-requested ${(100 * o.rerequested / sc.size).toFixed(2)} %`,
  );
});

Deno.test("sim: a shallow bottleneck queue: the engine backs off instead of flooding it", () => {
  // a quarter of a BDP of queue: pacing above the rate overflows it at once
  const servers = [{ down: wan(20, 0, { queueBytes: 20e6 / 8 * 0.05 / 4 }), up: wan(20, 0) }];
  const sc = scenario(32 * MiB, servers, 6);
  const o = simulateFetch(sc);
  assert.ok(o.finished && o.correct);
  assert.ok(o.downQueueDrops[0] * 1444 < 0.05 * sc.size, `queue drops ${o.downQueueDrops[0]}`);
  assert.ok(share(sc, o.simMs) >= 0.8, `share ${share(sc, o.simMs).toFixed(3)}`);
});

Deno.test("sim: a 3 s blackhole on every path mid-transfer is survived", () => {
  const outages = [{ from: 1000, to: 4000 }];
  const servers = mirrors(3, 20, 0).map((s) => ({
    down: { ...s.down, outages },
    up: { ...s.up, outages },
  }));
  const sc = scenario(32 * MiB, servers, 7);
  const o = simulateFetch(sc);
  assert.ok(o.finished && o.correct, o.failure);
  assert.ok(o.sources.every((s) => s.alive), JSON.stringify(o.sources));
});

Deno.test("sim: one path dead from the start: the others carry the file, the dead one is dropped", () => {
  const servers = mirrors(3, 50, 0.01);
  servers[1] = { ...servers[1], down: { ...servers[1].down, loss: 1 } };
  const sc = scenario(32 * MiB, servers, 8);
  const o = simulateFetch(sc);
  assert.ok(o.finished && o.correct, o.failure);
  assert.equal(o.sources[1].bytes, 0);
});

Deno.test("sim: a server corrupting blocks is excluded; the file is still right", () => {
  const servers = mirrors(3, 50, 0);
  servers[2] = { ...servers[2], corrupt: 0.05 };
  const sc = scenario(16 * MiB, servers, 9);
  const o = simulateFetch(sc);
  assert.ok(o.finished && o.correct, o.failure);
  assert.equal(o.sources[2].alive, false);
  assert.match(o.sources[2].dropReason ?? "", /failed the hash/);
});

Deno.test("sim: reordering on the path (2 % held back by two blocks) adds < 1 % of re-requests", () => {
  const plain = scenario(16 * MiB, mirrors(2, 50, 0), 10);
  const reordered = scenario(
    16 * MiB,
    plain.servers.map((s) => ({ ...s, down: { ...s.down, reorder: 0.02, reorderMs: 0.5 } })),
    10,
  );
  const a = simulateFetch(plain);
  const b = simulateFetch(reordered);
  assert.ok(b.finished && b.correct);
  const extra = (b.rerequested - a.rerequested) / plain.size;
  assert.ok(extra < 0.01, `re-requested ${a.rerequested} without, ${b.rerequested} with`);
});

Deno.test("sim: the same seed replays the same run", () => {
  const sc = scenario(8 * MiB, mirrors(3, 50, 0.03), 11);
  const a = simulateFetch(sc);
  const b = simulateFetch(sc);
  assert.equal(a.simMs, b.simMs);
  assert.equal(a.rerequested, b.rerequested);
  assert.equal(a.events, b.events);
});

Deno.test("sim: 1 Gbit/s × 10 ms path fills ≥ 85 % of ideal", () => {
  const link = (): LinkSpec => ({ rateBps: 1e9, delayMs: 5, queueBytes: 1e9 / 8 * 0.01, loss: 0 });
  const sc = scenario(128 * MiB, [{ down: link(), up: link() }], 12);
  const o = simulateFetch(sc);
  assert.ok(o.finished && o.correct);
  assert.ok(share(sc, o.simMs) >= 0.85, `share ${share(sc, o.simMs).toFixed(3)}`);
});

Deno.test("sim: 3 × 333 Mbit/s × 10 ms with a client handling arrivals in turns of up to 2 ms: ≥ 90 % of ideal", () => {
  const link = (): LinkSpec => ({
    rateBps: 333e6,
    delayMs: 5,
    queueBytes: 333e6 / 8 * 0.01,
    loss: 0,
  });
  const sc: FetchScenario = {
    ...scenario(128 * MiB, [0, 1, 2].map(() => ({ down: link(), up: link() })), 21),
    clientTurnMs: 2,
  };
  const o = simulateFetch(sc);
  assert.ok(o.finished && o.correct);
  assert.ok(share(sc, o.simMs) >= 0.9, `share ${share(sc, o.simMs).toFixed(3)}`);
});
