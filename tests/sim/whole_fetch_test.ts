import assert from "node:assert/strict";
import {
  simulateWholeFetch,
  type WholeFetchScenario,
  type WholeSimServer,
} from "../../lib/sim/fetch_simulation.ts";
import type { LinkSpec } from "../../lib/sim/link.ts";

const MiB = 1 << 20;

/** One direction of a WAN path: rate, 25 ms each way (50 ms RTT), a BDP of queue. */
function wan(mbit: number, loss: number, extra: Partial<LinkSpec> = {}): LinkSpec {
  const rateBps = mbit * 1e6;
  return { rateBps, delayMs: 25, queueBytes: rateBps / 8 * 0.05, loss, ...extra };
}

function mirrors(n: number, mbit: number, loss: number): WholeSimServer[] {
  return Array.from({ length: n }, () => ({ down: wan(mbit, loss), up: wan(mbit, loss) }));
}

function scenario(size: number, servers: WholeSimServer[], seed = 1): WholeFetchScenario {
  return { seed, size, pieceSize: MiB, servers };
}

Deno.test("whole sim: from nothing (a name and 3 servers): discovery, probe, hash list, transfer; every byte right", () => {
  const o = simulateWholeFetch(scenario(16 * MiB, mirrors(3, 50, 0), 31));
  assert.ok(o.finished, o.error?.message);
  assert.ok(o.correct);
  // the probe found one Ethernet frame's worth (MTU 1500), never relying on fragmentation
  assert.equal(o.blockSize, 1444);
  assert.equal(o.verification, "pieces", "the hash list hashed to the agreed root");
  assert.deepEqual(
    o.phases,
    ["discovery", "output", "probe", "prepare", "transfer", "digest", "finished"],
  );
  assert.deepEqual(o.servers.map((s) => s.status), ["used", "used", "used"]);
  assert.ok(o.sources.every((s) => s.bytes > 0), JSON.stringify(o.sources));
  assert.deepEqual(o.notices, []);
});

Deno.test("whole sim: 3 % loss both ways on every path: every request machine retries, the file is right", () => {
  const o = simulateWholeFetch(scenario(32 * MiB, mirrors(3, 50, 0.03), 32));
  assert.ok(o.finished, o.error?.message);
  assert.ok(o.correct);
  assert.equal(o.blockSize, 1444);
  assert.equal(o.verification, "pieces");
  assert.ok(o.sources.every((s) => s.alive && s.bytes > 0), JSON.stringify(o.sources));
});

Deno.test("whole sim: a jumbo-frame path gets jumbo blocks", () => {
  const servers = mirrors(2, 200, 0).map((s) => ({
    down: { ...s.down, mtu: 9000 },
    up: { ...s.up, mtu: 9000 },
  }));
  const o = simulateWholeFetch(scenario(8 * MiB, servers, 33));
  assert.ok(o.finished && o.correct, o.error?.message);
  assert.equal(o.blockSize, 8944);
});

for (const [where, delayMs] of [["first", 5], ["last", 200]] as const) {
  Deno.test(`whole sim: a server that disagrees on the metadata (answering ${where}) is left out`, () => {
    const servers = mirrors(3, 50, 0.01);
    servers[1] = {
      down: { ...servers[1].down, delayMs },
      up: { ...servers[1].up, delayMs },
      versionSeed: 99,
    };
    const o = simulateWholeFetch(scenario(8 * MiB, servers, 34));
    assert.ok(o.finished, o.error?.message);
    assert.ok(o.correct, "the majority's version, not a mix");
    assert.equal(o.servers[1].status, "left_out");
    assert.match(
      o.servers[1].reason ?? "",
      /^another version \(8388608 bytes, sha256 [0-9a-f]{16}…\)$/,
    );
    assert.ok(
      o.notices.some((l) => /^udpget: 192\.0\.2\.2:9000: left out, it has another version/.test(l)),
    );
    assert.ok(o.sources.every((s) => s.server !== 1), "never a source");
    assert.deepEqual([o.servers[0].status, o.servers[2].status], ["used", "used"]);
  });
}

Deno.test("whole sim: a server answering after the majority joins the transfer late", () => {
  const servers = mirrors(3, 50, 0);
  // a 300 ms round trip: its answer comes after the other two settled the version, and after
  // its first attempt timed out (250 ms), while the transfer is under way
  servers[2] = { down: wan(50, 0, { delayMs: 150 }), up: wan(50, 0, { delayMs: 150 }) };
  const o = simulateWholeFetch(scenario(16 * MiB, servers, 35));
  assert.ok(o.finished && o.correct, o.error?.message);
  const late = o.sources.find((s) => s.server === 2);
  assert.ok(late, "it became a source");
  assert.equal(late.source, 2, "after the two that settled the version");
  assert.ok(late.bytes > 0, "and delivered");
  assert.equal(o.servers[2].status, "used");
});

Deno.test("whole sim: a dead server is said once discovery gives up on it, beside the transfer", () => {
  const servers = mirrors(3, 50, 0);
  servers[0] = { ...servers[0], down: { ...servers[0].down, loss: 1 } };
  // (4 attempts from 250 ms: given up 3.75 s in, while the other two carry the 5 s transfer)
  const o = simulateWholeFetch(scenario(64 * MiB, servers, 36));
  assert.ok(o.finished && o.correct, o.error?.message);
  assert.deepEqual(o.servers[0], { status: "silent", reason: "no answer" });
  assert.ok(o.notices.includes("udpget: 192.0.2.1:9000: no answer"), o.notices.join("\n"));
  assert.ok(o.sources.every((s) => s.server !== 0));
});

Deno.test("whole sim: servers still hashing the file answer BUSY; the fetch waits for them and counts the wait", () => {
  const servers = mirrors(3, 50, 0).map((s) => ({ ...s, hashingMs: 1500 }));
  const o = simulateWholeFetch(scenario(4 * MiB, servers, 40));
  assert.ok(o.finished && o.correct, o.error?.message);
  // first BUSY one round trip in, answered once hashed: about 1.45 s of waiting
  assert.ok(o.hashWaitMs > 1400 && o.hashWaitMs < 1800, `waited ${o.hashWaitMs} ms`);
  assert.ok(o.simMs > 1500);
});

Deno.test("whole sim: no piece hashes to be had: the whole file is checked against its digest", () => {
  const servers = mirrors(2, 50, 0).map((s) => ({ ...s, noHashes: true }));
  const o = simulateWholeFetch(scenario(4 * MiB, servers, 37));
  assert.ok(o.finished && o.correct, o.error?.message);
  assert.equal(o.verification, "full");
});

Deno.test("whole sim: one server against one: no majority, exit 5, nothing fetched", () => {
  const servers: WholeSimServer[] = mirrors(2, 50, 0);
  servers[1] = { ...servers[1], versionSeed: 7 };
  const o = simulateWholeFetch(scenario(2 * MiB, servers, 38));
  assert.equal(o.finished, false);
  assert.equal(o.error?.exitCode, 5);
  assert.match(o.error?.message ?? "", /no version has a majority/);
  assert.equal(o.sources.length, 0);
});

Deno.test("whole sim: the same seed replays the same whole fetch", () => {
  const sc = scenario(4 * MiB, mirrors(3, 50, 0.03), 39);
  const a = simulateWholeFetch(sc);
  const b = simulateWholeFetch(sc);
  assert.ok(a.finished && a.correct);
  assert.equal(a.simMs, b.simMs);
  assert.equal(a.rerequested, b.rerequested);
  assert.deepEqual(a.notices, b.notices);
});
