import assert from "node:assert/strict";
import { BlockProbe, PROBE_CAP, PROBE_FLOOR } from "../../lib/engine/block_probe.ts";
import type { Packet } from "../../lib/wire/packet.ts";
import type { RequestTransmit } from "../../lib/engine/retry_schedule.ts";

function probe(size = 1 << 20, servers = [0, 1], maxBlock = 65000) {
  let n = 1;
  return new BlockProbe({
    fileId: 7n,
    name: "f",
    size,
    maxBlock,
    servers,
    token: () => new Uint8Array(16),
    rtt: () => 10,
    nextRequestId: () => n++,
  });
}

type Chunk = Extract<Packet, { type: "chunk_request" }>;

/** A chunk reply carrying `length` bytes (the whole block unless cut short). */
function reply(t: RequestTransmit, length?: number): Packet {
  const req = t.packet as Chunk;
  return {
    type: "chunk_reply",
    requestId: req.requestId,
    fileId: req.fileId,
    offset: 0,
    data: new Uint8Array(length ?? req.length),
  };
}

/**
 * Runs the probe against servers that answer a request when `passes(server, blockSize)`, with
 * every answer 5 ms later; returns the result and the simulated time it took.
 */
function run(p: BlockProbe, passes: (server: number, blockSize: number) => boolean) {
  let now = 0;
  for (let steps = 0; !p.done && steps < 100; steps++) {
    const answers: RequestTransmit[] = [];
    for (let t = p.pollTransmit(now); t; t = p.pollTransmit(now)) {
      if (passes(t.server, (t.packet as Chunk).blockSize)) answers.push(t);
    }
    if (answers.length > 0) {
      now += 5;
      for (const t of answers) assert.ok(p.handleReply(now, t.server, reply(t)));
    } else {
      now = p.pollTimeout() ?? now;
      p.handleTimeout(now);
    }
  }
  assert.ok(p.done);
  return { size: p.result(), at: now };
}

Deno.test("block probe: every size gets through: the cap, at the first round trip", () => {
  const r = run(probe(), () => true);
  assert.equal(r.size, PROBE_CAP);
  assert.equal(r.at, 5, "no waiting for the smaller sizes once a larger one works everywhere");
});

Deno.test("block probe: one server's path drops big datagrams: the largest size all pass", () => {
  const r = run(probe(), (server, size) => server === 0 || size <= 1444);
  assert.equal(r.size, 1444);
});

Deno.test("block probe: a lost probe is sent again before its size is given up", () => {
  const p = probe(1 << 20, [0], 65000);
  let lost = 0;
  const r = run(p, (_s, size) => size !== 65000 || lost++ > 0); // the first 65000 probe is lost
  assert.equal(r.size, PROBE_CAP);
  assert.equal(lost, 2, "the 65000-byte probe went out twice");
});

Deno.test("block probe: a short reply or an error rules a size out at once", () => {
  const p = probe(1 << 20, [0], 65000);
  const sent: RequestTransmit[] = [];
  for (let t = p.pollTransmit(0); t; t = p.pollTransmit(0)) sent.push(t);
  const [big, mid] = sent;
  p.handleReply(1, big.server, reply(big, 100));
  assert.ok(!p.done);
  p.handleReply(1, mid.server, {
    type: "error",
    requestId: (mid.packet as Chunk).requestId,
    code: 2,
    message: "too big",
  });
  assert.ok(!p.done);
  assert.equal(p.pollTransmit(1), undefined, "no retry of a size answered short");
  const jumbo = sent.find((t) => (t.packet as Chunk).blockSize === 8944)!;
  p.handleReply(2, jumbo.server, reply(jumbo));
  assert.ok(p.done);
  assert.equal(p.result(), 8944);
});

Deno.test("block probe: a RETRY is followed with the server's new token", () => {
  const p = probe(1 << 20, [0], 1444);
  const first = p.pollTransmit(0)!;
  const token = new Uint8Array(16).fill(9);
  p.handleReply(1, 0, { type: "retry", requestId: (first.packet as Chunk).requestId, token });
  const again = p.pollTransmit(1)!;
  assert.deepEqual((again.packet as Chunk).token, token);
  p.handleReply(2, 0, reply(again));
  assert.equal(p.result(), 1444);
});

Deno.test("block probe: nothing answers: the floor; an empty file needs no probe", () => {
  assert.equal(run(probe(), () => false).size, PROBE_FLOOR);
  const empty = probe(0);
  assert.ok(empty.done);
  assert.equal(empty.pollTransmit(0), undefined);
  assert.equal(empty.result(), PROBE_FLOOR);
});

Deno.test("block probe: a reply to nobody's request is not the probe's", () => {
  const p = probe();
  const t = p.pollTransmit(0)!;
  assert.equal(p.handleReply(1, 1, reply(t)), false, "right id, wrong server");
});
