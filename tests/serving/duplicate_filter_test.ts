import assert from "node:assert/strict";
import {
  DUPLICATE_WINDOW_MS,
  DuplicateFilter,
  requestKey,
} from "../../lib/serving/duplicate_filter.ts";

Deno.test("duplicate filter: the second copy of a request is a duplicate, once", () => {
  const f = new DuplicateFilter();
  assert.equal(f.seen(0xdeadbeef, 1, "10.0.0.1", 5000, 0), false);
  assert.equal(f.seen(0xdeadbeef, 1, "10.0.0.1", 5000, 1), true, "the copy");
  assert.equal(f.seen(0xdeadbeef, 1, "10.0.0.1", 5000, 2), true, "and a third");
});

Deno.test("duplicate filter: another address, port, id or content is another request", () => {
  const f = new DuplicateFilter();
  f.seen(7, 1, "10.0.0.1", 5000, 0);
  assert.equal(f.seen(7, 2, "10.0.0.1", 5000, 1), false, "same id asking for something else");
  assert.equal(f.seen(7, 1, "10.0.0.2", 5000, 1), false, "other host");
  assert.equal(f.seen(8, 1, "10.0.0.2", 5000, 1), false, "other id");
  assert.equal(f.seen(8, 1, "10.0.0.2", 5001, 1), false, "other port");
});

Deno.test("duplicate filter: an id is forgotten after the window, or when its slot is taken", () => {
  const f = new DuplicateFilter();
  f.seen(9, 1, "h", 1, 0);
  assert.equal(f.seen(9, 1, "h", 1, DUPLICATE_WINDOW_MS + 1), false, "a request, not a copy");
  f.seen(10, 1, "h", 1, 0);
  f.seen(10 + 8192, 1, "h", 1, 0); // same slot (the table is bounded)
  assert.equal(f.seen(10, 1, "h", 1, 1), false, "forgotten: at worst answered twice, as before");
});

Deno.test("duplicate filter: the key tells requests apart by what they ask for", () => {
  const chunk = (offset: number) => ({
    type: "chunk_request" as const,
    requestId: 1,
    token: new Uint8Array(16),
    fileId: 5n,
    offset,
    length: 2888,
    blockSize: 1444,
    name: "f",
  });
  assert.equal(requestKey(chunk(0)), requestKey(chunk(0)));
  assert.notEqual(requestKey(chunk(0)), requestKey(chunk(1444)));
  const meta = (name: string) => ({
    type: "meta_request" as const,
    requestId: 1,
    token: new Uint8Array(16),
    name,
  });
  assert.notEqual(requestKey(meta("a")), requestKey(meta("b")));
});
