import assert from "node:assert/strict";
import fc from "fast-check";
import {
  type BlockSource,
  type FileReader,
  NetasciiSource,
  OctetSource,
} from "../../lib/tftp/block_source.ts";
import { netasciiDecode, netasciiEncode } from "../../lib/tftp/netascii.ts";
import { seededBytes } from "../harness.ts";

/** A file in memory; counts reads; `failAt`: reads touching that offset fail. */
function memReader(bytes: Uint8Array, failAt = Infinity): FileReader & { reads: number } {
  return {
    reads: 0,
    readAt(buf: Uint8Array, offset: number): boolean {
      this.reads++;
      if (offset + buf.length > bytes.length) return false;
      if (failAt >= offset && failAt < offset + buf.length) return false;
      buf.set(bytes.subarray(offset, offset + buf.length));
      return true;
    },
  };
}

/** Reads every block in order until the short one; returns them concatenated. */
function readAll(src: BlockSource, blksize: number, release = true): Uint8Array {
  const parts: Uint8Array[] = [];
  const dst = new Uint8Array(blksize);
  for (let b = 1;; b++) {
    const n = src.read(b, dst);
    assert.ok(n >= 0, `block ${b} readable`);
    parts.push(dst.slice(0, n));
    if (release) src.release(b);
    if (n < blksize) break;
  }
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

Deno.test("octet source: blocks are the file's slices, the last one short (0 at a multiple)", () => {
  for (const size of [0, 1, 511, 512, 513, 1024, 10_000]) {
    const file = seededBytes(size, size);
    const src = new OctetSource(memReader(file), size, 512, 2048);
    assert.deepEqual(readAll(src, 512), file, `size ${size}`);
    const dst = new Uint8Array(512);
    assert.equal(src.read(Math.floor(size / 512) + 1, dst), size % 512, "last block length");
    assert.equal(src.read(Math.floor(size / 512) + 2, dst), -1, "past the end");
    assert.equal(src.read(0, dst), -1, "block 0");
  }
});

Deno.test("octet source: reads the file in chunks, not per block, and goes back for retransmits", () => {
  const file = seededBytes(100_000, 1);
  const reader = memReader(file);
  const src = new OctetSource(reader, file.length, 1000, 16_000);
  assert.deepEqual(readAll(src, 1000), file);
  assert.equal(reader.reads, Math.ceil(100 / 16), "one read per 16 blocks");
  const dst = new Uint8Array(1000);
  assert.equal(src.read(3, dst), 1000, "an old block again");
  assert.deepEqual(dst, file.subarray(2000, 3000));
});

Deno.test("octet source: a failed read (or a file that shrank) is -1", () => {
  const file = new Uint8Array(5000);
  const src = new OctetSource(memReader(file, 3000), file.length, 512, 1024);
  const dst = new Uint8Array(512);
  assert.equal(src.read(1, dst), 512);
  assert.equal(src.read(6, dst), -1);
  const shrunk = new OctetSource(memReader(new Uint8Array(100)), 5000, 512);
  assert.equal(shrunk.read(1, dst), -1);
});

Deno.test("netascii: LF → CR LF, CR → CR NUL, and back", () => {
  const src = new TextEncoder().encode("a\nb\rc\r\nd");
  const dst = new Uint8Array(2 * src.length);
  const n = netasciiEncode(src, dst);
  assert.deepEqual(dst.subarray(0, n), new TextEncoder().encode("a\r\nb\r\0c\r\0\r\nd"));
  assert.deepEqual(netasciiDecode(dst.subarray(0, n)), src);
});

Deno.test("netascii source: blocks decode to the file, whatever the bytes and block size", () => {
  const bytes = fc.uint8Array({ maxLength: 3000 }).chain((b) =>
    // text-like files: many line ends, CRs at block boundaries
    fc.constant(b.map((x) => x % 4 === 0 ? 0x0a : x % 7 === 0 ? 0x0d : x))
  );
  fc.assert(
    fc.property(bytes, fc.integer({ min: 8, max: 600 }), (file, blksize) => {
      const src = new NetasciiSource(memReader(file), file.length, blksize);
      assert.deepEqual(netasciiDecode(readAll(src, blksize)), file);
    }),
    { seed: 5, numRuns: 300 },
  );
});

Deno.test("netascii source: a window can be read again until it is released", () => {
  const file = new TextEncoder().encode("line\n".repeat(20_000));
  const src = new NetasciiSource(memReader(file), file.length, 512);
  const a = new Uint8Array(512);
  const b = new Uint8Array(512);
  for (let blk = 1; blk <= 100; blk++) assert.equal(src.read(blk, a), 512);
  src.release(96);
  assert.equal(src.read(97, a), 512);
  assert.equal(src.read(200, b), 512, "far ahead");
  assert.equal(src.read(97, b), 512, "back within the unreleased window");
  assert.deepEqual(a, b);
  src.release(150);
  src.read(400, b); // converting more drops what was released
  assert.equal(src.read(97, b), -1, "released blocks are gone");
});
