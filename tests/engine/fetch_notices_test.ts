import assert from "node:assert/strict";
import { leftOutLine, leftOutReason } from "../../lib/engine/fetch_notices.ts";
import type { FileMeta } from "../../lib/engine/consensus.ts";

const META: FileMeta = {
  size: 3 << 20,
  pieceSize: 1 << 20,
  maxBlock: 65000,
  digest: new Uint8Array(32).fill(1),
  piecesRoot: new Uint8Array(32).fill(2),
  mtimeMs: 0,
};

Deno.test("left out: the same bytes in other pieces say so; another version says which", () => {
  const cut = { ...META, pieceSize: 1 << 18, piecesRoot: new Uint8Array(32).fill(3) };
  assert.equal(
    leftOutLine("s1", leftOutReason(cut, META)),
    "udpget: s1: left out, it has the same file in 262144-byte pieces, not 1048576 " +
      "(give its servers one --piece-size)",
  );
  const other = { ...META, digest: new Uint8Array(32).fill(9) };
  assert.equal(
    leftOutReason(other, META),
    "another version (3145728 bytes, sha256 0909090909090909…)",
  );
  assert.match(leftOutReason({ ...cut, size: 5 }, META), /^another version/);
});
