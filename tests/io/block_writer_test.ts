import assert from "node:assert/strict";
import { type BlockSink, BlockWriter } from "../../lib/io/block_writer.ts";
import { VectoredWriter } from "../../lib/io/vectored_writer.ts";
import { type Libc, loadLibc } from "../../lib/io/udp/libc.ts";
import { seededBytes } from "../harness.ts";
import { mulberry32 } from "../relay.ts";

/** Stages `src` as 11 streams of blocks interleaved at random, as replies from many sockets. */
function interleave(w: BlockSink, src: Uint8Array, seed: number): void {
  const random = mulberry32(seed);
  const n = 11;
  const part = Math.floor(src.length / n);
  const streams = Array.from({ length: n }, (_, k) => ({
    off: k * part,
    end: k === n - 1 ? src.length : (k + 1) * part,
  }));
  let live = streams;
  while (live.length > 0) {
    const s = live[Math.floor(random() * live.length)];
    const len = Math.min(1 + Math.floor(random() * 3000), s.end - s.off);
    w.stage(s.off, src, s.off, len);
    s.off += len;
    if (s.off >= s.end) live = live.filter((x) => x !== s);
    if (random() < 0.01) w.flush(); // a batch ended
  }
  w.flush();
}

Deno.test("BlockWriter: interleaved runs land at their offsets, in far fewer writes", () => {
  const src = seededBytes(4 << 20, 5);
  const file = new Uint8Array(src.length);
  let pos = 0;
  const w = new BlockWriter({
    seekSync: (o) => (pos = o),
    writeSync: (p) => {
      file.set(p, pos);
      pos += p.length;
      return p.length;
    },
  }, 1 << 16);
  interleave(w, src, 1);
  assert.ok(file.every((v, i) => v === src[i]), "every byte where it belongs");
  assert.equal(w.written, src.length);
  assert.ok(w.writes < src.length / 1500 / 2, `runs, not blocks: ${w.writes} writes`);
});

Deno.test("BlockWriter: a write error is kept, not thrown, and stops further writes", () => {
  let calls = 0;
  const w = new BlockWriter({
    seekSync: () => 0,
    writeSync: () => {
      calls++;
      throw new Error("No space left on device (os error 28)");
    },
  });
  w.stage(0, new Uint8Array(10), 0, 10);
  w.flush();
  assert.match(w.error?.message ?? "", /No space left/);
  w.stage(10, new Uint8Array(10), 0, 10);
  w.flush();
  assert.equal(calls, 1);
});

function libc(): Libc {
  const l = loadLibc();
  if (typeof l === "string") throw new Error(`the suite runs with --allow-ffi: ${l}`);
  return l;
}

Deno.test("VectoredWriter: pwritev from the caller's buffers puts every byte in place", async () => {
  const path = await Deno.makeTempFile();
  try {
    const src = seededBytes(3 << 20, 9);
    await Deno.writeFile(path, new Uint8Array(src.length));
    const w = VectoredWriter.open(libc(), path);
    interleave(w, src, 2);
    w.close();
    assert.deepEqual(await Deno.readFile(path), src);
    assert.ok(w.writes < 3000, `${w.writes} writes`);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("VectoredWriter: a short write goes on from where it stopped; an error is kept", () => {
  const written: { offset: bigint; bytes: number }[] = [];
  let answer = (n: number): number => Math.min(n, 1000); // the kernel takes 1000 bytes a call
  const real = libc();
  const fake = {
    ...real,
    sym: {
      ...real.sym,
      open: () => 99,
      close: () => 0,
      pwritev: (_fd: number, iov: Uint8Array, count: number, offset: bigint) => {
        const v = new DataView(iov.buffer, iov.byteOffset);
        let total = 0;
        for (let i = 0; i < count; i++) total += v.getUint32(16 * i + 8, true);
        const n = answer(total);
        written.push({ offset, bytes: n });
        return BigInt(n);
      },
    },
    errno: () => 28,
  } as unknown as Libc;
  const w = VectoredWriter.open(fake, "/nowhere");
  const src = new Uint8Array(5000);
  for (let b = 0; b < 5; b++) w.stage(b * 1000 + 700, src, b * 1000, 1000);
  w.flush();
  assert.deepEqual(written.map((x) => [Number(x.offset), x.bytes]), [
    [700, 1000],
    [1700, 1000],
    [2700, 1000],
    [3700, 1000],
    [4700, 1000],
  ]);
  answer = () => -1;
  w.stage(0, src, 0, 10);
  w.flush();
  assert.equal(w.error?.message, real.describe(28));
  w.close();
});

Deno.test("VectoredWriter: EIO, EDQUOT, EROFS and EFBIG are kept with the system's words", () => {
  const real = libc();
  for (const errno of [5, 122, 30, 27]) {
    const fake = {
      ...real,
      sym: { ...real.sym, open: () => 99, close: () => 0, pwritev: () => -1n },
      errno: () => errno,
    } as unknown as Libc;
    const w = VectoredWriter.open(fake, "/nowhere");
    w.stage(0, new Uint8Array(10), 0, 10);
    w.flush();
    assert.equal(w.error?.message, real.describe(errno));
    assert.doesNotMatch(w.error?.message ?? "", /errno|os error/, "words, not numbers");
    w.close();
  }
});
