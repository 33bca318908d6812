import assert from "node:assert/strict";
import { HashListFetch } from "../../lib/engine/hash_list_fetch.ts";
import { ErrorCode, type Packet } from "../../lib/wire/packet.ts";
import { formatBusyRetry } from "../../lib/wire/busy_retry.ts";

function fetcher(
  pieceCount: number,
  servers = [0, 1],
  matchesRoot?: (list: Uint8Array) => boolean,
) {
  let n = 1;
  return new HashListFetch({
    matchesRoot,
    fileId: 5n,
    name: "f",
    pieceCount,
    blockSize: 1444, // 45 hashes per reply
    servers,
    token: () => new Uint8Array(16),
    rtt: () => 50,
    nextRequestId: () => n++,
  });
}

function reply(req: Packet, count: number, fill = 1): Packet {
  if (req.type !== "hashes_request") throw new Error("not a hashes request");
  return {
    type: "hashes_reply",
    requestId: req.requestId,
    fileId: req.fileId,
    firstPiece: req.firstPiece,
    hashes: new Uint8Array(32 * count).fill(fill),
  };
}

Deno.test("hash list: ranges fit one MTU-sized reply, asked in parallel from the servers in turn", () => {
  const h = fetcher(100);
  const sent = [];
  for (let t = h.pollTransmit(0); t; t = h.pollTransmit(0)) sent.push(t);
  assert.equal(sent.length, 3); // 45 + 45 + 10
  assert.deepEqual(sent.map((t) => t.server), [0, 1, 0]);
  for (const t of sent) {
    const p = t.packet as { count: number };
    h.handleReply(50, t.server, reply(t.packet, p.count));
  }
  assert.ok(h.done);
  assert.equal(h.result()!.length, 100 * 32);
});

Deno.test("hash list: a short reply is continued; a lost one is asked again after its timeout", () => {
  const h = fetcher(10);
  const a = h.pollTransmit(0)!;
  h.handleReply(50, a.server, reply(a.packet, 4, 2));
  const b = h.pollTransmit(50)!;
  assert.equal((b.packet as { firstPiece: number }).firstPiece, 4);
  const due = h.pollTimeout()!;
  h.handleTimeout(due);
  const c = h.pollTransmit(due)!;
  assert.notEqual(c.server, b.server, "the next attempt goes to the other server");
  h.handleReply(due + 50, c.server, reply(c.packet, 6, 3));
  const r = h.result()!;
  assert.equal(r[0], 2);
  assert.equal(r[4 * 32], 3);
});

Deno.test("hash list: gives up (undefined) when no server ever answers", () => {
  const h = fetcher(10);
  let now = 0;
  for (let i = 0; i < 1000 && !h.done; i++) {
    h.pollTransmit(now);
    now = h.pollTimeout() ?? now + 1;
    h.handleTimeout(now);
  }
  assert.ok(h.done);
  assert.equal(h.result(), undefined);
});

Deno.test("hash list: a slow server whose every first attempt times out is not given up while hashes come", () => {
  // one server, replies with 5 hashes at a time, each only after the request has timed out once:
  // many more timeouts in all than the give-up count, but never many in a row
  const h = fetcher(200, [0]);
  let now = 0;
  for (let round = 0; round < 200 && !h.done; round++) {
    const first = h.pollTransmit(now);
    if (!first) break;
    now = h.pollTimeout()!;
    h.handleTimeout(now); // the first attempt is late
    const again = h.pollTransmit(now)!;
    now += 10;
    h.handleReply(now, again.server, reply(again.packet, 5));
  }
  assert.ok(h.done);
  assert.ok(h.result(), "the list came in, 5 hashes at a time");
});

/** An ERROR answering `req`. */
function refusal(req: Packet, code: number, message: string): Packet {
  return { type: "error", requestId: req.requestId, code, message };
}

const PEER = 1 << 24;

/** Everything `h` sends at `now`. */
function sends(h: HashListFetch, now: number) {
  const out = [];
  for (let t = h.pollTransmit(now); t; t = h.pollTransmit(now)) out.push(t);
  return out;
}
/** A list is "the file's" when every hash byte is 1 (what `reply` sends by default). */
const allOnes = (list: Uint8Array) => list.every((b) => b === 1);

Deno.test("hash list in a swarm: flagged to the server; its BUSY sends the ranges to a peer, which gives the list", () => {
  const h = fetcher(40, [0], allOnes);
  h.swarm = true;
  h.addPeer(PEER + 3, new Uint8Array(16).fill(3));
  const first = h.pollTransmit(0)!;
  assert.ok(first.packet.type === "hashes_request" && first.packet.swarm === true);
  assert.equal(first.server, 0, "the server first: in a small swarm nobody else has it yet");
  h.handleReply(1, 0, refusal(first.packet, ErrorCode.Busy, formatBusyRetry(300)));
  const second = h.pollTransmit(1)!;
  assert.equal(second.server, PEER + 3, "while the server is busy: the peer");
  assert.ok(second.packet.type === "hashes_request" && !second.packet.swarm);
  assert.deepEqual(second.packet.token, new Uint8Array(16).fill(3), "with the peer's token");
  h.handleReply(3, PEER + 3, reply(second.packet, 40));
  assert.ok(h.done && h.result(), "a list that matches the root is taken");
  assert.deepEqual(h.liars, []);
});

Deno.test("hash list in a swarm: peers without it are paused, a second BUSY makes the server's requests plain", () => {
  const h = fetcher(40, [0], allOnes);
  h.swarm = true;
  h.addPeer(PEER + 1, new Uint8Array(16));
  let t = h.pollTransmit(0)!;
  h.handleReply(1, 0, refusal(t.packet, ErrorCode.Busy, formatBusyRetry(300)));
  t = h.pollTransmit(1)!;
  assert.equal(t.server, PEER + 1);
  h.handleReply(2, t.server, refusal(t.packet, ErrorCode.NotHeld, "no list yet"));
  assert.equal(h.pollTransmit(2), undefined, "the server busy, the only peer paused");
  assert.equal(h.pollTimeout(), 102, "until the peer may be asked again (100 ms)");
  t = h.pollTransmit(102)!;
  assert.equal(t.server, PEER + 1);
  h.handleTimeout(102 + 5000); // silent
  t = h.pollTransmit(5102)!;
  assert.equal(t.server, 0, "the server's retry time has passed");
  assert.ok(t.packet.type === "hashes_request" && t.packet.swarm === true);
  h.handleReply(5103, 0, refusal(t.packet, ErrorCode.Busy, formatBusyRetry(300)));
  h.handleTimeout(5500);
  t = h.pollTransmit(5500)!;
  assert.equal(t.server, 0);
  assert.ok(t.packet.type === "hashes_request" && !t.packet.swarm, "after two BUSY: plain");
  h.handleReply(5501, 0, reply(t.packet, 40));
  assert.ok(h.done && h.result());
});

Deno.test("hash list in a swarm: a server that predates the flag (UNSUPPORTED) is asked plainly at once", () => {
  const h = fetcher(10, [0]);
  h.swarm = true;
  let t = h.pollTransmit(0)!;
  h.handleReply(1, 0, refusal(t.packet, ErrorCode.Unsupported, "unsupported flags 0x4"));
  t = h.pollTransmit(1)!;
  assert.ok(t.packet.type === "hashes_request" && !t.packet.swarm);
  h.handleReply(2, 0, reply(t.packet, 10));
  assert.ok(h.done && h.result());
});

Deno.test("hash list in a swarm: a peer's list that misses the root is not used, its giver is named, the servers give it", () => {
  const h = fetcher(40, [0], allOnes);
  h.swarm = true;
  h.addPeer(PEER + 7, new Uint8Array(16));
  let t = h.pollTransmit(0)!;
  h.handleReply(1, 0, refusal(t.packet, ErrorCode.Busy, formatBusyRetry(300)));
  t = h.pollTransmit(1)!;
  assert.equal(t.server, PEER + 7);
  h.handleReply(2, t.server, reply(t.packet, 40, 9)); // not the file's hashes
  assert.ok(!h.done, "not taken");
  assert.deepEqual(h.liars, [PEER + 7]);
  assert.equal(h.pollTransmit(2), undefined, "peers are not asked again; the server is busy");
  t = h.pollTransmit(301)!;
  assert.equal(t.server, 0);
  h.handleReply(302, 0, reply(t.packet, 40));
  assert.ok(h.done && h.result());
  assert.ok(h.result()!.every((b) => b === 1));
});

Deno.test("hash list in a swarm: a bad list two peers gave blames neither (a liar cannot get the peer that finished it banned)", () => {
  const h = fetcher(100, [0], allOnes); // (three ranges: 45 + 45 + 10)
  h.swarm = true;
  h.addPeer(PEER + 1, new Uint8Array(16));
  h.addPeer(PEER + 2, new Uint8Array(16));
  for (const t of sends(h, 0)) {
    h.handleReply(1, t.server, refusal(t.packet, ErrorCode.Busy, formatBusyRetry(300)));
  }
  const first = sends(h, 2);
  assert.deepEqual(first.map((t) => t.server), [PEER + 1, PEER + 1, PEER + 1], "one peer");
  h.handleReply(3, PEER + 1, reply(first[0].packet, 1, 9)); // one bad hash, then no more
  for (const t of first.slice(1)) {
    h.handleReply(3, PEER + 1, refusal(t.packet, ErrorCode.NotHeld, "x"));
  }
  for (let now = 4; now < 300 && !h.done; now += 1) {
    for (const t of sends(h, now)) {
      assert.equal(t.server, PEER + 2, "the server is busy: the other peer finishes it");
      const p = t.packet as { count: number };
      h.handleReply(now, t.server, reply(t.packet, p.count));
    }
  }
  assert.ok(!h.done, "the list misses the root: not taken");
  assert.deepEqual(h.liars, [], "two peers gave it: neither is blamed");
  const again = sends(h, 301);
  assert.ok(again.length > 0 && again.every((t) => t.server === 0), "the servers give it now");
});

Deno.test("hash list in a swarm: the BUSY answers to one burst of ranges count once", () => {
  const h = fetcher(100, [0], allOnes);
  h.swarm = true;
  const burst = sends(h, 0);
  assert.equal(burst.length, 3);
  for (const t of burst) {
    h.handleReply(1, t.server, refusal(t.packet, ErrorCode.Busy, formatBusyRetry(300)));
  }
  const after = sends(h, 301);
  assert.equal(after.length, 3);
  assert.ok(
    after.every((t) => t.packet.type === "hashes_request" && t.packet.swarm),
    "still flagged",
  );
});
