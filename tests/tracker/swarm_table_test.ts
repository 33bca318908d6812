import assert from "node:assert/strict";
import fc from "fast-check";
import { seededRandom } from "../../lib/sim/prng.ts";
import { splitCompactPeer } from "../../lib/tracker/bep15_packet.ts";
import {
  type AnnounceOutcome,
  DEFAULT_SWARM_LIMITS,
  type PeerAnnounce,
  type SwarmLimits,
  SwarmTable,
} from "../../lib/tracker/swarm_table.ts";

const HASH = "aa".repeat(20);
const v4 = (last: number) => new Uint8Array([10, 0, 0, last]);
const v6 = (last: number) => {
  const a = new Uint8Array(16);
  a[0] = 0x20;
  a[1] = 0x01;
  a[15] = last;
  return a;
};

function ann(address: Uint8Array, over: Partial<PeerAnnounce> = {}): PeerAnnounce {
  return { infoHash: HASH, address, port: 6881, event: "none", left: 100n, numWant: -1, ...over };
}

function table(over: Partial<SwarmLimits> = {}, seed = 1): SwarmTable {
  return new SwarmTable({ ...DEFAULT_SWARM_LIMITS, ...over }, seededRandom(seed));
}

function ok(o: AnnounceOutcome) {
  assert.ok(o.ok);
  return o;
}

/** The peers of an outcome as "a.b.c.d:port" (IPv4) or "last-byte:port" (IPv6). */
function peersOf(o: AnnounceOutcome, size = 6): string[] {
  const r = ok(o);
  const out: string[] = [];
  for (let at = 0; at < r.peers.length; at += size) {
    const { address, port } = splitCompactPeer(r.peers.subarray(at, at + size));
    out.push(`${size === 6 ? address.join(".") : address[15]}:${port}`);
  }
  return out.sort();
}

Deno.test("swarm: a second peer gets the first, never itself; counts and intervals", () => {
  const t = table();
  const first = ok(t.announce(ann(v4(1), { event: "started", left: 0n }), 0));
  assert.deepEqual(peersOf(first), [], "alone: nobody, not itself");
  assert.equal(first.seeders, 1);
  assert.equal(first.interval, DEFAULT_SWARM_LIMITS.seededIntervalS, "everyone seeds: long");
  const second = t.announce(ann(v4(2), { event: "started" }), 1);
  assert.deepEqual(peersOf(second), ["10.0.0.1:6881"]);
  assert.deepEqual([ok(second).seeders, ok(second).leechers], [1, 1]);
  assert.equal(
    ok(second).interval,
    DEFAULT_SWARM_LIMITS.downloadingIntervalS,
    "downloading: short",
  );
  // the seeder's next announce gets the leecher, and the short interval
  const again = t.announce(ann(v4(1), { left: 0n }), 2);
  assert.deepEqual(peersOf(again), ["10.0.0.2:6881"]);
  assert.equal(ok(again).interval, DEFAULT_SWARM_LIMITS.downloadingIntervalS);
  // same address, another port: another peer (two clients behind one address)
  assert.deepEqual(peersOf(t.announce(ann(v4(1), { port: 7000 }), 3)), [
    "10.0.0.1:6881",
    "10.0.0.2:6881",
  ]);
  assert.equal(t.peerCount, 3);
});

Deno.test("swarm: completed counts once and makes a seeder; stopped removes at once", () => {
  const t = table();
  t.announce(ann(v4(1), { event: "started" }), 0);
  t.announce(ann(v4(2), { event: "started" }), 0);
  t.announce(ann(v4(1), { event: "completed", left: 0n }), 1);
  t.announce(ann(v4(1), { event: "completed", left: 0n }), 2); // a repeat is not a second one
  assert.deepEqual(t.scrape(HASH), { seeders: 1, completed: 1, leechers: 1 });
  // completed with left > 0 (a client's rounding) still marks a seeder
  t.announce(ann(v4(2), { event: "completed", left: 5n }), 3);
  assert.deepEqual(t.scrape(HASH), { seeders: 2, completed: 2, leechers: 0 });
  const stopped = ok(t.announce(ann(v4(1), { event: "stopped", left: 0n }), 4));
  assert.deepEqual([stopped.listed, stopped.peers.length, stopped.seeders], [false, 0, 1]);
  assert.deepEqual(t.scrape(HASH), { seeders: 1, completed: 2, leechers: 0 });
  t.announce(ann(v4(2), { event: "stopped" }), 5);
  assert.deepEqual(t.scrape(HASH), { seeders: 0, completed: 2, leechers: 0 });
  assert.equal(t.peerCount, 0);
  // a stopped from a peer the table never saw creates nothing
  t.announce(ann(v4(9), { event: "stopped", infoHash: "bb".repeat(20) }), 6);
  assert.equal(t.swarmCount, 1);
});

Deno.test("swarm: peers expire after 2 intervals + slack; an empty swarm after its TTL", () => {
  const L = DEFAULT_SWARM_LIMITS;
  const t = table();
  t.announce(ann(v4(1)), 0); // leecher: short interval
  t.announce(ann(v4(2), { left: 0n }), 0);
  const ttl = (2 * L.downloadingIntervalS + L.expirySlackS) * 1000;
  assert.equal(t.sweep(ttl - 1), 0);
  t.announce(ann(v4(2), { left: 0n }), ttl - 1); // announces again: stays
  assert.equal(t.sweep(ttl), 1, "the silent one goes");
  assert.deepEqual(t.scrape(HASH), { seeders: 1, completed: 0, leechers: 0 });
  // alone and seeding, it was given the long interval when it announced: gone 2 × 60 + 15 s later
  const seeded = ok(t.announce(ann(v4(2), { left: 0n }), ttl));
  assert.equal(seeded.interval, L.seededIntervalS);
  assert.equal(t.sweep(ttl + (2 * L.seededIntervalS + L.expirySlackS) * 1000 - 1), 0);
  const gone = ttl + (2 * L.seededIntervalS + L.expirySlackS) * 1000;
  assert.equal(t.sweep(gone), 1);
  assert.equal(t.swarmCount, 1, "kept while its TTL runs (its completed count with it)");
  t.sweep(gone + L.emptySwarmTtlMs - 1);
  assert.equal(t.swarmCount, 1);
  t.sweep(gone + L.emptySwarmTtlMs);
  assert.equal(t.swarmCount, 0);
});

Deno.test("swarm: caps on swarms, peers per swarm and peers in all", () => {
  const t = table({ maxSwarms: 2, maxPeersPerSwarm: 3, maxPeers: 5 });
  const h = (i: number) => i.toString(16).padStart(40, "0");
  assert.ok(t.announce(ann(v4(1), { infoHash: h(1) }), 0).ok);
  assert.ok(t.announce(ann(v4(1), { infoHash: h(2) }), 0).ok);
  const third = t.announce(ann(v4(1), { infoHash: h(3) }), 0);
  assert.deepEqual(third, { ok: false, why: "swarms_full" });
  for (let i = 2; i <= 5; i++) t.announce(ann(v4(i), { infoHash: h(1) }), 0);
  assert.equal(t.scrape(h(1)).leechers, 3, "3 per swarm");
  const over = ok(t.announce(ann(v4(9), { infoHash: h(1) }), 0));
  assert.equal(over.listed, false);
  assert.equal(peersOf(over).length, 3, "an unlisted announcer still gets peers");
  assert.equal(over.leechers, 4, "and counts itself");
  for (let i = 2; i <= 5; i++) t.announce(ann(v4(i), { infoHash: h(2) }), 0);
  assert.equal(t.peerCount, 5, "5 in all");
  // an emptied swarm makes room for a new one
  t.announce(ann(v4(1), { infoHash: h(2), event: "stopped" }), 1);
  t.announce(ann(v4(2), { infoHash: h(2), event: "stopped" }), 1);
  assert.ok(t.announce(ann(v4(7), { infoHash: h(3) }), 2).ok);
  assert.equal(t.swarmCount, 2);
  // port 0 takes no connections: answered, not listed
  const zero = ok(t.announce(ann(v4(8), { infoHash: h(3), port: 0 }), 3));
  assert.equal(zero.listed, false);
  assert.deepEqual(peersOf(zero), ["10.0.0.7:6881"]);
});

Deno.test("swarm: one address lists at most maxPeersPerAddress peers in a swarm (an IPv6 /64 is one address)", () => {
  const t = table({ maxPeersPerAddress: 3 });
  const port = (p: number) => ({ port: 1000 + p });
  for (let p = 0; p < 3; p++) assert.ok(ok(t.announce(ann(v4(1), port(p)), 0)).listed);
  const fourth = ok(t.announce(ann(v4(1), port(3)), 0));
  assert.equal(fourth.listed, false, "a fourth port of the same address is not listed");
  assert.equal(peersOf(fourth).length, 3, "but it gets peers");
  assert.ok(ok(t.announce(ann(v4(1), port(0)), 0)).listed, "a listed port re-announcing stays");
  assert.ok(ok(t.announce(ann(v4(2), port(0)), 0)).listed, "another address is");
  assert.ok(
    ok(t.announce(ann(v4(1), { ...port(0), infoHash: "bb".repeat(20) }), 0)).listed,
    "so is another swarm",
  );
  // a stopped (or expired) peer frees its address's place
  t.announce(ann(v4(1), { ...port(1), event: "stopped" }), 1);
  assert.ok(ok(t.announce(ann(v4(1), port(3)), 2)).listed);
  // IPv6: the addresses of one /64 share the cap; another /64 has its own
  const sameNet = (last: number) => v6(last);
  for (let i = 1; i <= 3; i++) assert.ok(ok(t.announce(ann(sameNet(i)), 3)).listed);
  assert.equal(ok(t.announce(ann(sameNet(4)), 3)).listed, false);
  const otherNet = v6(5);
  otherNet[7] = 1;
  assert.ok(ok(t.announce(ann(otherNet), 3)).listed);
  // 0: no such cap
  const open = table({ maxPeersPerAddress: 0 });
  for (let p = 0; p < 50; p++) assert.ok(ok(open.announce(ann(v4(1), port(p)), 0)).listed);
});

Deno.test("swarm: numwant: -1 is the default, capped, 0 gives none; choice is random", () => {
  const t = table();
  for (let i = 1; i <= 120; i++) t.announce(ann(new Uint8Array([10, 0, 1, i])), 0);
  const me = v4(250);
  assert.equal(peersOf(t.announce(ann(me, { numWant: -1 }), 1)).length, 50);
  assert.equal(peersOf(t.announce(ann(me, { numWant: 1000 }), 1)).length, 50);
  assert.equal(peersOf(t.announce(ann(me, { numWant: 7 }), 1)).length, 7);
  assert.equal(peersOf(t.announce(ann(me, { numWant: 0 }), 1)).length, 0);
  const seen = new Set<string>();
  for (let i = 0; i < 20; i++) for (const p of peersOf(t.announce(ann(me), 2))) seen.add(p);
  assert.ok(seen.size > 110, `random choice reaches most of the swarm (${seen.size})`);
  assert.ok(!seen.has("10.0.0.250:6881"), "never itself");
});

Deno.test("swarm: a leecher gets seeders for half the places at least; a seeder only leechers", () => {
  const t = table();
  for (let i = 1; i <= 60; i++) t.announce(ann(new Uint8Array([10, 1, 0, i]), { left: 0n }), 0);
  for (let i = 1; i <= 60; i++) t.announce(ann(new Uint8Array([10, 2, 0, i])), 0);
  const leecher = peersOf(t.announce(ann(new Uint8Array([10, 2, 0, 1])), 1));
  assert.equal(leecher.length, 50);
  assert.equal(leecher.filter((p) => p.startsWith("10.1.")).length, 25);
  const seeder = peersOf(t.announce(ann(new Uint8Array([10, 1, 0, 1]), { left: 0n }), 1));
  assert.equal(seeder.length, 50);
  assert.ok(seeder.every((p) => p.startsWith("10.2.")));
  // few leechers: the rest of the places go to seeders
  const small = table();
  for (let i = 1; i <= 10; i++) small.announce(ann(new Uint8Array([10, 1, 0, i]), { left: 0n }), 0);
  small.announce(ann(v4(1)), 0);
  const got = peersOf(small.announce(ann(v4(2)), 1));
  assert.equal(got.length, 11, "all 10 seeders and the other leecher");
});

Deno.test("swarm: IPv4 and IPv6 peers are handed out to their own family, 6 and 18 bytes", () => {
  const t = table();
  t.announce(ann(v4(1)), 0);
  t.announce(ann(v6(1), { port: 51413 }), 0);
  const got4 = ok(t.announce(ann(v4(2)), 1));
  assert.equal(got4.peers.length, 6);
  assert.deepEqual(peersOf(got4), ["10.0.0.1:6881"]);
  const got6 = ok(t.announce(ann(v6(2)), 1));
  assert.equal(got6.peers.length, 18);
  assert.deepEqual(peersOf(got6, 18), ["1:51413"]);
  assert.equal(got6.leechers, 4, "counts cover both families");
});

Deno.test("swarm: any sequence of announces keeps counts consistent and under the caps (property)", () => {
  const limits = { maxSwarms: 3, maxPeersPerSwarm: 4, maxPeers: 7, maxPeersPerAddress: 2 };
  const step = fc.record({
    hash: fc.integer({ min: 0, max: 4 }),
    addr: fc.integer({ min: 0, max: 9 }),
    port: fc.integer({ min: 6881, max: 6884 }),
    six: fc.boolean(),
    event: fc.constantFrom("none", "completed", "started", "stopped" as const),
    left: fc.constantFrom(0n, 1n),
    numWant: fc.integer({ min: -1, max: 60 }),
    dt: fc.integer({ min: 0, max: 40_000 }),
  });
  fc.assert(fc.property(fc.array(step, { maxLength: 80 }), fc.integer(), (steps, seed) => {
    const t = table(limits, seed);
    let now = 0;
    for (const s of steps) {
      now += s.dt;
      const address = s.six ? v6(s.addr) : v4(s.addr);
      const infoHash = String(s.hash).padStart(40, "0");
      const o = t.announce(ann(address, { ...s, infoHash }), now);
      if (s.dt > 20_000) t.sweep(now);
      assert.ok(t.swarmCount <= limits.maxSwarms && t.peerCount <= limits.maxPeers);
      if (!o.ok) continue;
      const size = s.six ? 18 : 6;
      assert.equal(o.peers.length % size, 0);
      const mine = `${s.six ? s.addr : `10.0.0.${s.addr}`}:${s.port}`;
      const listed = peersOf(o, size);
      assert.ok(!listed.includes(mine), "never itself");
      const c = t.scrape(infoHash);
      assert.ok(c.seeders + c.leechers <= limits.maxPeersPerSwarm);
      // the whole swarm, as a port-0 announcer (answered, never listed) sees it: no address
      // (an IPv6 /64: v6() differs in the last byte only) lists more than the cap
      for (const six of [false, true]) {
        const look = ok(t.announce(ann(six ? v6(200) : v4(200), { infoHash, port: 0 }), now));
        const hosts = peersOf(look, six ? 18 : 6).map((p) => six ? "/64" : p.split(":")[0]);
        for (const h of new Set(hosts)) {
          assert.ok(hosts.filter((x) => x === h).length <= limits.maxPeersPerAddress, h);
        }
      }
    }
    const all = [0, 1, 2, 3, 4].map((h) => t.scrape(String(h).padStart(40, "0")));
    assert.equal(all.reduce((n, c) => n + c.seeders + c.leechers, 0), t.peerCount);
    assert.equal(all.reduce((n, c) => n + c.seeders, 0), t.seederCount);
  }));
});
