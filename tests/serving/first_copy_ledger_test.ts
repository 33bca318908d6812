import assert from "node:assert/strict";
import {
  type FirstCopyAnswer,
  FirstCopyLedger,
  FirstCopyLedgers,
  HASH_LIST_COPIES,
  HASH_LIST_RETRY_MS,
  HASH_LIST_WINDOW_MS,
  MAX_LEDGER_PIECES,
} from "../../lib/serving/first_copy_ledger.ts";
import { seededRandom } from "../../lib/sim/prng.ts";

const PIECE = 1000;

/** A request that is served when the ledger allows it (what the serve core does), at `now`. */
function ask(
  l: FirstCopyLedger,
  asker: string,
  offset: number,
  length: number,
  backlogMs = 0,
  now = 0,
) {
  const a: FirstCopyAnswer = l.check(now, asker, offset, length, backlogMs);
  if (a.kind === "serve") l.record(now, asker, offset, length);
  return a;
}

Deno.test("first copies: a piece goes to one swarm fetcher; another is told it was given out", () => {
  const l = new FirstCopyLedger(4 * PIECE, PIECE, seededRandom(1));
  assert.deepEqual(ask(l, "h1|1", 0, 500), { kind: "serve" });
  assert.equal(l.unsent, 3);
  assert.deepEqual(ask(l, "h1|1", 500, 500), { kind: "serve" }, "its own piece, again");
  const b = ask(l, "h2|1", 0, 1000);
  assert.equal(b.kind, "given_out");
  if (b.kind !== "given_out") return;
  assert.equal(b.piece, 0);
  assert.deepEqual([...b.unsent].sort(), [1, 2, 3], "the pieces never sent");
  assert.deepEqual(ask(l, "h2|1", 2000, 1000), { kind: "serve" }, "an unsent one is served");
});

Deno.test("first copies: after the first pass, a repeat only while the server's queue is short", () => {
  const l = new FirstCopyLedger(2 * PIECE, PIECE, seededRandom(2), { repeatBacklogMs: 50 });
  ask(l, "h1|1", 0, PIECE);
  assert.equal(ask(l, "h2|1", 0, PIECE, 0).kind, "given_out", "first pass: never, however idle");
  ask(l, "h3|1", PIECE, PIECE);
  assert.equal(l.unsent, 0);
  const busy = ask(l, "h2|1", 0, PIECE, 400);
  assert.deepEqual(busy, { kind: "given_out", piece: 0, unsent: [] }, "busy: peers relay it");
  assert.equal(ask(l, "h2|1", 0, PIECE, 20).kind, "serve", "spare upload: a repeat");
  assert.equal(ask(l, "h1|1", 0, PIECE, 400).kind, "serve", "its holder, always");
});

Deno.test("first copies: a request spanning a given-out piece is refused whole; a check records nothing", () => {
  const l = new FirstCopyLedger(3 * PIECE, PIECE, seededRandom(3));
  ask(l, "h1|1", PIECE, 1);
  const r = ask(l, "h2|1", 0, 3 * PIECE);
  assert.equal(r.kind, "given_out");
  assert.equal(r.kind === "given_out" && r.piece, 1);
  assert.equal(l.unsent, 2, "nothing of the refused request counts as given");
  assert.equal(l.check(2, "h2|1", 2 * PIECE, PIECE).kind, "serve");
  assert.equal(l.unsent, 2, "checked, not served (refused later, e.g. TOO_MANY): not given");
});

Deno.test("first copies: what plain requests are sent counts as sent, held by nobody", () => {
  const l = new FirstCopyLedger(3 * PIECE, PIECE, seededRandom(7));
  l.record(0, undefined, 0, 2 * PIECE); // a plain fetcher got pieces 0 and 1
  assert.equal(l.unsent, 1);
  assert.equal(ask(l, "h2|1", 0, PIECE).kind, "serve", "nobody holds it for the swarm");
  const r = ask(l, "h3|1", 2 * PIECE, PIECE);
  assert.equal(r.kind, "serve");
  assert.equal(l.unsent, 0);
});

Deno.test("first copies: hints are distinct unsent pieces, a few at most", () => {
  const l = new FirstCopyLedger(1000 * PIECE, PIECE, seededRandom(4), { hints: 8 });
  ask(l, "h1|1", 0, PIECE);
  for (let k = 0; k < 50; k++) {
    const r = ask(l, "h2|1", 0, PIECE);
    assert.ok(r.kind === "given_out");
    assert.ok(r.unsent.length > 0 && r.unsent.length <= 8);
    assert.equal(new Set(r.unsent).size, r.unsent.length);
    assert.ok(!r.unsent.includes(0), "never the piece already given");
  }
});

Deno.test("first copies: ledgers are bounded; a full table makes room only from idle ones", () => {
  const ls = new FirstCopyLedgers(2, seededRandom(5));
  const one = ls.of(0, 1n, 10 * PIECE, PIECE)!;
  assert.equal(one.pieceCount, 10);
  assert.equal(ls.of(1, 1n, 10 * PIECE, PIECE), one, "the same file, the same ledger");
  assert.ok(ls.of(2, 2n, PIECE, PIECE));
  assert.equal(ls.of(3, 3n, PIECE, PIECE), undefined, "full, nobody idle: served plainly");
  assert.equal(ls.of(4, 1n, 10 * PIECE, PIECE), one, "cycling files rebuilds nothing");
  const later = 4 + 60_000;
  ls.of(later, 1n, 10 * PIECE, PIECE); // file 1 stays in use; file 2 has been idle a minute
  assert.ok(ls.of(later, 3n, PIECE, PIECE), "an idle ledger made room");
  assert.equal(ls.of(later, 1n, 10 * PIECE, PIECE), one, "the busy one was kept");
  assert.equal(ls.existing(later, 2n, PIECE), undefined, "the idle one is gone");
  assert.equal(ls.of(later, 9n, (MAX_LEDGER_PIECES + 1) * PIECE, PIECE), undefined, "too big");
});

Deno.test("first copies: a busy server still repeats a piece not sent for a while (nothing withheld for good)", () => {
  const l = new FirstCopyLedger(2 * PIECE, PIECE, seededRandom(8), { repeatAfterMs: 5000 });
  ask(l, "h1|1", 0, PIECE, 0, 0);
  ask(l, "h2|1", PIECE, PIECE, 0, 0); // the first pass is over
  assert.equal(ask(l, "h3|1", 0, PIECE, 400, 4000).kind, "given_out", "busy, sent 4 s ago");
  assert.equal(ask(l, "h3|1", 0, PIECE, 400, 5001).kind, "serve", "busy, but not sent for 5 s");
  assert.equal(ask(l, "h2|1", 0, PIECE, 400, 6000).kind, "given_out", "just sent again");
});

Deno.test("first copies: a host claims at most a few pieces it has not been sent whole", () => {
  const l = new FirstCopyLedger(10 * PIECE, PIECE, seededRandom(9), { maxOpenClaims: 2 });
  // one-byte requests: each would claim a whole piece for nothing
  for (let p = 0; p < 4; p++) ask(l, `liar|${p}`, p * PIECE, 1);
  assert.equal(ask(l, "h2|1", 0, PIECE).kind, "given_out", "the first two are claimed");
  assert.equal(ask(l, "h2|1", 2 * PIECE, PIECE).kind, "serve", "the third was not: the cap");
  // an honest fetcher completes its piece: its claim closes, and it may claim again
  ask(l, "h3|1", 5 * PIECE, PIECE / 2);
  ask(l, "h3|1", 5 * PIECE + PIECE / 2, PIECE / 2);
  ask(l, "h3|1", 6 * PIECE, 10);
  ask(l, "h3|2", 7 * PIECE, 10); // (another port of the same host: two open now)
  assert.equal(ask(l, "h4|1", 7 * PIECE, PIECE).kind, "given_out");
  ask(l, "h3|2", 8 * PIECE, 10); // a third open claim: over the cap, not held
  assert.equal(ask(l, "h4|1", 8 * PIECE, PIECE).kind, "serve");
});

Deno.test("ledger: the hash list goes to 8 swarm fetchers per 2 s (each again), the rest BUSY ~300 ms", () => {
  const l = new FirstCopyLedger(64 * PIECE, PIECE, () => 0.5);
  for (let i = 0; i < HASH_LIST_COPIES; i++) assert.equal(l.hashList(0, `10.0.0.${i}|9`), 0);
  assert.equal(l.hashList(5, "10.0.0.3|9"), 0, "one of them again: its other ranges");
  assert.equal(l.hashList(5, "10.0.0.99|9"), HASH_LIST_RETRY_MS, "the ninth: BUSY");
  assert.equal(l.hashList(5, "10.0.0.0|10"), HASH_LIST_RETRY_MS, "another port is another asker");
  assert.equal(l.hashList(HASH_LIST_WINDOW_MS - 1, "10.0.0.99|9"), HASH_LIST_RETRY_MS);
  assert.equal(l.hashList(HASH_LIST_WINDOW_MS, "10.0.0.99|9"), 0, "the window has passed");
});
