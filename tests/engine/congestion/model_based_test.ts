import assert from "node:assert/strict";
import { ModelBasedController } from "../../../lib/engine/congestion/model_based.ts";
import type { RateSample } from "../../../lib/engine/congestion/controller.ts";

const BLOCK = 1444;

function controller(): ModelBasedController {
  return new ModelBasedController({
    initialWindow: 64 * BLOCK,
    initialRttMs: 10,
    minWindow: 4 * BLOCK,
    maxWindow: 64 << 20,
  });
}

/**
 * One round trip of a path at `rate` bytes/ms: `inflight` bytes out, answered after `rttMs`,
 * `lostBlocks` of them lost. Returns the time at its end.
 */
function round(
  cc: ModelBasedController,
  now: number,
  o: { rate: number; rttMs: number; inflight: number; lostBlocks?: number },
): number {
  const blocks = Math.max(1, Math.floor(o.inflight / BLOCK));
  for (let i = 0; i < blocks; i++) cc.onSent(now, BLOCK, (i + 1) * BLOCK);
  const sample: RateSample = {
    delivered: 0,
    intervalMs: o.rttMs,
    rttMs: o.rttMs,
    appLimited: false,
    priorInflight: o.inflight,
  };
  // deliveries first (the first one starts the round), then the losses they revealed
  const lost = Math.min(blocks - 1, o.lostBlocks ?? 0);
  for (let i = 0; i < blocks - lost; i++) {
    sample.delivered = o.rate * o.rttMs;
    cc.onDelivered(now + o.rttMs + i * BLOCK / o.rate, BLOCK, sample, i === 0);
  }
  for (let i = 0; i < lost; i++) cc.onLost(now + o.rttMs + blocks * BLOCK / o.rate, BLOCK);
  return now + o.rttMs + blocks * BLOCK / o.rate;
}

/** Rounds at 4 MB/s (4000 bytes/ms) × 10 ms until the controller cruises in probe_bw. */
function cruising(): { cc: ModelBasedController; now: number } {
  const cc = controller();
  let now = 0;
  for (let i = 0; i < 30; i++) {
    now = round(cc, now, { rate: 4000, rttMs: 10, inflight: cc.window() });
  }
  assert.equal(cc.mode, "probe_bw");
  return { cc, now };
}

Deno.test("model-based: an overflowing queue (loss with inflated round trips) caps what is in flight, not the rate", () => {
  const { cc, now: t0 } = cruising();
  const rate = cc.bottleneckRate;
  const before = cc.window();
  // the queue is full: every round trip 10 ms above the minimum, a few blocks lost (< 2 %)
  let now = round(cc, t0, { rate: 4000, rttMs: 20, inflight: before, lostBlocks: 2 });
  now = round(cc, now, { rate: 4000, rttMs: 20, inflight: before, lostBlocks: 2 });
  round(cc, now, { rate: 4000, rttMs: 10, inflight: cc.window() }); // (judged as it starts)
  assert.ok(cc.window() <= 0.86 * before, `window ${cc.window()} of ${before}`);
  assert.ok(cc.bottleneckRate >= 0.99 * rate, "the rate model is kept");
  assert.match(cc.describe(), /hi \d+ kB/);
});

Deno.test("model-based: random loss on a path without a queue leaves the window alone", () => {
  const { cc, now: t0 } = cruising();
  const before = cc.window();
  let now = t0;
  for (let i = 0; i < 10; i++) {
    now = round(cc, now, { rate: 4000, rttMs: 10, inflight: cc.window(), lostBlocks: 5 });
  }
  assert.ok(cc.window() >= 0.99 * before, `window ${cc.window()} of ${before}`);
  assert.doesNotMatch(cc.describe(), /hi /);
});

Deno.test("model-based: the in-flight ceiling grows back in rounds without congestion", () => {
  const { cc, now: t0 } = cruising();
  const before = cc.window();
  let now = round(cc, t0, { rate: 4000, rttMs: 20, inflight: cc.window(), lostBlocks: 2 });
  now = round(cc, now, { rate: 4000, rttMs: 20, inflight: cc.window(), lostBlocks: 2 });
  now = round(cc, now, { rate: 4000, rttMs: 10, inflight: cc.window() });
  const capped = cc.window();
  for (let i = 0; i < 40; i++) {
    now = round(cc, now, { rate: 4000, rttMs: 10, inflight: cc.window() });
  }
  assert.ok(capped < 0.9 * before);
  // back to two bandwidth-delay products: the ceiling has grown past them
  assert.equal(cc.window(), before, `window ${cc.window()} after ${capped}`);
});

Deno.test("model-based: a quarter of a round lost cuts the rate model too", () => {
  const { cc, now: t0 } = cruising();
  const rate = cc.bottleneckRate;
  const w = cc.window();
  const now = round(cc, t0, {
    rate: 2000,
    rttMs: 10,
    inflight: w,
    lostBlocks: Math.ceil(0.4 * w / BLOCK),
  });
  round(cc, now, { rate: 2000, rttMs: 10, inflight: w });
  assert.ok(cc.bottleneckRate < 0.9 * rate, `rate ${cc.bottleneckRate} of ${rate}`);
});

Deno.test("model-based: a standing queue with light loss, round after round, never takes the window below 85 % of the path's BDP", () => {
  const { cc, now: t0 } = cruising();
  const bdp = cc.bottleneckRate * cc.minRtt;
  let now = t0;
  for (let i = 0; i < 30; i++) {
    now = round(cc, now, { rate: 4000, rttMs: 20, inflight: cc.window(), lostBlocks: 1 });
  }
  assert.ok(cc.window() >= 0.85 * bdp - 1, `window ${cc.window()}, BDP ${bdp}`);
});

Deno.test("model-based: rounds with little in flight (the file's tail) do not leave a ceiling of a few blocks", () => {
  const { cc, now: t0 } = cruising();
  const bdp = cc.bottleneckRate * cc.minRtt;
  let now = round(cc, t0, { rate: 4000, rttMs: 20, inflight: 4 * BLOCK, lostBlocks: 1 });
  now = round(cc, now, { rate: 4000, rttMs: 20, inflight: 4 * BLOCK, lostBlocks: 1 });
  round(cc, now, { rate: 4000, rttMs: 10, inflight: cc.window() });
  assert.ok(cc.window() >= 0.85 * bdp - 1, `window ${cc.window()}, BDP ${bdp}`);
});
