/**
 * `udpget tracker` as a user runs it: a real process on an ephemeral loopback port, spoken to
 * over real sockets.
 */

import assert from "node:assert/strict";
import { splitCompactPeer } from "../../lib/tracker/bep15_packet.ts";
import { DEFAULT_SWARM_LIMITS } from "../../lib/tracker/swarm_table.ts";
import { MAIN, RUN_FLAGS, tempDir } from "../harness.ts";
import { startTracker, TrackerClient, type TrackerProcess } from "./tracker_process.ts";
import { withTimeout } from "../../lib/io/timer.ts";

/** SIGHUP to `tracker`; true once it prints `line` (within 10 s). */
async function reloaded(tracker: TrackerProcess, line: RegExp): Promise<boolean> {
  tracker.kill("SIGHUP");
  return await withTimeout(tracker.until(line), 10_000) === true;
}

const HASH = new Uint8Array(20).fill(0x5a);

Deno.test("tracker process: peers meet, scrape counts, stopped removes, SIGTERM ends it cleanly", async () => {
  const tracker = await startTracker();
  const a = new TrackerClient(tracker.port);
  const b = new TrackerClient(tracker.port);
  try {
    assert.match(tracker.output(), /^udpget tracker: listening on udp 127\.0\.0\.1:\d+ \(BEP 15; /);
    const first = await a.announce({ infoHash: HASH, left: 0n, port: 51001 });
    assert.ok(first?.action === "announce", JSON.stringify(first));
    assert.deepEqual([first.peers.length, first.seeders, first.leechers], [0, 1, 0]);
    const second = await b.announce({ infoHash: HASH, port: 51002 });
    assert.ok(second?.action === "announce");
    assert.deepEqual(second.peers.map(splitCompactPeer), [
      { address: new Uint8Array([127, 0, 0, 1]), port: 51001 },
    ]);
    const { downloadingIntervalS, seededIntervalS } = DEFAULT_SWARM_LIMITS;
    assert.equal(
      second.interval,
      downloadingIntervalS,
      "a swarm with a leecher: the short interval",
    );
    const counts = await a.scrape([HASH]);
    assert.ok(counts?.action === "scrape");
    assert.deepEqual(counts.entries, [{ seeders: 1, completed: 0, leechers: 1 }]);
    const done = await b.announce({ infoHash: HASH, port: 51002, event: "completed", left: 0n });
    assert.ok(
      done?.action === "announce" && done.interval === seededIntervalS,
      "all seeders: long",
    );
    await a.announce({ infoHash: HASH, port: 51001, event: "stopped", left: 0n });
    const after = await b.scrape([HASH]);
    assert.ok(after?.action === "scrape");
    assert.deepEqual(after.entries, [{ seeders: 1, completed: 1, leechers: 0 }]);
  } finally {
    a.close();
    b.close();
    const status = await tracker.stop("SIGTERM");
    assert.equal(status.code, 0, tracker.output());
  }
  assert.match(tracker.output(), /stopped: 4 announces, 2 scrapes, 6 connects, 0 errors sent/);
});

Deno.test("tracker process: whitelist refuses other info-hashes, SIGHUP reloads it; bad files are usage errors", async () => {
  const dir = await tempDir();
  const list = `${dir.path}/whitelist.txt`;
  await Deno.writeTextFile(list, `# allowed\n${"5A".repeat(20)}\n\n`);
  const tracker = await startTracker(["--whitelist", list]);
  const c = new TrackerClient(tracker.port);
  try {
    assert.match(tracker.output(), /whitelist of 1 info-hashes/);
    const ok = await c.announce({ infoHash: HASH });
    assert.equal(ok?.action, "announce");
    const refused = await c.announce({ infoHash: new Uint8Array(20).fill(1) });
    assert.ok(refused?.action === "error" && refused.message === "info-hash not allowed");
    // SIGHUP reads the file again: the new hash is served, without a restart
    await Deno.writeTextFile(list, `${"5a".repeat(20)}\n${"01".repeat(20)}\n`);
    assert.ok(
      await reloaded(tracker, /whitelist reloaded: 2 info-hashes/),
      tracker.output(),
    );
    const now = await c.announce({ infoHash: new Uint8Array(20).fill(1) });
    assert.equal(now?.action, "announce");
    // a broken file keeps what was loaded
    await Deno.writeTextFile(list, "not-a-hash\n");
    assert.ok(await reloaded(tracker, /loaded before stays/), tracker.output());
    const still = await c.announce({ infoHash: new Uint8Array(20).fill(1) });
    assert.equal(still?.action, "announce");
  } finally {
    c.close();
    await tracker.stop();
  }
  try {
    await Deno.writeTextFile(list, `${"5a".repeat(20)}\nnot-a-hash\n`);
    const bad = await run(["tracker", "0", "--host", "127.0.0.1", "--whitelist", list]);
    assert.equal(bad.code, 2);
    assert.match(
      bad.stderr,
      /whitelist .*whitelist\.txt:2: expected an info-hash of 40 hex digits/,
    );
    const missing = await run(["tracker", "0", "--whitelist", `${dir.path}/none`]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /cannot read whitelist/);
    const usage = await run(["tracker", "0", "--host", "example.org"]);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /tracker: --host takes an IPv4 or IPv6 address/);
  } finally {
    await dir.cleanup();
  }
});

Deno.test("tracker process: a port in use is exit 6, as for serve", async () => {
  const taken = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  try {
    const port = (taken.addr as Deno.NetAddr).port;
    const r = await run(["tracker", String(port), "--host", "127.0.0.1"]);
    assert.equal(r.code, 6, r.stderr);
    assert.match(r.stderr, new RegExp(`tracker: cannot listen on 127\\.0\\.0\\.1:${port}: `));
  } finally {
    taken.close();
  }
});

async function run(args: string[]): Promise<{ code: number; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [...RUN_FLAGS, MAIN, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
}
