import assert from "node:assert/strict";
import fc from "fast-check";
import { formatBusyProgress, parseBusyProgress } from "../../lib/wire/busy_progress.ts";

Deno.test("parseBusyProgress: reads what formatBusyProgress writes", () => {
  assert.equal(formatBusyProgress(123456789, 1073741824), "hashing 123456789/1073741824");
  assert.deepEqual(parseBusyProgress("hashing 123456789/1073741824"), {
    done: 123456789,
    total: 1073741824,
  });
  assert.deepEqual(parseBusyProgress("hashing 0/0"), { done: 0, total: 0 });
  assert.deepEqual(parseBusyProgress("hashing 5/10 (from cache)"), { done: 5, total: 10 });
  fc.assert(fc.property(fc.nat(), fc.nat(), (a, b) => {
    const [done, total] = a <= b ? [a, b] : [b, a];
    assert.deepEqual(parseBusyProgress(formatBusyProgress(done, total)), { done, total });
  }));
});

Deno.test("parseBusyProgress: anything else carries no progress", () => {
  for (
    const m of [
      "",
      "computing digest, retry",
      "hashing",
      "hashing /10",
      "hashing 5/",
      "hashing 11/10", // more done than there is
      "hashing -1/10",
      "hashing 1.5/10",
      "hashing 5/10/20",
      "hashing 5/105x".slice(0, 10),
      " hashing 5/10",
      "HASHING 5/10",
      "hashing 99999999999999999/99999999999999999", // beyond safe integers
    ]
  ) {
    assert.equal(parseBusyProgress(m), undefined, JSON.stringify(m));
  }
});

Deno.test("formatBusyProgress: never claims more than the total", () => {
  assert.equal(formatBusyProgress(20, 10), "hashing 10/10");
});
