import assert from "node:assert/strict";
import fc from "fast-check";
import { RequestTable } from "../../lib/engine/request_table.ts";

Deno.test("request table: get, free, set, delete; a taken slot is refused", () => {
  const t = new RequestTable<string>();
  assert.equal(t.get(5), undefined);
  t.set(5, "a");
  assert.equal(t.get(5), "a");
  assert.equal(t.get(5 + 1024), undefined, "same slot, other id: not found");
  assert.equal(t.free(5 + 1024), false);
  assert.throws(() => t.set(5 + 1024, "b"), /slot/);
  t.put(5 + 1024, "b"); // (remembering tables evict the occupant)
  assert.equal(t.get(5), undefined);
  assert.equal(t.get(5 + 1024), "b");
  assert.equal(t.delete(5), false);
  assert.equal(t.delete(5 + 1024), true);
  assert.equal(t.size, 0);
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
