import assert from "node:assert/strict";
import fc from "fast-check";
import { type InFlight, RequestWindow, TIME_THRESHOLD } from "../../lib/engine/request_window.ts";

const ids = (rs: InFlight[]) => rs.map((r) => r.id);

// ---------------------------------------------------------------------------------------------
// canSend, bookkeeping
// ---------------------------------------------------------------------------------------------

Deno.test("TIME_THRESHOLD is RFC 9002's 9/8", () => {
  assert.equal(TIME_THRESHOLD, 1.125);
});

Deno.test("canSend: an empty lane accepts one request of any size, whatever the cap", () => {
  const w = new RequestWindow();
  assert.equal(w.canSend(1, 0), true);
  assert.equal(w.canSend(1_000_000, 10), true);
  assert.equal(w.canSend(5000, 5000), true);
});

Deno.test("canSend: otherwise the cap is respected, inclusively", () => {
  const w = new RequestWindow();
  w.sent(1, 1000, 0, 100);
  assert.equal(w.canSend(500, 1500), true);
  assert.equal(w.canSend(501, 1500), false);
  assert.equal(w.canSend(1, 1000), false);
  assert.equal(w.canSend(1, 0), false);
  w.sent(2, 500, 1, 100);
  assert.equal(w.canSend(0, 1500), true);
  assert.equal(w.canSend(1, 1500), false);
  // over the cap already (the cap shrank): nothing more
  assert.equal(w.canSend(1, 1000), false);
});

Deno.test("canSend: a lane emptied again accepts one request again", () => {
  const w = new RequestWindow();
  w.sent(1, 1000, 0, 100);
  assert.equal(w.canSend(4000, 2000), false);
  w.finish(1, 10, 50);
  assert.equal(w.canSend(4000, 2000), true);
});

Deno.test("bytesInFlight and size follow sent and finish", () => {
  const w = new RequestWindow();
  assert.equal(w.bytesInFlight, 0);
  assert.equal(w.size, 0);
  w.sent(1, 1000, 0, 100);
  w.sent(2, 2500, 1, 100);
  w.sent(3, 300, 2, 100);
  assert.equal(w.bytesInFlight, 3800);
  assert.equal(w.size, 3);
  assert.deepEqual(w.finish(2, 3, 50), []);
  assert.equal(w.bytesInFlight, 1300);
  assert.equal(w.size, 2);
  assert.deepEqual(w.finish(3, 4, 50), []);
  assert.deepEqual(w.finish(1, 5, 50), []);
  assert.equal(w.bytesInFlight, 0);
  assert.equal(w.size, 0);
});

// ---------------------------------------------------------------------------------------------
// finish: time threshold
// ---------------------------------------------------------------------------------------------

Deno.test("finish: earlier requests sent more than 9/8 × rtt before now are lost", () => {
  // rtt 80 → threshold 90 ms
  const w = new RequestWindow();
  w.sent(1, 1000, 0, 1000);
  w.sent(2, 2000, 5, 1000);
  w.sent(3, 3000, 10, 1000);
  const lost = w.finish(3, 95, 80);
  // request 1: 95 ms old > 90 → lost; request 2: exactly 90 ms old → not lost (strictly more)
  assert.deepEqual(lost, [{ id: 1, bytes: 1000, sentAt: 0, deadline: 1000 }]);
  assert.equal(w.size, 1);
  assert.equal(w.bytesInFlight, 2000);
  // request 1 is gone: finishing it now is a no-op
  assert.deepEqual(w.finish(1, 96, 80), []);
  assert.equal(w.bytesInFlight, 2000);
  assert.deepEqual(w.finish(2, 96, 80), []);
  assert.equal(w.size, 0);
  assert.equal(w.bytesInFlight, 0);
});

Deno.test("finish: both sides of the threshold, by the rtt", () => {
  const setup = () => {
    const w = new RequestWindow();
    w.sent(1, 100, 0, 10_000);
    w.sent(2, 100, 50, 10_000);
    return w;
  };
  // 100 ms since request 1 was sent; threshold 9/8 × rtt
  assert.deepEqual(ids(setup().finish(2, 100, 88)), [1]); // 99 < 100
  assert.deepEqual(ids(setup().finish(2, 100, 88.8)), [1]); // 99.9 < 100
  assert.deepEqual(ids(setup().finish(2, 100, 800 / 9)), []); // exactly 100: not more
  assert.deepEqual(ids(setup().finish(2, 100, 89)), []); // 100.125 > 100
  assert.deepEqual(ids(setup().finish(2, 100, 1000)), []);
  // and by the time of the finish, at a fixed rtt of 80 (threshold 90)
  assert.deepEqual(ids(setup().finish(2, 90, 80)), []);
  assert.deepEqual(ids(setup().finish(2, 90.5, 80)), [1]);
  assert.deepEqual(ids(setup().finish(2, 10_000, 80)), [1]);
});

Deno.test("finish: several earlier requests, only the old enough ones are lost, in send order", () => {
  const w = new RequestWindow();
  w.sent(10, 1, 0, 1000);
  w.sent(11, 2, 20, 1000);
  w.sent(12, 4, 40, 1000);
  w.sent(13, 8, 60, 1000);
  w.sent(14, 16, 80, 1000);
  w.sent(15, 32, 100, 1000);
  // rtt 40 → threshold 45; at 100: sent before 55 are lost → 10, 11, 12
  assert.deepEqual(ids(w.finish(14, 100, 40)), [10, 11, 12]);
  assert.equal(w.size, 2);
  assert.equal(w.bytesInFlight, 8 + 32);
  // 13 (sent at 60) stays: 40 ms old
  assert.deepEqual(ids(w.finish(15, 105, 40)), []);
  assert.equal(w.size, 1);
  assert.equal(w.bytesInFlight, 8);
});

Deno.test("finish: later requests are never declared lost, however old", () => {
  const w = new RequestWindow();
  w.sent(1, 100, 0, 10_000);
  w.sent(2, 200, 10, 10_000);
  w.sent(3, 300, 20, 10_000);
  assert.deepEqual(w.finish(1, 5000, 10), []);
  assert.equal(w.size, 2);
  assert.equal(w.bytesInFlight, 500);
  // finishing the middle one sweeps nothing after it
  assert.deepEqual(w.finish(2, 5000, 10), []);
  assert.equal(w.size, 1);
  assert.equal(w.bytesInFlight, 300);
});

Deno.test("finish: the threshold has a granularity floor of 1 ms", () => {
  const w = new RequestWindow();
  w.sent(1, 1, 0, 100);
  w.sent(2, 1, 0.5, 100);
  w.sent(3, 1, 1, 100);
  // rtt 0: threshold 1 ms, not 0 → at time 1.5, only request 1 (1.5 ms old) is lost
  assert.deepEqual(ids(w.finish(3, 1.5, 0)), [1]);
  assert.equal(w.size, 1);
});

Deno.test("finish of an unknown id returns [] and changes nothing", () => {
  const w = new RequestWindow();
  assert.deepEqual(w.finish(1, 100, 10), []);
  w.sent(1, 1000, 0, 100);
  w.sent(2, 2000, 1, 100);
  assert.deepEqual(w.finish(99, 10_000, 1), []);
  assert.equal(w.size, 2);
  assert.equal(w.bytesInFlight, 3000);
  // finishing twice: the second is unknown
  assert.deepEqual(w.finish(2, 10_000, 1_000_000), []);
  assert.deepEqual(w.finish(2, 10_000, 1), []);
  assert.equal(w.size, 1);
  assert.equal(w.bytesInFlight, 1000);
});

// ---------------------------------------------------------------------------------------------
// expire, nextDeadline
// ---------------------------------------------------------------------------------------------

Deno.test("expire returns exactly the requests with deadline ≤ now, and removes them", () => {
  const w = new RequestWindow();
  w.sent(1, 100, 0, 100); // deadline 100
  w.sent(2, 200, 10, 40); // deadline 50
  w.sent(3, 400, 20, 180); // deadline 200
  w.sent(4, 800, 30, 20); // deadline 50
  assert.deepEqual(w.expire(49), []);
  assert.equal(w.size, 4);
  assert.deepEqual(w.expire(50), [
    { id: 2, bytes: 200, sentAt: 10, deadline: 50 },
    { id: 4, bytes: 800, sentAt: 30, deadline: 50 },
  ]);
  assert.equal(w.size, 2);
  assert.equal(w.bytesInFlight, 500);
  assert.deepEqual(w.expire(50), []);
  assert.deepEqual(ids(w.expire(199.9)), [1]);
  assert.equal(w.bytesInFlight, 400);
  assert.deepEqual(ids(w.expire(1e9)), [3]);
  assert.equal(w.size, 0);
  assert.equal(w.bytesInFlight, 0);
  assert.deepEqual(w.expire(1e9), []);
});

Deno.test("expire: all at once", () => {
  const w = new RequestWindow();
  for (let i = 0; i < 10; i++) w.sent(i, 10, i, 100);
  assert.deepEqual(ids(w.expire(109)), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.equal(w.size, 0);
  assert.equal(w.bytesInFlight, 0);
});

Deno.test("nextDeadline: the earliest deadline, Infinity when empty", () => {
  const w = new RequestWindow();
  assert.equal(w.nextDeadline(), Infinity);
  w.sent(1, 100, 0, 300); // 300
  assert.equal(w.nextDeadline(), 300);
  w.sent(2, 100, 10, 100); // 110: later sent, earlier deadline
  assert.equal(w.nextDeadline(), 110);
  w.sent(3, 100, 20, 500); // 520
  assert.equal(w.nextDeadline(), 110);
  w.finish(2, 30, 100);
  assert.equal(w.nextDeadline(), 300);
  w.expire(300);
  assert.equal(w.nextDeadline(), 520);
  w.finish(3, 400, 100);
  assert.equal(w.nextDeadline(), Infinity);
});

// ---------------------------------------------------------------------------------------------
// property: against a model
// ---------------------------------------------------------------------------------------------

type Op =
  | { kind: "sent"; dt: number; bytes: number; rto: number }
  | { kind: "finish"; dt: number; pick: number; rtt: number }
  | { kind: "expire"; dt: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant("sent" as const),
      dt: fc.integer({ min: 0, max: 20 }),
      bytes: fc.integer({ min: 1, max: 100_000 }),
      rto: fc.integer({ min: 1, max: 400 }),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant("finish" as const),
      dt: fc.integer({ min: 0, max: 20 }),
      pick: fc.nat({ max: 1000 }),
      rtt: fc.integer({ min: 0, max: 200 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("expire" as const),
      dt: fc.integer({ min: 0, max: 100 }),
    }),
  },
);

Deno.test("property: bytesInFlight is the sum of the open requests, never negative; losses match the rules", () => {
  fc.assert(
    fc.property(fc.array(opArb, { maxLength: 200 }), (ops) => {
      const w = new RequestWindow();
      let model: InFlight[] = [];
      let now = 0;
      let nextId = 1;
      for (const op of ops) {
        now += op.dt;
        switch (op.kind) {
          case "sent": {
            const id = nextId++;
            w.sent(id, op.bytes, now, op.rto);
            model.push({ id, bytes: op.bytes, sentAt: now, deadline: now + op.rto });
            break;
          }
          case "finish": {
            // ids issued so far plus a few never issued (unknown)
            const id = op.pick % (nextId + 3);
            const lost = w.finish(id, now, op.rtt);
            const i = model.findIndex((r) => r.id === id);
            if (i < 0) assert.deepEqual(lost, []);
            else {
              const limit = Math.max(1, TIME_THRESHOLD * op.rtt);
              const expected = model.slice(0, i).filter((r) => now - r.sentAt > limit);
              assert.deepEqual(lost, expected);
              model = model.filter((r) => r.id !== id && !expected.includes(r));
            }
            break;
          }
          case "expire": {
            const lost = w.expire(now);
            const expected = model.filter((r) => r.deadline <= now);
            assert.deepEqual(lost, expected);
            model = model.filter((r) => r.deadline > now);
            break;
          }
        }
        const sum = model.reduce((s, r) => s + r.bytes, 0);
        assert.equal(w.bytesInFlight, sum);
        assert.ok(w.bytesInFlight >= 0);
        assert.equal(w.size, model.length);
        assert.equal(w.nextDeadline(), Math.min(Infinity, ...model.map((r) => r.deadline)));
        assert.equal(w.canSend(1, sum), model.length === 0 || sum + 1 <= sum);
      }
    }),
    { seed: 424242, numRuns: 300 },
  );
});
