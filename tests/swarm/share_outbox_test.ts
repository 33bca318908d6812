import assert from "node:assert/strict";
import { MAX_QUEUED_RUNS, ShareOutbox } from "../../lib/swarm/share_outbox.ts";
import { type RunAction, type ServeAction, ServeCore } from "../../lib/serving/serve_core.ts";
import { encode, ErrorCode, NO_TOKEN, type Packet } from "../../lib/wire/packet.ts";
import { seal } from "../../lib/wire/auth.ts";

const FILE_ID = 0x0102030405060708n;

/** A run timed at `at` by nobody (no charges to wait for). */
function run(at: number, offset = 0): RunAction {
  return {
    kind: "run",
    requestId: 1,
    fileId: FILE_ID,
    offset,
    length: 8192,
    blockSize: 8192,
    at,
    unfragmented: false,
  };
}

const REQUEST = encode(chunkRequest());
const REPLY = encode(
  { type: "error", requestId: 7, code: ErrorCode.Busy, message: "busy" } as Packet,
);

Deno.test("share outbox: runs leave in the order queued, each once its time has come", () => {
  const box = new ShareOutbox<string>(new ServeCore({}, 0));
  assert.equal(box.nextAt(), undefined);
  assert.equal(box.takeDue(1e9), undefined);
  box.push("a", run(10, 0));
  box.push("b", run(5, 8192)); // (earlier, but behind the first: the order is the rate's)
  box.push("c", run(20, 16384));
  assert.equal(box.nextAt(), 10);
  assert.equal(box.takeDue(9), undefined, "not before its time");
  assert.equal(box.takeDue(10)?.to, "a");
  assert.equal(box.takeDue(10)?.to, "b");
  assert.equal(box.takeDue(10), undefined);
  assert.equal(box.length, 1);
  assert.equal(box.takeDue(20)?.run.offset, 16384);
  assert.equal(box.length, 0);
});

Deno.test("share outbox: a ranked run (a rare piece) goes first, lower ranks first, at the times queued", () => {
  const box = new ShareOutbox<string>(new ServeCore({}, 0));
  box.push("a", run(10, 0));
  box.push("b", run(20, 8192));
  box.push("r1", { ...run(30, 16384), rank: 1 });
  box.push("r0", { ...run(40, 24576), rank: 0 });
  box.push("r1b", { ...run(50, 32768), rank: 1 });
  assert.equal(box.nextAt(), 10, "the earliest time waiting, whoever takes it");
  const order: string[] = [];
  for (const t of [10, 20, 30, 40, 50]) {
    assert.equal(box.takeDue(t - 1), undefined, "not before the time queued first");
    order.push(box.takeDue(t)!.to);
  }
  assert.deepEqual(order, ["r0", "r1", "r1b", "a", "b"], "ranked first; equal ranks in order");
  assert.equal(box.length, 0);
  box.push("c", run(60, 0));
  box.push("r", { ...run(70, 8192), rank: 0 });
  assert.equal(box.takeDue(60)?.to, "r", "a ranked run passes the unranked after a drain too");
  assert.equal(box.takeDue(70)?.to, "c");
});

Deno.test("share outbox: at most MAX_QUEUED_RUNS wait; beyond, runs are dropped", () => {
  const box = new ShareOutbox<number>(new ServeCore({}, 0));
  for (let i = 0; i < MAX_QUEUED_RUNS; i++) assert.ok(box.push(i, run(0)));
  assert.equal(box.push(-1, run(0)), false);
  assert.equal(box.length, MAX_QUEUED_RUNS);
});

Deno.test("share outbox: the node's own requests count toward the share rate, replies are not counted here", () => {
  const rate = 64 << 10;
  const core = new ServeCore({ rate, creditMs: 0 }, 0);
  const box = new ShareOutbox<string>(core);
  // (more than the bucket's 1500-byte burst of each)
  for (let i = 0; i < 40; i++) box.sent(0, REPLY); // (the sharing half charges its replies)
  assert.equal(core.chargedAheadMs(0), 0);
  for (let i = 0; i < 40; i++) box.sent(0, REQUEST);
  const expectMs = ((40 * REQUEST.length - 1500) / rate) * 1000;
  assert.ok(Math.abs(core.chargedAheadMs(0) - expectMs) < 0.01, `${core.chargedAheadMs(0)} ms`);
  // a private swarm's requests are sealed (a trailer): still ours, charged whole
  const sealed = seal(REQUEST, new Uint8Array(32).fill(7), 0, new Uint8Array(8));
  assert.ok(sealed.length > REQUEST.length);
  box.sent(0, sealed);
  const more = (sealed.length / rate) * 1000;
  assert.ok(Math.abs(core.chargedAheadMs(0) - expectMs - more) < 0.01, "sealed: charged");
});

Deno.test("share outbox: a run waits for requests sent after it was timed (ServeCore.sendTime)", () => {
  const rate = 64 << 10;
  const core = new ServeCore({ rate, creditMs: 0 }, 0);
  const out: ServeAction[] = [];
  const peer: Deno.NetAddr = { transport: "udp", hostname: "10.0.0.9", port: 9 };
  const file = { fileId: FILE_ID, size: 1 << 20, changed: false };
  core.onChunk(0, peer, chunkRequest(), file, out);
  const box = new ShareOutbox<string>(core);
  const first = out[0] as RunAction;
  box.push("p", first);
  assert.equal(box.nextAt(), first.at);
  for (let i = 0; i < 10; i++) box.sent(0, REQUEST);
  const later = box.nextAt()!;
  assert.ok(later > first.at, `${later} > ${first.at}`);
  assert.equal(box.takeDue(first.at), undefined, "not at its old time");
  assert.equal(box.takeDue(later)?.run, first);
});

/** A one-block chunk request. */
function chunkRequest() {
  return {
    type: "chunk_request" as const,
    requestId: 3,
    token: NO_TOKEN,
    fileId: FILE_ID,
    offset: 0,
    length: 8192,
    blockSize: 8192,
    name: "f.bin",
  };
}
