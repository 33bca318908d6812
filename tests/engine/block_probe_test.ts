import assert from "node:assert/strict";
import {
  blockForMtu,
  BlockProbe,
  pathProbeSizes,
  PROBE_CAP,
  PROBE_FLOOR,
} from "../../lib/engine/block_probe.ts";
import { ErrorCode, type Packet } from "../../lib/wire/packet.ts";
import type { RequestTransmit } from "../../lib/engine/retry_schedule.ts";

function probe(size = 1 << 20, servers = [0, 1], maxBlock = 65000, offLoopback = false) {
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
    ...(offLoopback && {
      sizes: pathProbeSizes(["ipv4"]),
      unfragmented: { fallback: blockForMtu(1500, "ipv4") },
    }),
  });
}

/** An ERROR answering probe `t`. */
function refusal(t: RequestTransmit, code: number): Packet {
  return { type: "error", requestId: (t.packet as Chunk).requestId, code, message: "" };
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

Deno.test("block probe off loopback: path MTUs per family, each probe asking for unfragmented replies", () => {
  assert.deepEqual(pathProbeSizes(["ipv4"]), [8944, 8840, 4296, 1444, 1200]);
  assert.deepEqual(pathProbeSizes(["ipv6"]), [8924, 8820, 4276, 1424, 1200]);
  assert.deepEqual(pathProbeSizes(["ipv4", "ipv6"]).slice(0, 2), [8944, 8924]);
  const p = probe(1 << 20, [0], 65000, true);
  const sent: RequestTransmit[] = [];
  for (let t = p.pollTransmit(0); t; t = p.pollTransmit(0)) sent.push(t);
  assert.deepEqual(sent.map((t) => (t.packet as Chunk).blockSize), pathProbeSizes(["ipv4"]));
  assert.ok(sent.every((t) => (t.packet as Chunk).unfragmented === true));
  // on loopback nothing fragments: plain requests, as any server takes them
  const lo = probe(1 << 20, [0]).pollTransmit(0)!;
  assert.equal((lo.packet as Chunk).unfragmented, undefined);
});

Deno.test("block probe off loopback: a jumbo LAN gets jumbo blocks; TOO_BIG rules a size out at once", () => {
  const r = run(probe(1 << 20, [0, 1], 65000, true), (_s, size) => size <= 8944);
  assert.equal(r.size, 8944);
  const p = probe(1 << 20, [0], 65000, true);
  const sent: RequestTransmit[] = [];
  for (let t = p.pollTransmit(0); t; t = p.pollTransmit(0)) sent.push(t);
  for (const t of sent) {
    const size = (t.packet as Chunk).blockSize;
    p.handleReply(1, 0, size > 1444 ? refusal(t, ErrorCode.TooBig) : reply(t));
  }
  assert.ok(p.done, "decided on the first round trip, no time-out waited for");
  assert.equal(p.result(), 1444);
  assert.equal(p.pollTransmit(1), undefined, "no size refused as too big is sent again");
});

Deno.test("block probe off loopback: a server that cannot send unfragmented means Ethernet frames", () => {
  // UNSUPPORTED: an older server, or one on the pure-Deno layer. Its 1444-byte replies might be
  // fragmented somewhere, the probe cannot tell: the Ethernet-safe size, as with no probe at all
  const p = probe(1 << 20, [0, 1], 65000, true);
  const sent: RequestTransmit[] = [];
  for (let t = p.pollTransmit(0); t; t = p.pollTransmit(0)) sent.push(t);
  for (const t of sent.filter((t) => t.server === 0)) p.handleReply(1, 0, reply(t));
  assert.ok(!p.done);
  const one = sent.find((t) => t.server === 1 && (t.packet as Chunk).blockSize === 1200)!;
  p.handleReply(1, 1, refusal(one, ErrorCode.Unsupported));
  assert.ok(p.done);
  assert.equal(p.result(), 1444);
  // nothing gets through at all on a capable path: the floor, which fits any IPv6 path
  assert.equal(run(probe(1 << 20, [0], 65000, true), () => false).size, PROBE_FLOOR);
});
