import assert from "node:assert/strict";
import fc from "fast-check";
import { DEFAULT_RTT_OPTIONS, RttEstimator, type RttOptions } from "../../lib/engine/rtt.ts";
import {
  DEFAULT_HEALTH_OPTIONS,
  ERRORS_ONLY_MS,
  type HealthOptions,
  MAX_ERRORS_IN_ROW,
  REFUSED_DROP_MS,
  ServerHealth,
} from "../../lib/engine/server_health.ts";
import { ErrorCode } from "../../lib/wire/packet.ts";

const WIDE: RttOptions = { initialRtoMs: 1000, minRtoMs: 0, maxRtoMs: 1_000_000 };

// ---------------------------------------------------------------------------------------------
// RttEstimator
// ---------------------------------------------------------------------------------------------

Deno.test("rtt: before any sample the timeout is the initial one", () => {
  const r = new RttEstimator();
  assert.equal(r.srtt, undefined);
  assert.equal(r.rto(), DEFAULT_RTT_OPTIONS.initialRtoMs);
  assert.equal(new RttEstimator({ initialRtoMs: 777, minRtoMs: 1, maxRtoMs: 9999 }).rto(), 777);
});

Deno.test("rtt: default options are sane", () => {
  const o = DEFAULT_RTT_OPTIONS;
  assert.ok(o.minRtoMs > 0 && o.minRtoMs <= o.initialRtoMs && o.initialRtoMs <= o.maxRtoMs);
});

Deno.test("rtt: first sample sets srtt = r and rttvar = r/2 (RTO = 3r)", () => {
  const r = new RttEstimator(WIDE);
  r.addSample(100);
  assert.equal(r.srtt, 100);
  assert.equal(r.rto(), 100 + 4 * 50);
});

Deno.test("rtt: later samples use alpha = 1/8 and beta = 1/4, rttvar from the old srtt", () => {
  const r = new RttEstimator(WIDE);
  r.addSample(100); // srtt 100, rttvar 50
  r.addSample(200); // rttvar = 3/4·50 + 1/4·|100−200| = 62.5; srtt = 7/8·100 + 1/8·200 = 112.5
  assert.equal(r.srtt, 112.5);
  assert.equal(r.rto(), 112.5 + 4 * 62.5);
  r.addSample(112.5); // rttvar = 3/4·62.5 + 0 = 46.875; srtt unchanged
  assert.equal(r.srtt, 112.5);
  assert.equal(r.rto(), 112.5 + 4 * 46.875);
  r.addSample(40); // rttvar = 3/4·46.875 + 1/4·72.5 = 53.28125; srtt = 98.4375 + 5 = 103.4375
  assert.equal(r.srtt, 103.4375);
  assert.equal(r.rto(), 103.4375 + 4 * 53.28125);
});

Deno.test("rtt: constant samples converge to srtt = r, with the 1 ms floor on 4·rttvar", () => {
  const r = new RttEstimator(WIDE);
  for (let i = 0; i < 400; i++) r.addSample(50);
  assert.equal(r.srtt, 50);
  assert.ok(Math.abs(r.rto() - 51) < 1e-9, `rto ${r.rto()}`); // max(G = 1, 4·rttvar → 0)
});

Deno.test("rtt: zero and negative samples count as 0", () => {
  const r = new RttEstimator(WIDE);
  r.addSample(-25);
  assert.equal(r.srtt, 0);
  assert.equal(r.rto(), 1); // 0 + max(1, 0)
  const q = new RttEstimator(WIDE);
  q.addSample(0);
  assert.equal(q.srtt, 0);
  assert.equal(q.rto(), 1);
});

Deno.test("rtt: the timeout is clamped to [minRtoMs, maxRtoMs]", () => {
  const opts = { initialRtoMs: 300, minRtoMs: 40, maxRtoMs: 4000 };
  const lo = new RttEstimator(opts);
  lo.addSample(1); // 1 + 2 = 3 → 40
  assert.equal(lo.rto(), 40);
  const hi = new RttEstimator(opts);
  hi.addSample(5000); // 5000 + 10000 → 4000
  assert.equal(hi.rto(), 4000);
  assert.equal(hi.srtt, 5000, "srtt itself is not clamped");
});

Deno.test("rtt: backOff doubles the timeout up to maxRtoMs and stays there", () => {
  const r = new RttEstimator({ initialRtoMs: 300, minRtoMs: 40, maxRtoMs: 4000 });
  const seen: number[] = [];
  for (let i = 0; i < 8; i++) {
    r.backOff();
    seen.push(r.rto());
  }
  assert.deepEqual(seen, [600, 1200, 2400, 4000, 4000, 4000, 4000, 4000]);
});

Deno.test("rtt: backOff applies to the measured timeout too", () => {
  const r = new RttEstimator({ initialRtoMs: 300, minRtoMs: 40, maxRtoMs: 4000 });
  r.addSample(20); // 20 + 40 = 60
  assert.equal(r.rto(), 60);
  r.backOff();
  assert.equal(r.rto(), 120);
  r.backOff();
  assert.equal(r.rto(), 240);
});

Deno.test("rtt: a sample ends the backoff, with no multiplier left over", () => {
  const r = new RttEstimator({ initialRtoMs: 300, minRtoMs: 40, maxRtoMs: 4000 });
  for (let i = 0; i < 50; i++) r.backOff();
  assert.equal(r.rto(), 4000);
  r.addSample(100);
  assert.equal(r.rto(), 300);
  r.backOff();
  assert.equal(r.rto(), 600, "doubling restarts from the base timeout");
});

Deno.test("rtt: property — matches an RFC 6298 reference and stays within bounds", () => {
  fc.assert(
    fc.property(
      fc.array(fc.oneof(fc.double({ min: 0, max: 10_000, noNaN: true }), fc.constant(-1)), {
        minLength: 1,
        maxLength: 40,
      }),
      fc.array(fc.boolean(), { maxLength: 40 }),
      (samples, backoffs) => {
        const opts = { initialRtoMs: 300, minRtoMs: 40, maxRtoMs: 4000 };
        const r = new RttEstimator(opts);
        let srtt = NaN;
        let rttvar = NaN;
        samples.forEach((raw, i) => {
          const x = Math.max(0, raw);
          r.addSample(raw);
          if (i === 0) {
            srtt = x;
            rttvar = x / 2;
          } else {
            rttvar = (1 - 1 / 4) * rttvar + (1 / 4) * Math.abs(srtt - x);
            srtt = (1 - 1 / 8) * srtt + (1 / 8) * x;
          }
          const base = Math.min(4000, Math.max(40, srtt + Math.max(1, 4 * rttvar)));
          assert.ok(Math.abs(r.srtt! - srtt) <= 1e-9 * Math.max(1, srtt));
          assert.ok(Math.abs(r.rto() - base) <= 1e-9 * base, `${r.rto()} vs ${base}`);
          let expected = base;
          if (backoffs[i]) {
            r.backOff();
            expected = Math.min(4000, 2 * base);
            assert.ok(Math.abs(r.rto() - expected) <= 1e-9 * expected);
          }
          assert.ok(r.rto() >= 40 && r.rto() <= 4000);
        });
      },
    ),
    { seed: 6298, numRuns: 300 },
  );
});

// ---------------------------------------------------------------------------------------------
// ServerHealth
// ---------------------------------------------------------------------------------------------

const OPTS: HealthOptions = {
  maxTimeouts: 3,
  deadAfterMs: 1000,
  allSilentDeadAfterMs: 3000,
  rtt: { initialRtoMs: 100, minRtoMs: 10, maxRtoMs: 100_000 },
};

Deno.test("health: default options drop after ≥ 4 timeouts and 3 s of silence", () => {
  assert.equal(DEFAULT_HEALTH_OPTIONS.maxTimeouts, 4);
  assert.equal(DEFAULT_HEALTH_OPTIONS.deadAfterMs, 3000);
  const h = new ServerHealth(10_000);
  assert.equal(h.alive, true);
  assert.equal(h.dropReason, undefined);
  assert.equal(h.rtt.rto(), DEFAULT_HEALTH_OPTIONS.rtt.initialRtoMs);
});

Deno.test("health: many timeouts in a short silence do not drop the server", () => {
  const h = new ServerHealth(0, OPTS);
  for (let t = 1; t <= 50; t++) assert.equal(h.onTimeout(t - 1, t * 10), true, `t=${t * 10}`);
  assert.equal(h.alive, true);
});

Deno.test("health: a long silence with fewer than maxTimeouts timeouts does not drop it", () => {
  const h = new ServerHealth(0, OPTS);
  assert.equal(h.onTimeout(0, 50_000), true);
  assert.equal(h.onTimeout(50_000, 90_000), true);
  assert.equal(h.alive, true);
  assert.equal(h.onTimeout(90_000, 95_000), false, "third timeout after a long silence");
  assert.equal(h.alive, false);
});

Deno.test("health: dropped exactly when both limits are reached", () => {
  const h = new ServerHealth(0, OPTS);
  assert.equal(h.onTimeout(0, 100), true);
  assert.equal(h.onTimeout(100, 300), true);
  assert.equal(h.onTimeout(300, 999), true, "3 timeouts but 999 ms < 1000 ms of silence");
  assert.equal(h.alive, true);
  assert.equal(h.onTimeout(999, 1000), false);
  assert.equal(h.alive, false);
  assert.equal(h.dropReason, "no answer for 1.0 s");
});

Deno.test("health: silence is counted from the first contact, not from 0", () => {
  const h = new ServerHealth(5000, OPTS);
  for (let i = 0; i < 10; i++) assert.equal(h.onTimeout(5000 + i, 5500 + i), true);
  assert.equal(h.onTimeout(5900, 5999), true);
  assert.equal(h.onTimeout(5999, 6000), false);
});

Deno.test("health: onHeard resets both the timeout count and the silence", () => {
  const h = new ServerHealth(0, OPTS);
  h.onTimeout(0, 400);
  h.onTimeout(400, 800);
  h.onHeard(900);
  // Without the reset the next timeout (3rd, 1500 ms of silence) would drop the server.
  assert.equal(h.onTimeout(900, 1500), true, "count restarted: 1 timeout");
  assert.equal(h.onTimeout(1500, 1800), true, "2 timeouts");
  assert.equal(h.onTimeout(1800, 1899), true, "3 timeouts but only 999 ms since heard");
  assert.equal(h.onTimeout(1899, 1900), false, "4 timeouts and 1000 ms since heard");
  assert.equal(h.dropReason, "no answer for 1.0 s");
});

Deno.test("health: onHeard between timeouts keeps a flaky server alive indefinitely", () => {
  const h = new ServerHealth(0, OPTS);
  let t = 0;
  for (let i = 0; i < 100; i++) {
    t += 3000;
    assert.equal(h.onTimeout(t - 100, t), true);
    assert.equal(h.onTimeout(t - 50, t + 1), true);
    h.onHeard(t + 2);
  }
  assert.equal(h.alive, true);
});

Deno.test("health: requests timing out together back off only once per episode", () => {
  const h = new ServerHealth(0, OPTS);
  assert.equal(h.rtt.rto(), 100);
  // Ten requests sent at 0..9 ms all time out at 100..109 ms.
  for (let i = 0; i < 10; i++) h.onTimeout(i, 100 + i);
  assert.equal(h.rtt.rto(), 200, "one doubling for the episode");
  // A request sent after the first backoff starts a new episode.
  h.onTimeout(150, 350);
  assert.equal(h.rtt.rto(), 400);
  // Requests sent before that second backoff don't double it again.
  h.onTimeout(200, 360);
  h.onTimeout(349, 370);
  assert.equal(h.rtt.rto(), 400);
  h.onTimeout(351, 751);
  assert.equal(h.rtt.rto(), 800);
});

Deno.test("health: a fresh RTT sample ends the backoff", () => {
  const h = new ServerHealth(0, OPTS);
  h.onTimeout(0, 100);
  h.onTimeout(100, 300);
  assert.equal(h.rtt.rto(), 400);
  h.onHeard(310);
  h.rtt.addSample(20);
  assert.equal(h.rtt.rto(), 60);
});

Deno.test("health: drop(reason) keeps the first reason; timeouts after a drop change nothing", () => {
  const h = new ServerHealth(0, OPTS);
  h.drop("NOT_FOUND: gone");
  assert.equal(h.alive, false);
  h.drop("second reason");
  assert.equal(h.dropReason, "NOT_FOUND: gone");
  assert.equal(h.onTimeout(0, 100_000), false);
  assert.equal(h.onTimeout(0, 200_000), false);
  assert.equal(h.dropReason, "NOT_FOUND: gone");
  h.onHeard(300_000);
  assert.equal(h.alive, false, "hearing from a dropped server does not revive it");
});

Deno.test("health: a timeout drop is not overwritten by a later drop", () => {
  const h = new ServerHealth(0, OPTS);
  for (let i = 0; i < 3; i++) h.onTimeout(i * 1000, (i + 1) * 1000);
  assert.equal(h.alive, false);
  assert.equal(h.dropReason, "no answer for 3.0 s");
  h.drop("later");
  assert.equal(h.dropReason, "no answer for 3.0 s");
});

Deno.test("ServerHealth.onError: BUSY and INTERNAL back off, other errors drop the server", () => {
  const h = new ServerHealth(0);
  const before = h.rtt.rto();
  assert.equal(h.onError(ErrorCode.Busy, "hashing", 10), true);
  assert.ok(h.rtt.rto() > before, "backed off");
  assert.equal(h.onError(ErrorCode.Internal, "io", 20), true);
  assert.equal(h.onError(ErrorCode.Stale, "file changed", 30), false);
  assert.equal(h.alive, false);
  assert.equal(h.dropReason, "STALE: file changed");
});

Deno.test("health: when every server is silent (our outage), dropping waits longer", () => {
  assert.equal(DEFAULT_HEALTH_OPTIONS.allSilentDeadAfterMs, 10_000);
  const lone = new ServerHealth(0, OPTS);
  // nobody heard since t=0: the 1 s limit becomes 3 s
  for (let t = 500; t < 3000; t += 500) assert.equal(lone.onTimeout(t - 500, t, 0), true, `${t}`);
  assert.equal(lone.onTimeout(2999, 3000, 0), false);
  // another server heard recently: the usual 1 s applies
  const h = new ServerHealth(0, OPTS);
  h.onTimeout(0, 400, 900);
  h.onTimeout(400, 800, 900);
  assert.equal(h.onTimeout(800, 1000, 900), false);
});

Deno.test("ServerHealth.onError: only passing errors, for long enough, drop the server", () => {
  const h = new ServerHealth(0, OPTS);
  assert.equal(h.onError(ErrorCode.TooMany, "limit", 1), true, "TOO_MANY is passing");
  // many answers within one round trip are not enough...
  for (let i = 2; i <= 2 * MAX_ERRORS_IN_ROW; i++) {
    assert.equal(h.onError(ErrorCode.Busy, "b", i), true);
  }
  // ...nor is a long time with data in between
  h.onHeard(ERRORS_ONLY_MS);
  for (let i = 1; i < MAX_ERRORS_IN_ROW; i++) {
    assert.equal(h.onError(ErrorCode.Internal, "io", ERRORS_ONLY_MS + i * 2000), true, `${i}`);
  }
  // 32 in a row over 30 s: dropped
  assert.equal(h.onError(ErrorCode.Internal, "io", ERRORS_ONLY_MS + 32 * 2000), false);
  assert.match(h.dropReason ?? "", /only INTERNAL answers for 30 s/);
});

Deno.test("health: a server the network refuses is dropped after REFUSED_DROP_MS, not the silence limit", () => {
  const h = new ServerHealth(0);
  assert.equal(
    h.onUnreachable(100, "Connection refused"),
    true,
    "one refusal: a restart is allowed",
  );
  assert.equal(h.onUnreachable(100 + REFUSED_DROP_MS - 1, "Connection refused"), true);
  assert.equal(h.onUnreachable(100 + REFUSED_DROP_MS, "Connection refused"), false);
  assert.equal(h.dropReason, "connection refused");
  // heard from in between: it came back, and the count starts again
  const back = new ServerHealth(0);
  back.onUnreachable(100, "Connection refused");
  back.onHeard(500);
  assert.equal(back.onUnreachable(100 + REFUSED_DROP_MS, "Connection refused"), true);
  assert.equal(back.onUnreachable(1100 + REFUSED_DROP_MS, "Connection refused"), false);
});
