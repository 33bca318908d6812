import assert from "node:assert/strict";
import fc from "fast-check";
import { type CongestionOptions, CongestionWindow } from "../../lib/engine/congestion.ts";

const BLOCK = 1000;

function opts(over: Partial<CongestionOptions> = {}): CongestionOptions {
  return {
    blockSize: BLOCK,
    initialBlocks: 10,
    minBlocks: 2,
    maxBytes: 1_000_000,
    lossReduction: 0.5,
    ...over,
  };
}

/** Grows a fresh window in slow start to exactly `bytes` (acks of requests sent at t = 1). */
function grownTo(bytes: number, over: Partial<CongestionOptions> = {}): CongestionWindow {
  const w = new CongestionWindow(opts(over));
  w.onAck(bytes - w.bytes, 1);
  assert.equal(w.bytes, bytes);
  assert.equal(w.slowStart, true);
  return w;
}

// ---------------------------------------------------------------------------------------------
// initial window
// ---------------------------------------------------------------------------------------------

Deno.test("initial window is initialBlocks × blockSize, in slow start", () => {
  const w = new CongestionWindow(opts());
  assert.equal(w.bytes, 10 * BLOCK);
  assert.equal(w.slowStart, true);
  assert.equal(new CongestionWindow(opts({ blockSize: 1400, initialBlocks: 7 })).bytes, 9800);
});

Deno.test("initial window is clamped to [minBlocks × blockSize, maxBytes]", () => {
  // below the floor
  assert.equal(new CongestionWindow(opts({ initialBlocks: 1, minBlocks: 2 })).bytes, 2000);
  assert.equal(new CongestionWindow(opts({ initialBlocks: 0, minBlocks: 3 })).bytes, 3000);
  // above the ceiling
  assert.equal(new CongestionWindow(opts({ initialBlocks: 100, maxBytes: 50_000 })).bytes, 50_000);
  // a ceiling below the floor: the floor wins
  assert.equal(new CongestionWindow(opts({ minBlocks: 4, maxBytes: 1000 })).bytes, 4000);
});

// ---------------------------------------------------------------------------------------------
// slow start
// ---------------------------------------------------------------------------------------------

Deno.test("slow start: the window grows by the bytes acknowledged", () => {
  const w = new CongestionWindow(opts());
  w.onAck(1000, 1);
  assert.equal(w.bytes, 11_000);
  w.onAck(2500, 2);
  assert.equal(w.bytes, 13_500);
  w.onAck(1, 3);
  assert.equal(w.bytes, 13_501);
  assert.equal(w.slowStart, true);
});

Deno.test("slow start: acknowledging a whole window doubles it", () => {
  const w = new CongestionWindow(opts());
  for (let round = 0; round < 5; round++) {
    const before = w.bytes;
    for (let i = 0; i < before / BLOCK; i++) w.onAck(BLOCK, round * 100 + i);
    assert.equal(w.bytes, 2 * before);
  }
  assert.equal(w.bytes, 320_000);
});

Deno.test("slow start never exceeds maxBytes", () => {
  const w = new CongestionWindow(opts({ maxBytes: 25_000 }));
  w.onAck(10_000, 1);
  assert.equal(w.bytes, 20_000);
  w.onAck(10_000, 2);
  assert.equal(w.bytes, 25_000);
  w.onAck(1_000_000, 3);
  assert.equal(w.bytes, 25_000);
});

// ---------------------------------------------------------------------------------------------
// loss and congestion avoidance
// ---------------------------------------------------------------------------------------------

Deno.test("loss: window × lossReduction, then out of slow start", () => {
  const w = grownTo(20_000);
  w.onLoss(5, 10);
  assert.equal(w.bytes, 10_000);
  assert.equal(w.slowStart, false);

  const c = grownTo(20_000, { lossReduction: 0.7 });
  c.onLoss(5, 10);
  assert.equal(c.bytes, 14_000);
  assert.equal(c.slowStart, false);
});

Deno.test("loss: the window never goes below minBlocks × blockSize", () => {
  const w = new CongestionWindow(opts({ initialBlocks: 3, minBlocks: 2 }));
  assert.equal(w.bytes, 3000);
  w.onLoss(1, 2);
  assert.equal(w.bytes, 2000); // 1500 clamped up
  w.onLoss(3, 4);
  assert.equal(w.bytes, 2000);
  w.onLoss(5, 6);
  assert.equal(w.bytes, 2000);
});

Deno.test("congestion avoidance: about one block per window of acknowledged bytes", () => {
  const w = grownTo(20_000);
  w.onLoss(5, 10);
  assert.equal(w.bytes, 10_000);

  // one whole window acknowledged at once: exactly one block
  w.onAck(10_000, 11);
  assert.equal(w.bytes, 11_000);
  assert.equal(w.slowStart, false);

  // block by block: a little under one block per window (the window grows meanwhile)
  let t = 20;
  for (let round = 0; round < 20; round++) {
    const before = w.bytes;
    let acked = 0;
    while (acked < before) {
      w.onAck(BLOCK, t++);
      acked += BLOCK;
    }
    const growth = w.bytes - before;
    assert.ok(growth > 0.9 * BLOCK && growth <= 1.1 * BLOCK, `growth ${growth} at ${before}`);
  }
  assert.ok(w.bytes > 30_000 && w.bytes < 32_000, `${w.bytes}`);
  assert.equal(w.slowStart, false);
});

Deno.test("congestion avoidance: growth is additive, not exponential", () => {
  const w = grownTo(100_000);
  w.onLoss(5, 10);
  assert.equal(w.bytes, 50_000);
  // acknowledging 10 × the window grows it by well under 10 blocks
  for (let i = 0; i < 500; i++) w.onAck(BLOCK, 11 + i);
  assert.ok(w.bytes > 50_000 + 9 * BLOCK && w.bytes < 50_000 + 10 * BLOCK, `${w.bytes}`);
});

Deno.test("congestion avoidance never exceeds maxBytes", () => {
  const w = grownTo(20_000, { maxBytes: 20_500 });
  w.onLoss(5, 10);
  for (let i = 0; i < 1000; i++) w.onAck(BLOCK, 11 + i);
  assert.equal(w.bytes, 20_500);
});

// ---------------------------------------------------------------------------------------------
// one reduction per loss episode
// ---------------------------------------------------------------------------------------------

Deno.test("one reduction per episode: losses of requests sent up to the recovery start are ignored", () => {
  const w = grownTo(40_000);
  w.onLoss(5, 100); // recovery starts at 100
  assert.equal(w.bytes, 20_000);
  w.onLoss(5, 101); // the same request, reported again
  w.onLoss(50, 102);
  w.onLoss(99, 110);
  w.onLoss(100, 120); // sent at the very instant recovery started: still the old window
  assert.equal(w.bytes, 20_000);

  // a request sent after the recovery start opens a new episode
  w.onLoss(101, 130);
  assert.equal(w.bytes, 10_000);
  // ... whose own start is now 130
  w.onLoss(129, 131);
  w.onLoss(130, 132);
  assert.equal(w.bytes, 10_000);
  w.onLoss(131, 140);
  assert.equal(w.bytes, 5_000);
});

Deno.test("acks of requests sent up to the recovery start do not grow the window", () => {
  const w = grownTo(40_000);
  w.onLoss(5, 100);
  assert.equal(w.bytes, 20_000);
  w.onAck(20_000, 1);
  w.onAck(20_000, 99);
  w.onAck(20_000, 100);
  assert.equal(w.bytes, 20_000);
  // sent after the recovery start: congestion avoidance
  w.onAck(20_000, 101);
  assert.equal(w.bytes, 21_000);
});

Deno.test("before any loss, acks of requests sent at any time grow the window", () => {
  const w = new CongestionWindow(opts());
  w.onAck(1000, 0);
  w.onAck(1000, -1e9);
  assert.equal(w.bytes, 12_000);
});

// ---------------------------------------------------------------------------------------------
// persistent loss
// ---------------------------------------------------------------------------------------------

Deno.test("persistent loss collapses the window to the floor", () => {
  const w = grownTo(1_000_000);
  w.onPersistentLoss(100);
  assert.equal(w.bytes, 2000);

  const f = new CongestionWindow(opts({ minBlocks: 5 }));
  f.onPersistentLoss(1);
  assert.equal(f.bytes, 5000);
});

Deno.test("persistent loss starts a recovery period", () => {
  const w = grownTo(40_000);
  w.onPersistentLoss(100);
  assert.equal(w.bytes, 2000);
  // the other requests of the old window, lost or acknowledged, change nothing
  w.onLoss(90, 101);
  w.onLoss(100, 102);
  w.onAck(5000, 100);
  assert.equal(w.bytes, 2000);
});

Deno.test("after a persistent loss, slow start resumes up to lossReduction × the old window", () => {
  const w = grownTo(40_000);
  w.onPersistentLoss(100);
  assert.equal(w.bytes, 2000);
  assert.equal(w.slowStart, true);
  w.onAck(8000, 101);
  assert.equal(w.bytes, 10_000);
  assert.equal(w.slowStart, true);
  w.onAck(10_000, 102);
  assert.equal(w.bytes, 20_000);
  assert.equal(w.slowStart, false); // reached ssthresh = 0.5 × 40 000
  w.onAck(20_000, 103);
  assert.equal(w.bytes, 21_000);
});

Deno.test("several requests timing out together reduce the slow-start threshold only once", () => {
  // A silent server: every request in flight times out at the same instant and each is reported
  // as a persistent loss. That is one loss episode; the window collapses to the floor, and slow
  // start should bring it back to lossReduction × the old window, not to the floor.
  const w = grownTo(40_000);
  w.onPersistentLoss(100);
  w.onPersistentLoss(100);
  w.onPersistentLoss(100);
  assert.equal(w.bytes, 2000);
  assert.equal(w.slowStart, true, "threshold collapsed to the floor: growth is linear from there");
  w.onAck(18_000, 101);
  assert.equal(w.bytes, 20_000);
});

// ---------------------------------------------------------------------------------------------
// property: bounds and the documented transitions over random histories
// ---------------------------------------------------------------------------------------------

type Op =
  | { kind: "ack"; dt: number; age: number; bytes: number }
  | { kind: "loss"; dt: number; age: number }
  | { kind: "persistent"; dt: number };

const optsArb = fc.record({
  blockSize: fc.integer({ min: 1, max: 9000 }),
  initialBlocks: fc.integer({ min: 0, max: 200 }),
  minBlocks: fc.integer({ min: 1, max: 10 }),
  maxBytes: fc.integer({ min: 0, max: 4_000_000 }),
  lossReduction: fc.double({ min: 0.1, max: 0.95, noNaN: true }),
});

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant("ack" as const),
      dt: fc.integer({ min: 0, max: 30 }),
      age: fc.integer({ min: 0, max: 200 }),
      bytes: fc.integer({ min: 1, max: 100_000 }),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant("loss" as const),
      dt: fc.integer({ min: 0, max: 30 }),
      age: fc.integer({ min: 0, max: 200 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("persistent" as const),
      dt: fc.integer({ min: 0, max: 30 }),
    }),
  },
);

Deno.test("property: window stays within [floor, maxBytes]; acks grow, losses reduce once per episode", () => {
  fc.assert(
    fc.property(optsArb, fc.array(opArb, { maxLength: 300 }), (o, ops) => {
      const floor = o.minBlocks * o.blockSize;
      const ceiling = Math.max(floor, o.maxBytes);
      const clamp = (x: number) => Math.max(floor, Math.min(ceiling, x));
      const w = new CongestionWindow(o);
      assert.equal(w.bytes, clamp(o.initialBlocks * o.blockSize));

      let now = 0;
      let recoveryStart = -Infinity;
      for (const op of ops) {
        now += op.dt;
        const before = w.bytes;
        switch (op.kind) {
          case "ack": {
            const sentAt = now - op.age;
            const wasSlow = w.slowStart;
            w.onAck(op.bytes, sentAt);
            if (sentAt <= recoveryStart) assert.equal(w.bytes, before);
            else {
              assert.ok(w.bytes >= before);
              // at most one block per window acknowledged once out of slow start
              if (!wasSlow) {
                assert.ok(w.bytes <= before + (o.blockSize * op.bytes) / before + 1e-6);
              }
            }
            break;
          }
          case "loss": {
            const sentAt = now - op.age;
            w.onLoss(sentAt, now);
            if (sentAt <= recoveryStart) assert.equal(w.bytes, before);
            else {
              assert.equal(w.bytes, clamp(before * o.lossReduction));
              assert.equal(w.slowStart, false);
              recoveryStart = now;
            }
            break;
          }
          case "persistent":
            w.onPersistentLoss(now);
            assert.equal(w.bytes, floor);
            recoveryStart = now;
            break;
        }
        assert.ok(w.bytes >= floor, `${w.bytes} < floor ${floor}`);
        assert.ok(w.bytes <= ceiling, `${w.bytes} > ceiling ${ceiling}`);
        assert.ok(Number.isFinite(w.bytes));
      }
    }),
    { seed: 20240611, numRuns: 300 },
  );
});

Deno.test("loss tolerance: scattered random loss keeps the window, a burst reduces it", () => {
  const opts = {
    blockSize: 1000,
    initialBlocks: 20,
    minBlocks: 2,
    maxBytes: 1_000_000,
    lossReduction: 0.5,
    lossTolerance: 0.1,
  };
  const w = new CongestionWindow(opts);
  const start = w.bytes;
  // one block lost among 20 acked (5 %): tolerated
  for (let i = 0; i < 19; i++) w.onAck(1000, 1);
  w.onLoss(1, 2, 1000);
  assert.ok(w.bytes >= start, `window kept (${w.bytes})`);
  // a burst: 40 % of the next round lost
  const before = w.bytes;
  for (let i = 0; i < 3; i++) w.onAck(1000, 3);
  for (let i = 0; i < 3; i++) w.onLoss(3, 4, 1000);
  assert.ok(w.bytes < before, `window reduced (${before} -> ${w.bytes})`);
});
