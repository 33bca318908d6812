import assert from "node:assert/strict";
import fc from "fast-check";
import { formatGivenOut, MAX_UNSENT_HINTS, parseGivenOut } from "../../lib/wire/given_out.ts";
import { MAX_ERROR_MESSAGE_BYTES } from "../../lib/wire/packet.ts";

Deno.test("given out: the unsent pieces round-trip through the message", () => {
  assert.equal(formatGivenOut([12, 57, 301]), "given out; unsent 12 57 301");
  assert.deepEqual(parseGivenOut("given out; unsent 12 57 301", 1000), [12, 57, 301]);
  assert.deepEqual(parseGivenOut(formatGivenOut([]), 10), [], "a server may name none");
});

Deno.test("given out: anything else names no piece; pieces past the file are dropped", () => {
  assert.deepEqual(parseGivenOut("sent to someone else", 10), []);
  assert.deepEqual(parseGivenOut("given out; unsent 1 x 2", 10), []);
  assert.deepEqual(parseGivenOut("given out; unsent 1 2 ", 10), [], "no trailing space");
  assert.deepEqual(
    parseGivenOut("given out; unsent 3 99 3 4", 10),
    [3, 4],
    "distinct, in the file",
  );
});

Deno.test("given out: any list fits the error message and parses back to at most the cap", () => {
  fc.assert(fc.property(fc.array(fc.nat(2 ** 31), { maxLength: 100 }), (pieces) => {
    const text = formatGivenOut(pieces);
    assert.ok(new TextEncoder().encode(text).length <= MAX_ERROR_MESSAGE_BYTES);
    const back = parseGivenOut(text, 2 ** 32);
    assert.ok(back.length <= MAX_UNSENT_HINTS);
    assert.equal(new Set(back).size, back.length);
    assert.ok(back.every((p) => pieces.includes(p)));
    if (pieces.length > 0) assert.equal(back[0], pieces[0]);
  }));
});
