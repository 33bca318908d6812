import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  DigestVerifier,
  openPieceVerifier,
  type VerifyTarget,
  WorkerVerifier,
} from "../../lib/io/piece_verifier.ts";
import { loadSha256, type Sha256 } from "../../lib/io/libcrypto.ts";

const PIECE = 4096;

/** A `.part` of `size` random bytes in a temp dir, and the SHA-256 of each piece. */
async function partFile(
  size: number,
): Promise<{ dir: string; path: string; bytes: Uint8Array; hashes: Uint8Array }> {
  const dir = await Deno.makeTempDir({ prefix: "udpget-verifier-" });
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i += 65536) crypto.getRandomValues(bytes.subarray(i, i + 65536));
  const path = `${dir}/f.part`;
  await Deno.writeFile(path, bytes);
  const pieces = Math.ceil(size / PIECE);
  const hashes = new Uint8Array(pieces * 32);
  for (let p = 0; p < pieces; p++) {
    hashes.set(
      createHash("sha256").update(bytes.subarray(p * PIECE, (p + 1) * PIECE)).digest(),
      p * 32,
    );
  }
  return { dir, path, bytes, hashes };
}

/** libcrypto's SHA-256: the suite runs with --allow-ffi on a Debian system with libssl. */
function sha256(): Sha256 {
  const s = loadSha256();
  if (typeof s === "string") throw new Error(`libcrypto is needed for this test: ${s}`);
  return s;
}

Deno.test("libcrypto SHA-256 equals node:crypto's, for empty, short and 1 MiB inputs", async () => {
  const hash = sha256();
  for (const n of [0, 1, 55, 56, 64, 1000, 1 << 20]) {
    const data = new Uint8Array(n + 7).map((_, i) => (i * 131 + n) & 0xff);
    const out = new Uint8Array(32);
    await hash(data, n, out);
    assert.deepEqual(
      out,
      new Uint8Array(createHash("sha256").update(data.subarray(0, n)).digest()),
    );
  }
  await assert.rejects(() => hash(new Uint8Array(4), 5, new Uint8Array(32)), RangeError);
  await assert.rejects(() => hash(new Uint8Array(4), 4, new Uint8Array(31)), RangeError);
});

Deno.test("digest verifier: good pieces pass, a flipped byte fails, the short last piece counts", async () => {
  const size = 10 * PIECE + 123;
  const { dir, path, hashes } = await partFile(size);
  const target: VerifyTarget = { path, size, pieceSize: PIECE, ring: 0 };
  const bytes = await Deno.readFile(path);
  const f = await Deno.open(path, { write: true });
  await f.seek(3 * PIECE + 77, Deno.SeekMode.Start);
  await f.write(new Uint8Array([bytes[3 * PIECE + 77] ^ 0xff])); // one byte of piece 3 flipped
  f.close();
  const v = new DigestVerifier(target, hashes, sha256());
  try {
    // all asked at once: more than the lanes, answered whatever the order
    const oks = await Promise.all([...Array(11).keys()].map((p) => v.verify(p)));
    assert.deepEqual(oks, [...Array(11).keys()].map((p) => p !== 3));
    assert.equal(await v.verify(11), false, "a piece past the end is never good");
    assert.equal(await v.digest(), undefined);
    assert.equal(v.whole, false);
  } finally {
    v.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("digest verifier: a ring .part holds piece p in slot p mod ring", async () => {
  const size = 8 * PIECE;
  const { dir, path, bytes } = await partFile(size);
  // the file holds pieces 4..7 (slots 0..3 of a 4-piece ring): check them as pieces 4..7
  const shifted = new Uint8Array(8 * 32);
  for (let p = 4; p < 8; p++) {
    const slot = bytes.subarray((p - 4) * PIECE, (p - 3) * PIECE);
    shifted.set(createHash("sha256").update(slot).digest(), p * 32);
  }
  const v = new DigestVerifier({ path, size, pieceSize: PIECE, ring: 4 }, shifted, sha256());
  try {
    assert.deepEqual(await Promise.all([4, 5, 6, 7].map((p) => v.verify(p))), [
      true,
      true,
      true,
      true,
    ]);
    assert.equal(await v.verify(0), false, "slot 0 holds piece 4, not piece 0");
  } finally {
    v.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("digest verifier: a short .part fails its pieces; closed, queued checks answer false", async () => {
  const size = 6 * PIECE;
  const { dir, path, hashes } = await partFile(size);
  await Deno.truncate(path, 4 * PIECE + 10);
  const v = new DigestVerifier({ path, size, pieceSize: PIECE, ring: 0 }, hashes, sha256());
  try {
    assert.deepEqual(await Promise.all([0, 3, 4, 5].map((p) => v.verify(p))), [
      true,
      true,
      false,
      false,
    ]);
    const queued = [0, 1, 2, 3, 4].map((p) => v.verify(p).catch(() => "rejected"));
    v.close();
    // those in a lane (read, being hashed) answer false too: a closed verifier vouches for nothing
    assert.deepEqual(await Promise.all(queued), [false, false, false, false, false]);
    assert.equal(await v.verify(0), false, "after close");
  } finally {
    v.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("verifier choice: piece hashes alone need no worker; the whole-file hash runs on one", async () => {
  const size = 3 * PIECE + 5;
  const { dir, path, bytes, hashes } = await partFile(size);
  const target: VerifyTarget = { path, size, pieceSize: PIECE, ring: 0 };
  const pieces = openPieceVerifier(target, hashes, false);
  const whole = openPieceVerifier(target, hashes, true);
  const noHashes = openPieceVerifier(target, undefined, false);
  try {
    assert.ok(pieces instanceof DigestVerifier);
    assert.ok(whole instanceof WorkerVerifier && whole.whole);
    assert.ok(noHashes instanceof WorkerVerifier && noHashes.whole);
    for (const v of [pieces, whole, noHashes]) {
      assert.deepEqual(await Promise.all([0, 1, 2, 3].map((p) => v.verify(p))), [
        true,
        true,
        true,
        true,
      ]);
    }
    const expected = new Uint8Array(createHash("sha256").update(bytes).digest());
    assert.deepEqual(await whole.digest(), expected);
    assert.deepEqual(await noHashes.digest(), expected);
  } finally {
    for (const v of [pieces, whole, noHashes]) v.close();
    await Deno.remove(dir, { recursive: true });
  }
});
