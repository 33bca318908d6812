import assert from "node:assert/strict";
import { HAVE_BATCH_MS, HAVE_HOLD_MS, HeldPolls } from "../../lib/swarm/held_polls.ts";
import { type HaveRequest, NO_TOKEN } from "../../lib/wire/packet.ts";

function poll(requestId: number, since: number): HaveRequest {
  const p = {
    type: "have_request",
    requestId,
    token: NO_TOKEN,
    fileId: 1n,
    firstPiece: 0,
  } as const;
  return { ...p, since, name: "swarm", wait: true };
}

Deno.test("held polls: held while the log has nothing new; all told at once of a rare piece", () => {
  const h = new HeldPolls<string>();
  assert.equal(h.hold(0, "a", poll(1, 3), "A", 3), true);
  assert.equal(h.hold(5, "b", poll(2, 3), "B", 3), true);
  assert.equal(h.hold(6, "c", poll(3, 2), "C", 3), false, "news already: answer at once");
  assert.deepEqual(h.due(10, 3), [], "no news, no hold over");
  assert.deepEqual(h.due(11, 4, true).map((p) => p.to), ["A", "B"]);
  assert.equal(h.size, 0);
  assert.equal(h.nextDeadline(), undefined);
});

Deno.test("held polls: news of a piece that is not rare waits for HAVE_BATCH_MS of hold", () => {
  const h = new HeldPolls<string>();
  h.hold(0, "a", poll(1, 3), "A", 3);
  h.hold(10, "b", poll(2, 3), "B", 3);
  assert.deepEqual(h.due(5, 4), [], "a held 5 ms: its news waits");
  assert.equal(h.nextDeadline(), HAVE_BATCH_MS, "the loop wakes when a's batch is over");
  assert.equal(h.anyDue(HAVE_BATCH_MS - 1, 4), false);
  assert.equal(h.anyDue(HAVE_BATCH_MS, 4), true);
  assert.deepEqual(h.due(HAVE_BATCH_MS, 4).map((p) => p.to), ["A"], "b was held later");
  assert.equal(h.nextDeadline(), 10 + HAVE_BATCH_MS);
  assert.deepEqual(h.due(10 + HAVE_BATCH_MS, 4).map((p) => p.to), ["B"]);
  h.hold(40, "a", poll(3, 4), "A", 4);
  assert.equal(h.nextDeadline(), 40 + HAVE_HOLD_MS, "no news: only the hold ends it");
});

Deno.test("held polls: a hold ends after HAVE_HOLD_MS, the earliest first", () => {
  const h = new HeldPolls<string>();
  h.hold(0, "a", poll(1, 0), "A", 0);
  h.hold(30, "b", poll(2, 0), "B", 0);
  assert.equal(h.nextDeadline(), HAVE_HOLD_MS);
  assert.deepEqual(h.due(HAVE_HOLD_MS - 1, 0), []);
  assert.deepEqual(h.due(HAVE_HOLD_MS, 0).map((p) => p.request.requestId), [1]);
  assert.equal(h.nextDeadline(), 30 + HAVE_HOLD_MS);
  assert.deepEqual(h.due(30 + HAVE_HOLD_MS, 0).map((p) => p.to), ["B"]);
});

Deno.test("held polls: one per asker (the newest, held anew); a full table holds no more", () => {
  const h = new HeldPolls<string>(2);
  h.hold(0, "a", poll(1, 0), "A", 0);
  h.hold(10, "b", poll(2, 0), "B", 0);
  assert.equal(h.hold(20, "c", poll(3, 0), "C", 0), false, "full");
  assert.equal(h.hold(40, "a", poll(4, 0), "A", 0), true, "a newer poll of a held asker");
  assert.equal(h.size, 2);
  assert.equal(h.nextDeadline(), 10 + HAVE_HOLD_MS, "b's hold ends first now");
  const answered = h.due(50, 1, true);
  assert.deepEqual(
    answered.map((p) => p.request.requestId),
    [2, 4],
    "a's older poll is not answered",
  );
});

Deno.test("held polls: a poll held after the log grew still hears of it at the next look", () => {
  const h = new HeldPolls<string>();
  h.hold(0, "a", poll(1, 3), "A", 3);
  // the log grew to 4 and b was held at 4 before anyone looked: a has news, b none
  h.hold(1, "b", poll(2, 4), "B", 4);
  assert.deepEqual(h.due(2, 4, true).map((p) => p.to), ["A"]);
  assert.equal(h.size, 1);
});

Deno.test("held polls: anyDue says whether due would answer any, without taking them", () => {
  const h = new HeldPolls<string>();
  assert.equal(h.anyDue(0, 0), false, "none held");
  h.hold(0, "a", poll(1, 2), "A", 2);
  assert.deepEqual(h.due(5, 2), [], "(a first look: the log's length is known from here)");
  assert.equal(h.anyDue(10, 2), false);
  assert.equal(h.anyDue(10, 3), true, "the log grew");
  assert.equal(h.anyDue(HAVE_HOLD_MS, 2), true, "the hold is over");
  assert.equal(h.size, 1, "nothing taken");
  assert.equal(h.due(HAVE_HOLD_MS, 2).length, 1);
});
