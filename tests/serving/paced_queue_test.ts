import assert from "node:assert/strict";
import { MAX_PACED, PacedQueue } from "../../lib/serving/paced_queue.ts";
import { SWARM_QUEUE_BOUND_MS } from "../../lib/wire/busy_retry.ts";
import { type ChunkRequest, NO_TOKEN } from "../../lib/wire/packet.ts";

function chunk(requestId: number, offset: number, length: number, fileId = 1n): ChunkRequest {
  return {
    type: "chunk_request",
    requestId,
    token: NO_TOKEN,
    fileId,
    offset,
    length,
    blockSize: 1000,
    name: "f",
  };
}

Deno.test("paced queue: a request asked again while the first still waits is left to the first", () => {
  const q = new PacedQueue<string>();
  assert.equal(q.push(chunk(1, 0, 8000), "a|1", "x"), undefined);
  assert.equal(q.push(chunk(2, 2000, 3000), "a|1", "x"), "covered", "its blocks are coming");
  assert.equal(q.push(chunk(3, 2000, 3000), "a|2", "x"), undefined, "another port: queued");
  assert.equal(q.push(chunk(4, 7000, 2000), "a|1", "x"), undefined, "only partly covered");
  assert.equal(q.push(chunk(5, 0, 1000, 2n), "a|1", "x"), undefined, "another file");
  assert.equal(q.push({ ...chunk(7, 2000, 1000), swarm: true }, "a|1", "x"), undefined, "flagged");
  assert.equal(q.queuedBytes, 8000 + 3000 + 2000 + 1000 + 1000);
  assert.deepEqual([q.shift()?.p.requestId, q.length], [1, 4]);
  assert.equal(q.push(chunk(6, 2000, 3000), "a|1", "x"), undefined, "the first left: queued");
});

Deno.test("paced queue: bounded; beyond the bound a request is refused", () => {
  const q = new PacedQueue<number>();
  for (let i = 0; i < MAX_PACED; i++) {
    assert.equal(q.push(chunk(i, i * 1000, 1000), "a|1", i), undefined);
  }
  assert.equal(q.push(chunk(MAX_PACED, 0, 500), "b|1", 0), "full");
  q.clear();
  assert.equal(q.length, 0);
});

Deno.test("paced queue: past the queue bound (50 ms of rate), a swarm request gets BUSY with a retry time, a plain one waits", () => {
  assert.equal(SWARM_QUEUE_BOUND_MS, 50);
  const rate = 1_000_000; // bytes/s: 50 ms is 50 000 bytes
  const q = new PacedQueue<string>(rate, undefined, () => 0.5);
  assert.equal(q.push({ ...chunk(1, 0, 150_000), swarm: true }, "a|1", "x", 0), undefined);
  assert.equal(q.backlogMs, 150);
  const refused = q.push({ ...chunk(2, 150_000, 10_000), swarm: true }, "b|1", "x", 0);
  assert.deepEqual(refused, { busyMs: 100 }, "back when 50 ms are left");
  assert.equal(q.push(chunk(3, 150_000, 10_000), "b|1", "x", 0), undefined, "plain: queued");
  const copy = q.push({ ...chunk(4, 0, 10_000), swarm: true }, "a|1", "x", 0);
  assert.equal(copy, "covered", "a copy of a waiting request is left to it, not refused");
  q.shift();
  assert.equal(q.push({ ...chunk(5, 0, 10_000), swarm: true }, "b|1", "x", 0), undefined);
  const unrated = new PacedQueue<string>();
  unrated.push({ ...chunk(6, 0, 1e7), swarm: true }, "a|1", "x", 0);
  assert.equal(unrated.push({ ...chunk(7, 1e7, 1000), swarm: true }, "b|1", "x", 0), undefined);
});

Deno.test("paced queue: what is ahead of the queue (replies charged to the rate) counts toward the bound", () => {
  const rate = 1_000_000;
  const q = new PacedQueue<string>(rate, undefined, () => 0.5);
  assert.equal(q.push({ ...chunk(1, 0, 10_000), swarm: true }, "a|1", "x", 0, 0), undefined);
  const refused = q.push({ ...chunk(2, 10_000, 10_000), swarm: true }, "b|1", "x", 0, 60);
  assert.deepEqual(refused, { busyMs: 20 }, "10 ms queued and 60 ms ahead: back when 50 are left");
  assert.equal(q.push(chunk(3, 10_000, 10_000), "b|1", "x", 0, 60), undefined, "plain: queued");
});

Deno.test("paced queue: askers take turns; each one's requests in the order they came", () => {
  const q = new PacedQueue<string>();
  q.push(chunk(1, 0, 1000), "a|1", "x");
  q.push(chunk(2, 1000, 1000), "a|1", "x"); // (a's second, before b and c asked)
  q.push(chunk(3, 2000, 1000), "b|1", "x");
  q.push(chunk(4, 3000, 1000), "b|1", "x");
  q.push(chunk(5, 4000, 1000), "c|1", "x");
  const order = [];
  for (let e = q.shift(); e; e = q.shift()) order.push(e.p.requestId);
  assert.deepEqual(order, [1, 3, 5, 2, 4], "one each, the one served longest ago first");
  assert.equal(q.queuedBytes, 0);
  q.push(chunk(6, 0, 1000), "a|1", "x");
  q.push(chunk(7, 0, 1000), "d|1", "x");
  assert.equal(q.shift()?.p.requestId, 7, "an asker never served goes before one served");
});
