import assert from "node:assert/strict";
import {
  type FirstCopyAnswer,
  FirstCopyLedger,
  FirstCopyLedgers,
  MAX_LEDGER_PIECES,
} from "../../lib/serving/first_copy_ledger.ts";
import { seededRandom } from "../../lib/sim/prng.ts";

const PIECE = 1000;

/** A request that is served when the ledger allows it (what the serve core does). */
function ask(l: FirstCopyLedger, now: number, asker: string, offset: number, length: number) {
  const a: FirstCopyAnswer = l.check(now, asker, offset, length);
  if (a.kind === "serve") l.record(now, asker, offset, length);
  return a;
}

Deno.test("first copies: a piece goes to one swarm fetcher; another is told it was given out", () => {
  const l = new FirstCopyLedger(4, PIECE, seededRandom(1), { holdMs: 100 });
  assert.deepEqual(ask(l, 0, "a", 0, 500), { kind: "serve" });
  assert.equal(l.unsent, 3);
  assert.deepEqual(ask(l, 1, "a", 500, 500), { kind: "serve" }, "its own piece, again");
  const b = ask(l, 2, "b", 0, 1000);
  assert.equal(b.kind, "given_out");
  if (b.kind !== "given_out") return;
  assert.equal(b.piece, 0);
  assert.deepEqual([...b.unsent].sort(), [1, 2, 3], "the pieces never sent");
  assert.deepEqual(ask(l, 3, "b", 2000, 1000), { kind: "serve" }, "an unsent one is served");
});

Deno.test("first copies: the hold runs once from the first grant; asking again does not renew it", () => {
  const l = new FirstCopyLedger(3, PIECE, seededRandom(2), { holdMs: 100 });
  ask(l, 0, "a", 0, PIECE);
  assert.equal(ask(l, 50, "b", 0, PIECE).kind, "given_out");
  assert.equal(ask(l, 90, "a", 0, 1).kind, "serve", "its holder asks again (one block)");
  assert.equal(ask(l, 101, "b", 0, PIECE).kind, "serve", "100 ms after the grant: anyone");
  assert.equal(ask(l, 102, "a", 0, PIECE).kind, "serve", "and nobody holds it again");
  assert.equal(ask(l, 103, "c", 0, PIECE).kind, "serve");
  ask(l, 170, "c", PIECE, 2 * PIECE); // spans pieces 1 and 2: every piece went out
  assert.equal(l.unsent, 0);
  assert.equal(ask(l, 171, "a", PIECE, PIECE).kind, "serve", "the first pass is over: repeats");
});

Deno.test("first copies: a request spanning a given-out piece is refused whole; a check records nothing", () => {
  const l = new FirstCopyLedger(3, PIECE, seededRandom(3));
  ask(l, 0, "a", PIECE, 1);
  const r = ask(l, 1, "b", 0, 3 * PIECE);
  assert.equal(r.kind, "given_out");
  assert.equal(r.kind === "given_out" && r.piece, 1);
  assert.equal(l.unsent, 2, "nothing of the refused request counts as given");
  assert.equal(l.check(2, "b", 2 * PIECE, PIECE).kind, "serve");
  assert.equal(l.unsent, 2, "checked, not served (refused later, e.g. TOO_MANY): not given");
});

Deno.test("first copies: hints are distinct unsent pieces, a few at most", () => {
  const l = new FirstCopyLedger(1000, PIECE, seededRandom(4), { hints: 8 });
  ask(l, 0, "a", 0, PIECE);
  for (let k = 0; k < 50; k++) {
    const r = ask(l, 1, "b", 0, PIECE);
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
  assert.equal(
    ls.of(3, 3n, PIECE, PIECE),
    undefined,
    "full, nobody idle: no ledger (served plainly)",
  );
  assert.equal(ls.of(4, 1n, 10 * PIECE, PIECE), one, "cycling files rebuilds nothing");
  const later = 4 + 60_000;
  ls.of(later, 1n, 10 * PIECE, PIECE); // file 1 stays in use; file 2 has been idle a minute
  const three = ls.of(later, 3n, PIECE, PIECE);
  assert.ok(three, "an idle ledger made room");
  assert.equal(ls.of(later, 1n, 10 * PIECE, PIECE), one, "the busy one was kept");
  assert.equal(ls.of(later, 9n, (MAX_LEDGER_PIECES + 1) * PIECE, PIECE), undefined, "too big");
});

Deno.test("first copies: a holder gone quiet releases its piece after the relay time", () => {
  const l = new FirstCopyLedger(3, PIECE, seededRandom(6), { holdMs: 10_000, relayMs: 500 });
  ask(l, 0, "a", 0, PIECE / 2);
  ask(l, 400, "a", PIECE / 2, PIECE / 2); // still on it
  assert.equal(ask(l, 800, "b", 0, PIECE).kind, "given_out", "400 ms after its last request");
  assert.equal(ask(l, 901, "b", 0, PIECE).kind, "serve", "500 ms quiet: it left, or is done");
});

Deno.test("first copies: what plain requests are sent counts as sent, held by nobody", () => {
  const l = new FirstCopyLedger(3, PIECE, seededRandom(7));
  l.record(0, undefined, 0, 2 * PIECE); // a plain fetcher got pieces 0 and 1
  assert.equal(l.unsent, 1);
  assert.equal(ask(l, 1, "b", 0, PIECE).kind, "serve", "nobody holds it for the swarm");
  ask(l, 2, "a", 2 * PIECE, PIECE);
  const r = ask(l, 3, "b", 2 * PIECE, PIECE);
  assert.equal(r.kind, "serve", "every piece went out: no more refusals");
});
