import assert from "node:assert/strict";
import { MIN_BAD_TO_EXCLUDE, SourceLedger } from "../../lib/engine/blame.ts";
import { mulberry32 } from "../relay.ts";

Deno.test("blame: a sole source failing twice (and never passing) is excluded", () => {
  assert.equal(MIN_BAD_TO_EXCLUDE, 2);
  const l = new SourceLedger();
  l.record(3, 1);
  l.record(3, 1);
  assert.deepEqual(l.corrupt(3), [], "one bad piece may be a damaged datagram");
  assert.deepEqual(l.corrupt(3), [], "the piece's sources were forgotten");
  l.record(4, 1);
  assert.deepEqual(l.corrupt(4), [1]);
});

Deno.test("blame: shared blame counts a share per source", () => {
  const l = new SourceLedger();
  for (let piece = 0; piece < 3; piece++) {
    l.record(piece, 1);
    l.record(piece, 2);
    assert.deepEqual(l.corrupt(piece), [], `half a piece each after ${piece + 1}`);
  }
  l.record(3, 1);
  l.record(3, 2);
  assert.deepEqual(l.corrupt(3), [1, 2], "two pieces' worth of blame each");
});

Deno.test("blame: verified pieces carry no blame", () => {
  const l = new SourceLedger();
  l.record(5, 0);
  l.verified(5);
  assert.deepEqual(l.corrupt(5), []);
});

Deno.test("blame: a mostly good server survives occasional bad pieces; a liar does not", () => {
  const random = mulberry32(42);
  const l = new SourceLedger();
  const excluded = new Set<number>();
  // server 0: 25 % of its pieces fail (a noisy path); server 1: 90 % fail (a liar)
  for (let piece = 0; piece < 400; piece++) {
    const server = piece % 2;
    l.record(piece, server);
    const fails = random() < (server === 0 ? 0.25 : 0.9);
    if (fails) { for (const s of l.corrupt(piece)) excluded.add(s); }
    else l.verified(piece);
  }
  assert.deepEqual([...excluded], [1]);
});

Deno.test("blame: six pieces shared three ways add up to two (no rounding escape)", () => {
  const l = new SourceLedger();
  let excluded: number[] = [];
  for (let piece = 0; piece < 6; piece++) {
    for (const s of [1, 2, 3]) l.record(piece, s);
    excluded = l.corrupt(piece);
    if (piece < 5) assert.deepEqual(excluded, [], `after ${piece + 1}`);
  }
  assert.deepEqual(excluded, [1, 2, 3]);
});

Deno.test("ledger: an untrusted source goes on its first bad piece of its own, a server does not", () => {
  const l = new SourceLedger();
  const peer = (s: number) => s >= 100;
  for (let p = 10; p < 20; p++) (l.record(p, 0), l.verified(p)); // the server's good record
  l.record(1, 100);
  assert.deepEqual(l.corrupt(1, peer), [100], "a peer's own bad piece excludes it");
  l.record(2, 0);
  assert.deepEqual(l.corrupt(2, peer), [], "a server keeps its benefit of the doubt");
  // a piece a peer had a hand in is the peer's fault alone: the server is never blamed for it
  for (let p = 3; p < 8; p++) (l.record(p, 0), l.record(p, 100 + p));
  for (let p = 3; p < 8; p++) assert.deepEqual(l.corrupt(p, peer), [100 + p]);
  l.record(9, 0);
  l.record(9, 0);
  assert.deepEqual(l.corrupt(9, peer), [], "still the benefit of the doubt for the server");
});
