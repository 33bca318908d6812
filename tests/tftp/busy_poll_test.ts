import assert from "node:assert/strict";
import {
  BusyPoll,
  HIT_US,
  INITIAL_SPIN_US,
  MAX_SPIN_US,
  PROBE_BLOCKS,
  RUN_BLOCKS,
} from "../../lib/tftp/busy_poll.ts";

/** Feeds `n` ACKs spaced `perAckMs` apart from `t`, each a hit or a miss; returns the new time. */
function feed(p: BusyPoll, t: number, n: number, perAckMs: number, hit = true): number {
  for (let i = 0; i < n; i++) {
    t += perAckMs;
    p.record(t, p.next(), hit ? 1 : HIT_US + 10);
  }
  return t;
}

Deno.test("busy poll: the spin shortens on hits and lengthens on misses, within bounds", () => {
  const p = new BusyPoll();
  assert.equal(p.next(), INITIAL_SPIN_US);
  feed(p, 0, 10, 0.05, false);
  assert.equal(p.next(), INITIAL_SPIN_US + 20);
  feed(p, 1, 100, 0.05, false);
  assert.equal(p.next(), MAX_SPIN_US);
  feed(p, 10, 40, 0.05, true);
  assert.equal(p.next(), MAX_SPIN_US - 10);
});

Deno.test("busy poll: keeps spinning when spinning made round trips shorter", () => {
  const p = new BusyPoll();
  let t = feed(p, 0, PROBE_BLOCKS + 1, 0.04); // probe with spinning: 40 µs per ACK
  assert.equal(p.spinning, false, "now the probe without");
  t = feed(p, t, PROBE_BLOCKS + 1, 0.07); // 70 µs per ACK without
  assert.equal(p.spinning, true, "spinning won");
  t = feed(p, t, RUN_BLOCKS, 0.04);
  assert.equal(p.spinning, true);
  feed(p, t, 1, 0.04);
  assert.equal(p.spinning, true, "and probes again, starting with spinning");
});

Deno.test("busy poll: stops spinning when spinning made round trips longer (client on our CPU)", () => {
  const p = new BusyPoll();
  let t = feed(p, 0, PROBE_BLOCKS + 1, 0.03, false); // spinning delays the client: 30 µs
  t = feed(p, t, PROBE_BLOCKS + 1, 0.02); // without: 20 µs
  assert.equal(p.spinning, false);
  assert.equal(p.next(), 0);
  t = feed(p, t, RUN_BLOCKS + 1, 0.02);
  assert.equal(p.spinning, true, "tried again after RUN_BLOCKS");
});
