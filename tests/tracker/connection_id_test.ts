import assert from "node:assert/strict";
import fc from "fast-check";
import {
  CONNECTION_ID_LIFETIME_MS,
  CONNECTION_ID_SIZE,
  CONNECTION_ID_SLOT_MS,
  ConnectionIds,
} from "../../lib/tracker/connection_id.ts";
import { SipHash } from "../../lib/tracker/siphash.ts";

const ids = new ConnectionIds(new Uint8Array(16).fill(5));
const A = new Uint8Array([192, 0, 2, 7]);
const B = new Uint8Array([192, 0, 2, 8]);
const A6 = new Uint8Array(16).fill(0x20);

Deno.test("siphash: the reference vectors (key 00..0f, message 00..n-1)", () => {
  const h = new SipHash(Uint8Array.from({ length: 16 }, (_, i) => i));
  const want: Record<number, string> = {
    0: "310e0edd47db6f72",
    1: "fd67dc93c539f874",
    7: "37d1018bf50002ab",
    8: "6224939a79f5f593",
    15: "e545be4961ca29a1",
    63: "724506eb4c328a95",
  };
  for (const [n, hex] of Object.entries(want)) {
    const out = h.hash(Uint8Array.from({ length: Number(n) }, (_, i) => i));
    assert.equal([...out].map((b) => b.toString(16).padStart(2, "0")).join(""), hex, `n=${n}`);
  }
  assert.throws(() => new SipHash(new Uint8Array(15)), RangeError);
});

Deno.test("connection id: 8 bytes, valid for at least 2 minutes, expired within 3", () => {
  assert.equal(CONNECTION_ID_LIFETIME_MS, 120_000);
  // issued at every point of a minute: accepted 2 min later, refused 3 min later
  for (const offset of [0, 1, 30_000, CONNECTION_ID_SLOT_MS - 1]) {
    for (const address of [A, A6]) {
      const t = 1_000 * CONNECTION_ID_SLOT_MS + offset;
      const id = ids.issue(address, t);
      assert.equal(id.length, CONNECTION_ID_SIZE);
      assert.ok(ids.valid(id, address, t));
      assert.ok(ids.valid(id, address, t + CONNECTION_ID_LIFETIME_MS), `offset ${offset}`);
      assert.ok(!ids.valid(id, address, t + 3 * CONNECTION_ID_SLOT_MS), `offset ${offset}`);
      assert.ok(!ids.valid(id, address, t - CONNECTION_ID_SLOT_MS), "not before it was issued");
    }
  }
});

Deno.test("connection id: bound to the address and the key; forged ids refused", () => {
  const t = 5_000_000;
  const id = ids.issue(A, t);
  assert.ok(!ids.valid(id, B, t), "another address");
  assert.ok(!new ConnectionIds(new Uint8Array(16).fill(6)).valid(id, A, t), "another key");
  assert.ok(!ids.valid(id.subarray(0, 7), A, t), "too short");
  assert.ok(!ids.valid(new Uint8Array(8), A, t), "zeros");
  fc.assert(fc.property(fc.uint8Array({ minLength: 8, maxLength: 8 }), (forged) => {
    assert.ok(!ids.valid(forged, A, t));
  }));
  // the id is the same for the whole minute: a client may reconnect and reuse either
  assert.deepEqual(ids.issue(A, t), ids.issue(A, t + 1));
  assert.notDeepEqual(ids.issue(A, t), ids.issue(A, t + CONNECTION_ID_SLOT_MS));
});
