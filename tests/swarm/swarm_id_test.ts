import assert from "node:assert/strict";
import { INFO_HASH_SIZE, infoHashHex, swarmId } from "../../lib/swarm/swarm_id.ts";

const meta = {
  size: 128 << 20,
  pieceSize: 1 << 20,
  digest: new Uint8Array(32).fill(1),
  piecesRoot: new Uint8Array(32).fill(2),
};

Deno.test("swarm id: 20 bytes, stable, and different for any other metadata field", () => {
  const id = swarmId(meta);
  assert.equal(id.length, INFO_HASH_SIZE);
  assert.equal(infoHashHex(id), infoHashHex(swarmId({ ...meta })));
  assert.match(infoHashHex(id), /^[0-9a-f]{40}$/);
  const others = [
    { ...meta, size: meta.size + 1 },
    { ...meta, pieceSize: meta.pieceSize / 2 },
    { ...meta, digest: new Uint8Array(32).fill(3) },
    { ...meta, piecesRoot: new Uint8Array(32).fill(3) },
  ];
  for (const m of others) assert.notEqual(infoHashHex(swarmId(m)), infoHashHex(id));
});

Deno.test("swarm id: the specification's example (PROTOCOL.md §10.1)", () => {
  // recomputed by hand with node:crypto over the label and fields spelled out
  assert.equal(infoHashHex(swarmId(meta)), EXAMPLE);
  assert.throws(() => swarmId({ ...meta, digest: new Uint8Array(31) }), RangeError);
});

const EXAMPLE = "56c0f79dc471061710a11677cc229e0dffbbc26a";
