/**
 * The swarm with the product's real code in the loop (`lib/sim/swarm/real_swarm_sim.ts`): real
 * fetch coordinators, swarm nodes, peer shares, serve cores, first-copy ledger and BEP 15 tracker
 * over simulated links. Bounds were set from measured runs (seeds fixed, so every run is the same)
 * with a margin; the figures measured are in each test's name or comment.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  MiB,
  realFlashCrowd,
  realSwarmBoundMs,
  type RealSwarmOutcome,
  type RealSwarmScenario,
  simFetcherHost,
  simulateRealSwarm,
} from "../../../lib/sim/swarm/real_swarm_sim.ts";
import { parseIpv4 } from "../../../lib/io/udp/peer_address.ts";

/** 64 KiB pieces, 16 KiB blocks. */
const SMALL_PIECES = { pieceBytes: 64 << 10, blockSize: 16 << 10 };

/** Fraction of all fetchers' new bytes that came from peers. */
function peerFraction(o: RealSwarmOutcome): number {
  const peers = o.fetchers.reduce((t, f) => t + f.fromPeers, 0);
  const server = o.fetchers.reduce((t, f) => t + f.fromServer, 0);
  return peers / (peers + server);
}

function figures(o: RealSwarmOutcome): string {
  return `last ${o.lastDoneMs.toFixed(0)} ms = ${o.ratio.toFixed(2)} × bound, server ` +
    `${o.serverShare.toFixed(2)} F, peers ${(100 * peerFraction(o)).toFixed(0)} %`;
}

/** Two fetchers of an N = 8 crowd vanish mid-way (at 1.0 s and 1.5 s; the bound is 2 s). */
function churn(seed: number): RealSwarmScenario {
  const sc = realFlashCrowd({ peers: 8, seed, ...SMALL_PIECES });
  sc.fetchers[6].leaveMs = 1000;
  sc.fetchers[7].leaveMs = 1500;
  return sc;
}

Deno.test("real swarm: the bound is max(F/u_s, N·F/(u_s + N·u_i))", () => {
  assert.equal(realSwarmBoundMs(realFlashCrowd({ peers: 8 })), 2000);
  assert.equal(realSwarmBoundMs(realFlashCrowd({ peers: 8, serverUpBytesPerSec: 64 * MiB })), 1000);
});

Deno.test("real swarm: one fetcher alone takes ≤ 1.1 × F/u_s from a capped server (seed 1: 1.01)", () => {
  const o = simulateRealSwarm(realFlashCrowd({ peers: 1, seed: 1 }));
  assert.ok(o.finished && o.allCorrect);
  assert.ok(o.ratio <= 1.1, figures(o));
  assert.ok(o.serverShare <= 1.1, figures(o));
  assert.equal(o.fetchers[0].fromPeers, 0);
});

Deno.test("real swarm: N = 8, 64 KiB pieces — all correct, server ≤ 1.2 F, ≥ 75 % from peers, last ≤ 1.2 × bound (seed 1: 1.05×, 1.00 F)", () => {
  const o = simulateRealSwarm(realFlashCrowd({ peers: 8, seed: 1, ...SMALL_PIECES }));
  assert.ok(o.finished, figures(o));
  assert.ok(o.allCorrect);
  for (const f of o.fetchers) {
    assert.ok(f.correct);
    assert.equal(f.error, undefined);
    assert.ok(f.fromPeers > 0 && f.uploaded > 0, "every fetcher takes from peers and shares");
  }
  assert.ok(o.serverShare <= 1.2, figures(o));
  assert.ok(peerFraction(o) >= 0.75, figures(o));
  assert.ok(o.ratio <= 1.2, figures(o));
  assert.ok(o.serverGivenOut > 0, "the first-copy ledger answered GIVEN_OUT");
});

Deno.test("real swarm: N = 8, 256 KiB pieces — all correct, server ≤ 1.2 F, last ≤ 1.35 × bound (seed 1: 1.14×, 1.08 F)", () => {
  // 64 pieces in a 2 s bound: the last pieces' relay (a piece is shared only once verified) is a
  // large part of so short a run
  const o = simulateRealSwarm(realFlashCrowd({ peers: 8, seed: 1 }));
  assert.ok(o.finished && o.allCorrect, figures(o));
  assert.ok(o.serverShare <= 1.2, figures(o));
  assert.ok(o.ratio <= 1.35, figures(o));
  assert.ok(peerFraction(o) >= 0.75, figures(o));
});

Deno.test("real swarm: two of 8 vanish mid-way — the 6 others finish correct within 1.4 × bound (seeds 1–3: 1.04, 1.34, 1.08×; seeds 4–8: 1.06–1.07)", () => {
  // a leaver is asked nothing, and no longer keeps the servers off its pieces, once it has been
  // silent 0.5 s while asked (dropped after 1.5 s). Before that, a piece the server gave a
  // leaver just before it left waited for its death: seeds 1–3 at 1.53, 1.52, 2.02×, 4–8 at
  // 1.28–1.53× (with 3 s of silence before a peer was dropped, seed 1 at 2.34×)
  for (const seed of [1, 2, 3]) {
    const o = simulateRealSwarm(churn(seed));
    const stayed = o.fetchers.filter((f) => Number.isNaN(f.leftMs));
    assert.equal(stayed.length, 6);
    assert.ok(o.finished, `seed ${seed}: ${figures(o)}`);
    for (const f of stayed) assert.ok(f.correct);
    assert.ok(o.ratio <= 1.4, `seed ${seed}: ${figures(o)}`);
  }
});

Deno.test("real swarm: 20 arrive over 1.4 s and 4 of them leave mid-way — nobody stalls: each is done within 1.4 × F/u_s of its arrival (seeds 1–3: at most 1.31, 1.26, 1.31; 1.31, 1.44, 1.50 before quiet peers were asked nothing)", () => {
  for (const seed of [1, 2, 3]) {
    const sc = realFlashCrowd({ peers: 20, seed, fileBytes: 8 * MiB, ...SMALL_PIECES });
    sc.fetchers = sc.fetchers.map((f, i) => ({
      ...f,
      arriveMs: 75 * i,
      ...(i % 5 === 2 ? { leaveMs: 700 + 60 * i } : {}), // (20 %: 820–1 720 ms, none done)
    }));
    const o = simulateRealSwarm(sc);
    const stayed = o.fetchers.filter((f) => Number.isNaN(f.leftMs));
    assert.equal(stayed.length, 16);
    assert.ok(o.finished, `seed ${seed}: ${figures(o)}`);
    const alone = 1000 * sc.fileBytes / sc.serverUpBytesPerSec;
    for (const f of stayed) {
      assert.ok(f.correct);
      const took = f.doneMs - f.arriveMs;
      assert.ok(took <= 1.4 * alone, `seed ${seed}: arrived ${f.arriveMs} ms, took ${took} ms`);
    }
  }
});

Deno.test("real swarm: two liars among 12 (every byte they share inverted) — each costs every honest fetcher a piece or two, nothing wrong lands", () => {
  const sc = realFlashCrowd({ peers: 12, fileBytes: 8 * MiB, ...SMALL_PIECES });
  sc.fetchers[0].lies = true;
  sc.fetchers[1].lies = true;
  const o = simulateRealSwarm(sc);
  const honest = o.fetchers.slice(2);
  assert.ok(o.finished, figures(o));
  for (const f of honest) {
    assert.ok(f.correct, "the honest fetchers' files are the file");
    // (a piece from a liar fails its hash, and the liar is excluded at once; pieces it had in
    // flight to the same fetcher by then fail too: seed 1, one fetcher lost 3 pieces, 9 lost 2)
    assert.ok(f.badPieces <= 4, `bad pieces: ${honest.map((h) => h.badPieces)}`);
    const excluded = f.notices.filter((l) => /excluded: sent a piece that failed its hash/.test(l));
    assert.ok(excluded.every((l) => /10\.0\.1\.[12]:/.test(l)), excluded.join("\n"));
  }
  assert.ok(honest.some((f) => f.badPieces > 0), "the liars did send something");
  // (the bound counts the liars' uploads as help, which they are not: 10 of 12 share)
  assert.ok(o.ratio <= 2, figures(o));
});

Deno.test("real swarm: peers far apart (25–75 ms one way) — all correct, ≥ 85 % from peers, server ≤ 1.2 F, last ≤ 1.7 × bound (seed 1: 1.41×; 1–5 ms: 1.21×)", () => {
  const o = simulateRealSwarm(realFlashCrowd({
    peers: 16,
    pieceBytes: 256 << 10,
    blockSize: 64 << 10,
    minDelayMs: 25,
    maxDelayMs: 75,
  }));
  assert.ok(o.finished && o.allCorrect, figures(o));
  assert.ok(peerFraction(o) >= 0.85, figures(o));
  assert.ok(o.serverShare <= 1.2, figures(o));
  assert.ok(o.ratio <= 1.7, figures(o));
});

Deno.test("real swarm: peers far apart on lossy paths (25–75 ms one way, 1 % of IP packets lost) — all correct, within 3 × bound (seed 1: 2.41×, 2.02× without loss)", () => {
  // 4 MiB in a 0.5 s bound across paths of up to 150 ms round trip: the round trips, not the
  // uploads, set the pace; the losses cost another fifth (seeds 2–3: 2.50, 3.86× against 2.02,
  // 2.40× without)
  const sc = realFlashCrowd({
    peers: 8,
    fileBytes: 4 * MiB,
    pieceBytes: 64 << 10,
    blockSize: 1444,
    minDelayMs: 25,
    maxDelayMs: 75,
  });
  sc.loss = 0.01;
  const o = simulateRealSwarm(sc);
  assert.ok(o.finished && o.allCorrect, figures(o));
  for (const f of o.fetchers) assert.equal(f.error, undefined);
  assert.ok(o.ratio <= 3, figures(o));
});

Deno.test("real swarm: a late joiner takes the file from 8 seeding peers at ≤ 1.4 × F/(8·u_i) (seed 1: 303 ms against 250)", () => {
  // (the list trusted, the peers it met before join the transfer at once: waiting for the
  // once-a-second retry, it took 382 ms and the server's bytes)
  const sc = realFlashCrowd({ peers: 9, pieceBytes: 256 << 10, blockSize: 64 << 10 });
  sc.fetchers[8].arriveMs = 4000; // (the others are done by 2.4 s)
  const o = simulateRealSwarm(sc);
  const late = o.fetchers[8];
  assert.ok(o.finished && late.correct, figures(o));
  const ideal = 1000 * sc.fileBytes / (8 * sc.peerUpBytesPerSec);
  const took = late.doneMs - late.arriveMs;
  assert.ok(took <= 1.4 * ideal, `took ${took} ms, ideal ${ideal} ms`);
  assert.ok(late.fromPeers >= 0.9 * sc.fileBytes, `from peers: ${late.fromPeers}`);
});

Deno.test("real swarm: 2000 fetchers have 2000 distinct, valid IPv4 addresses, none the server's or the tracker's", () => {
  const hosts = Array.from({ length: 2000 }, (_, i) => simFetcherHost(i));
  assert.equal(simFetcherHost(0), "10.0.1.1");
  assert.equal(simFetcherHost(253), "10.0.1.254", "the first 254 as before");
  assert.equal(new Set(hosts).size, 2000);
  for (const h of hosts) {
    assert.ok(parseIpv4(h) !== undefined, h);
    assert.ok(h !== "10.0.0.1" && h !== "10.0.0.2" && !h.endsWith(".0") && !h.endsWith(".255"), h);
  }
});

Deno.test("real swarm: the same seed replays exactly, another seed differs", () => {
  const sc = realFlashCrowd({ peers: 4, seed: 7, ...SMALL_PIECES });
  const a = simulateRealSwarm(sc);
  const b = simulateRealSwarm(structuredClone(sc));
  assert.deepEqual(a, b);
  const c = simulateRealSwarm({ ...sc, seed: 8 });
  assert.ok(c.finished && c.allCorrect);
  assert.notEqual(c.lastDoneMs, a.lastDoneMs);
});

Deno.test("real swarm: N = 32 — every fetcher shares, little is wasted or asked twice, last ≤ 1.3 × bound (seed 1: 1.12×, 1.01 F)", () => {
  // the failure modes of the first real-code runs at this size (1.88×): peers' queues of half a
  // second and requests declared lost in them (16 F asked again, 21 F of copies), second copies
  // from peers before the end game, one late fetcher that nobody met and that uploaded nothing
  const o = simulateRealSwarm(realFlashCrowd({ peers: 32, seed: 1, ...SMALL_PIECES }));
  assert.ok(o.finished && o.allCorrect, figures(o));
  const total = (pick: (f: RealSwarmOutcome["fetchers"][number]) => number) =>
    o.fetchers.reduce((t, f) => t + pick(f), 0) / (16 * MiB);
  assert.ok(o.fetchers.every((f) => f.uploaded > 0), "every fetcher was met and shared");
  assert.ok(total((f) => f.peerWaste) <= 1.6, `peer copies wasted: ${total((f) => f.peerWaste)} F`);
  assert.ok(total((f) => f.rerequested) <= 1.6, `asked again: ${total((f) => f.rerequested)} F`);
  assert.ok(o.serverShare <= 1.2, figures(o));
  assert.ok(o.ratio <= 1.3, figures(o));
});

Deno.test("real swarm: a crowd on a slow server — replies count toward --rate, so every fetcher gets its hash list and all finish within 2 × bound (seed 1: 1.64×)", () => {
  // 12 fetchers, 32 KiB/s, 64 hashes each: their hash lists (24 KiB) on top of data paced at the
  // full rate left a queue on the server's link that drained only as fast as its 5 % headroom,
  // so replies came seconds late: 3 fetchers went on without the piece hashes and the swarm
  // was not done in 120 s
  slowServerCrowd(12, 256 << 10, 4 << 10, 4 << 10);
});

Deno.test("real swarm: N = 200, a flash crowd of 32 MiB in 256 KiB pieces (a 4 s bound) — all correct, ≥ 99 % from peers, server ≤ 1.2 F, last ≤ 1.25 × bound (seeds 1–3: 1.203, 1.208, 1.213×; 1.10–1.12 F)", () => {
  // the goal, in the 256 KiB pieces `serve` picks for scenario F. A shorter bound costs
  // more, not because peers upload less but because a few fixed latencies weigh more in it: the
  // metadata and the piece hashes (tens of ms), each relay hop of a piece fresh from the server
  // (its news, the holder's queue, the send: tens of ms, eight doublings to reach 200). Of 8 MiB
  // in 64 KiB pieces (1 s): 1.31 / 1.33 × at seeds 1 / 2 — 1.39× before rare pieces were told
  // of at once and sent first, 1.51× before have polls were held and askers given room for 40,
  // 1.59× before the hash lists came from peers (`deno run -A bench/real_swarm_sim.ts --peers
  // 200 --mib 8 --piece-kib 64 --block-kib 64`); of 64 MiB (8 s) 1.14× (`BENCH_ONLY=RS deno
  // task bench`)
  const o = simulateRealSwarm(realFlashCrowd({
    peers: 200,
    seed: 1,
    fileBytes: 32 * MiB,
    pieceBytes: 256 << 10,
    blockSize: 64 << 10,
  }));
  assert.ok(o.finished && o.allCorrect, figures(o));
  for (const f of o.fetchers) assert.equal(f.error, undefined);
  assert.ok(peerFraction(o) >= 0.99, figures(o));
  assert.ok(o.serverShare <= 1.2, figures(o));
  assert.ok(o.ratio <= 1.25, figures(o));
  // the server sends the piece hashes to a few (8 × 4 ranges: 32 replies; 800 when each of the
  // 200 asked it), the rest take them from their peers (PROTOCOL.md §10.7)
  assert.ok(o.serverHashReplies <= 48, `the server sent ${o.serverHashReplies} hash replies`);
});

Deno.test("real swarm: a crowd on a server whose pieces take a second — runs timed before the replies wait for them, so every fetcher gets its hash list and all finish within 2 × bound (seed 1: 1.52×)", () => {
  // 16 fetchers, 32 KiB/s, 32 KiB pieces: a request's runs are timed when it is taken, a second
  // ahead; the hash lists charged meanwhile used to queue behind them on the link, came seconds
  // late, and 2 fetchers went on without them (3.5 × the bound)
  slowServerCrowd(16, 1 * MiB, 32 << 10, 8 << 10);
});

/**
 * `peers` fetchers of a `fileBytes` file on a 32 KiB/s server (and 32 KiB/s peers): all finish
 * correct, within 2 × the bound, and none goes on without the piece hashes.
 */
function slowServerCrowd(peers: number, fileBytes: number, pieceBytes: number, blockSize: number) {
  const rate = 32 << 10;
  const o = simulateRealSwarm(realFlashCrowd({
    peers,
    seed: 1,
    fileBytes,
    pieceBytes,
    blockSize,
    serverUpBytesPerSec: rate,
    peerUpBytesPerSec: rate,
  }));
  assert.ok(o.finished && o.allCorrect, figures(o));
  for (const f of o.fetchers) {
    assert.ok(!f.notices.some((n) => n.includes("piece hashes")), f.notices.join("; "));
  }
  assert.ok(o.ratio <= 2, figures(o));
}
