import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { autoPieceSize, DEFAULT_PIECE_SIZE, digestFile } from "../../lib/io/file_digest.ts";
import { seededBytes } from "../harness.ts";

/** A file of `bytes` that records the size of every buffer it is read into. */
function fakeFile(bytes: Uint8Array) {
  const buffers: number[] = [];
  let pos = 0;
  const file = {
    seek: () => Promise.resolve(pos = 0),
    read: (into: Uint8Array) => {
      buffers.push(into.buffer.byteLength);
      const n = Math.min(into.length, bytes.length - pos);
      into.set(bytes.subarray(pos, pos + n));
      pos += n;
      return Promise.resolve(n === 0 ? null : n);
    },
  } as unknown as Deno.FsFile;
  return { file, buffers };
}

Deno.test("digestFile: the digests of the whole file and of each piece", async () => {
  const data = seededBytes(2.5 * DEFAULT_PIECE_SIZE, 3);
  const { file } = fakeFile(data);
  const d = await digestFile(file, data.length, DEFAULT_PIECE_SIZE);
  const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
  assert.equal(hex(d.digest), createHash("sha256").update(data).digest("hex"));
  assert.equal(d.pieceHashes.length, 3 * 32);
  const last = data.subarray(2 * DEFAULT_PIECE_SIZE);
  assert.equal(hex(d.pieceHashes.subarray(64)), createHash("sha256").update(last).digest("hex"));
});

Deno.test("digestFile: a small file is read through a buffer its size, not a 1 MiB one", async () => {
  // 10 000 small files hashed at start-up each got a 1 MiB buffer: the server peaked at 150 MiB
  const { file, buffers } = fakeFile(seededBytes(100, 4));
  await digestFile(file, 100, DEFAULT_PIECE_SIZE);
  assert.ok(buffers.every((n) => n <= 100), `buffers of ${buffers.join(", ")} bytes`);
  const empty = fakeFile(new Uint8Array(0));
  await digestFile(empty.file, 0, DEFAULT_PIECE_SIZE);
});

Deno.test("autoPieceSize: at most 512 pieces of 256 KiB, 512 KiB, then 1 MiB", () => {
  const KiB = 1024;
  const MiB = 1024 * KiB;
  assert.equal(autoPieceSize(0), 256 * KiB);
  assert.equal(autoPieceSize(1000), 256 * KiB);
  assert.equal(autoPieceSize(128 * MiB), 256 * KiB, "exactly 512 pieces");
  assert.equal(autoPieceSize(128 * MiB + 1), 512 * KiB);
  assert.equal(autoPieceSize(256 * MiB), 512 * KiB);
  assert.equal(autoPieceSize(256 * MiB + 1), MiB, "then 1 MiB, as every file before");
  assert.equal(autoPieceSize(512 * MiB), MiB);
  assert.equal(autoPieceSize(2 ** 40), MiB, "big files keep 1 MiB pieces");
});
