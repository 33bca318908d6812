import assert from "node:assert/strict";
import { KeyedHeap } from "../../lib/base/keyed_heap.ts";
import { mulberry32 } from "../relay.ts";

Deno.test("keyed heap: ids come out smallest key first, and only when due", () => {
  const h = new KeyedHeap();
  assert.equal(h.nextKey, Infinity);
  assert.equal(h.nextId, undefined);
  assert.equal(h.popDue(), undefined);
  for (const [key, id] of [[5, 50], [-2, 20], [9, 90], [0, 1]]) h.push(key, id);
  assert.equal(h.size, 4);
  assert.equal(h.nextKey, -2);
  assert.equal(h.nextId, 20);
  assert.equal(h.popDue(-3), undefined, "nothing due yet");
  assert.deepEqual([h.popDue(), h.popDue(), h.popDue(4)], [20, 1, undefined]);
  assert.deepEqual([h.popDue(), h.popDue(), h.popDue()], [50, 90, undefined]);
});

Deno.test("keyed heap: any sequence of pushes and pops yields keys in order (seeded)", () => {
  const random = mulberry32(7);
  const h = new KeyedHeap();
  const model: number[] = [];
  for (let i = 0; i < 5000; i++) {
    if (random() < 0.6) {
      const key = Math.floor(random() * 1000) - 500;
      h.push(key, key);
      model.push(key);
      model.sort((a, b) => a - b);
    } else {
      assert.equal(h.nextKey, model[0] ?? Infinity);
      assert.equal(h.popDue(), model.shift());
    }
    assert.equal(h.size, model.length);
  }
});
