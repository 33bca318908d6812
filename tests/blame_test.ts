import assert from "node:assert/strict";
import { SourceLedger, STRIKES_TO_EXCLUDE } from "../lib/blame.ts";

Deno.test("blame: a sole source of a corrupt piece is excluded at once", () => {
  const l = new SourceLedger();
  l.record(3, 1);
  l.record(3, 1);
  assert.deepEqual(l.corrupt(3), [1]);
  assert.deepEqual(l.corrupt(3), [], "the piece's sources were forgotten");
});

Deno.test("blame: shared blame excludes after repeated offences only", () => {
  assert.equal(STRIKES_TO_EXCLUDE, 2);
  const l = new SourceLedger();
  l.record(0, 1);
  l.record(0, 2);
  assert.deepEqual(l.corrupt(0), [], "first strike for both");
  l.record(1, 2);
  l.record(1, 3);
  assert.deepEqual(l.corrupt(1), [2], "server 2 offended twice");
});

Deno.test("blame: verified pieces carry no blame", () => {
  const l = new SourceLedger();
  l.record(5, 0);
  l.verified(5);
  assert.deepEqual(l.corrupt(5), []);
});
