import assert from "node:assert/strict";
import { type PlannerOptions, SwarmPlanner } from "../../lib/swarm/swarm_planner.ts";
import { seededRandom } from "../../lib/sim/prng.ts";

const PIECE = 1 << 20;

function planner(pieces: number, extra: Partial<PlannerOptions> = {}): SwarmPlanner {
  return new SwarmPlanner({
    pieceCount: pieces,
    pieceBytes: () => PIECE,
    random: seededRandom(1),
    ...extra,
  });
}

function haves(pieces: number, held: number[]): Uint8Array {
  const m = new Uint8Array(pieces);
  for (const p of held) m[p] = 1;
  return m;
}

Deno.test("planner: requests fill the window and spread one per source", () => {
  const p = planner(64);
  for (let s = 1; s <= 4; s++) p.addSource(s, { server: false, complete: true });
  const r = p.plan(0);
  assert.equal(r.length, 4); // (window of 4 before any rate is measured)
  assert.deepEqual(r.map((x) => x.source).sort(), [1, 2, 3, 4]);
  assert.equal(new Set(r.map((x) => x.piece)).size, 4);
  assert.equal(p.plan(0).length, 0); // (the window is full)
});

Deno.test("planner: a delivery frees a slot; a piece is asked of one source at a time", () => {
  const p = planner(4);
  p.addSource(1, { server: false, complete: false, haves: haves(4, [0]) });
  p.addSource(2, { server: false, complete: false, haves: haves(4, [0]) });
  const first = p.plan(0);
  assert.equal(first.length, 1); // (piece 0 only, from one of them)
  const v = p.onPiece(50, first[0].source, 0, true);
  assert.ok(v.accepted);
  assert.ok(p.hasPiece(0));
  assert.equal(p.plan(60).length, 0);
});

Deno.test("planner: a refused request backs the source off and the piece goes elsewhere", () => {
  const p = planner(1);
  p.addSource(1, { server: false, complete: true });
  p.addSource(2, { server: false, complete: true });
  const [a] = p.plan(0);
  p.onRefused(40, a.source, a.piece, "busy", 200);
  const [b] = p.plan(40);
  assert.notEqual(b.source, a.source);
  assert.equal(b.piece, a.piece);
  assert.equal(p.wakeAt, 240);
});

Deno.test("planner: server mode follows a substitution", () => {
  const p = planner(8);
  p.addSource(0, { server: true, complete: true });
  const r = p.plan(0);
  const asked = r[0].piece;
  const given = [...Array(8).keys()].find((x) => !r.some((q) => q.piece === x))!;
  p.onSubstituted(20, 0, asked, given);
  assert.ok(p.onPiece(100, 0, given, true).accepted);
  // (the piece asked for is wanted again)
  const again = p.plan(100).map((q) => q.piece);
  assert.ok(again.includes(asked) || p.outstandingTotal >= 2);
});

Deno.test("planner: end game only at the tail, and only for an overdue piece", () => {
  const p = planner(2);
  p.addSource(1, { server: false, complete: true });
  const r = p.plan(0);
  assert.equal(r.length, 1); // (a new peer gets one request until it delivers)
  p.addSource(2, { server: false, complete: false, haves: haves(2, [0, 1]) });
  const more = p.plan(1);
  assert.equal(more.length, 1);
  assert.ok(!more[0].duplicate);
  // (every missing piece is in flight now; nothing is overdue yet)
  assert.equal(p.plan(2).length, 0);
  p.reconsiderAll();
  const late = p.plan(10_000 - 1);
  assert.ok(late.length === 0 || late.every((x) => x.duplicate));
});

Deno.test("planner: a bad piece excludes its source for good; nothing bad is accepted", () => {
  const p = planner(4);
  p.addSource(1, { server: false, complete: true });
  p.addSource(2, { server: false, complete: true });
  const r = p.plan(0);
  const bad = r.find((x) => x.source === 1)!;
  const v = p.onPiece(30, 1, bad.piece, false);
  assert.equal(v.accepted, false);
  assert.deepEqual(v.excluded, [1]);
  assert.equal(p.hasPiece(bad.piece), false);
  assert.equal(p.hasSource(1), false);
  assert.equal(p.addSource(1, { server: false, complete: true }), false);
  assert.ok(
    p.plan(31).some((x) => x.piece === bad.piece && x.source === 2) || p.outstanding(2) > 0,
  );
});

Deno.test("planner: a peer that never answers is dropped after broken claims", () => {
  const p = planner(4, { minTimeoutMs: 100, initialTimeoutMs: 100 });
  p.addSource(7, { server: false, complete: true });
  p.plan(0);
  assert.deepEqual(p.expire(150), []);
  p.plan(150);
  assert.deepEqual(p.expire(300), [7]);
  assert.equal(p.hasSource(7), false);
});

Deno.test("planner: fetcher mode asks the server only for pieces nobody is known to hold", () => {
  const p = planner(4, { seedMode: "fetcher" });
  p.addSource(0, { server: true, complete: true });
  p.addSource(1, { server: false, complete: false, haves: haves(4, [0, 1, 2]) });
  const toServer = p.plan(0).filter((x) => x.source === 0).map((x) => x.piece);
  assert.deepEqual(toServer, [3]);
  assert.deepEqual(p.takeNotices(), [{ piece: 3, fetching: true }]);
});
