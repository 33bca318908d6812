import assert from "node:assert/strict";
import fc from "fast-check";
import { MAX_PUT_SLOTS, RequestTable } from "../../lib/engine/request_table.ts";

Deno.test("request table: get, free, set, delete; a taken slot is refused", () => {
  const t = new RequestTable<string>();
  assert.equal(t.get(5), undefined);
  t.set(5, "a");
  assert.equal(t.get(5), "a");
  assert.equal(t.get(5 + 1024), undefined, "same slot, other id: not found");
  assert.equal(t.free(5 + 1024), false);
  assert.throws(() => t.set(5 + 1024, "b"), /slot/);
  assert.equal(t.delete(5), true);
  assert.equal(t.size, 0);
});

Deno.test("request table: put keeps both of two ids in one slot by growing, and evicts only at its cap", () => {
  const t = new RequestTable<string>();
  t.put(5, "a");
  t.put(5 + 1024, "b"); // (the same slot of 1024: the table doubles and they part)
  t.put(5 + 1024, "b2"); // (the same id again: replaced)
  assert.equal(t.get(5), "a");
  assert.equal(t.get(5 + 1024), "b2");
  assert.equal(t.size, 2);
  t.put(5 + MAX_PUT_SLOTS, "c"); // (parts from 5 only past the cap: 5 is evicted)
  assert.equal(t.get(5), undefined);
  assert.equal(t.get(5 + MAX_PUT_SLOTS), "c");
  assert.equal(t.get(5 + 1024), "b2");
  assert.equal(t.size, 2);
});

Deno.test("request table: property — behaves as a Map of the ids it accepted, through growth", () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 0xffffffff })), {
        maxLength: 3000,
      }),
      (ops) => {
        const t = new RequestTable<number>();
        const m = new Map<number, number>();
        for (const [add, id] of ops) {
          if (add && t.free(id)) {
            t.set(id, id ^ 1);
            m.set(id, id ^ 1);
          } else if (!add) {
            assert.equal(t.delete(id), m.delete(id));
          }
          assert.equal(t.size, m.size);
        }
        for (const [id, v] of m) assert.equal(t.get(id), v);
        for (const [, id] of ops) if (!m.has(id)) assert.equal(t.get(id), undefined);
      },
    ),
    { seed: 8, numRuns: 60 },
  );
});
