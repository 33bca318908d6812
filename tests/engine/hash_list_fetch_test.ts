import assert from "node:assert/strict";
import { HashListFetch } from "../../lib/engine/hash_list_fetch.ts";
import type { Packet } from "../../lib/wire/packet.ts";

function fetcher(pieceCount: number, servers = [0, 1]) {
  let n = 1;
  return new HashListFetch({
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
