import assert from "node:assert/strict";
import { OrderedOutput } from "../../lib/io/ordered_output.ts";

/** A sink collecting what is written, and a part file holding `data`. */
async function setup(data: Uint8Array) {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/f.part`;
  await Deno.writeFile(path, data);
  const chunks: Uint8Array[] = [];
  const sink = new WritableStream<Uint8Array>({ write: (c) => void chunks.push(c.slice()) });
  const file = await Deno.open(path, { read: true });
  const written = () => {
    const all = new Uint8Array(chunks.reduce((t, c) => t + c.length, 0));
    let at = 0;
    for (const c of chunks) all.set(c, (at += c.length) - c.length);
    return all;
  };
  return {
    file,
    sink: sink.getWriter(),
    written,
    async cleanup() {
      file.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test("ordered output: pieces verified out of order leave in file order", async () => {
  const data = new Uint8Array(10_000).map((_, i) => i % 251);
  const s = await setup(data);
  try {
    const out = new OrderedOutput(s.file, data.length, 3000, s.sink, true);
    out.verified(2);
    out.verified(1);
    await out.flushed();
    assert.equal(s.written().length, 0, "nothing before piece 0");
    out.verified(0);
    await out.flushed();
    assert.deepEqual(s.written(), data.subarray(0, 9000));
    out.verified(3);
    await out.finish();
    assert.deepEqual(s.written(), data);
  } finally {
    await s.cleanup();
  }
});

Deno.test("ordered output: without piece hashes nothing leaves before the final check", async () => {
  const data = new Uint8Array(5000).fill(7);
  const s = await setup(data);
  try {
    const out = new OrderedOutput(s.file, data.length, 1000, s.sink, false);
    for (let p = 0; p < 5; p++) out.verified(p);
    await out.flushed();
    assert.equal(s.written().length, 0);
    await out.finish();
    assert.deepEqual(s.written(), data);
  } finally {
    await s.cleanup();
  }
});

Deno.test("ordered output: a closed reader is a local I/O error (exit 6), not a crash", async () => {
  const data = new Uint8Array(2000);
  const s = await setup(data);
  try {
    const broken = new WritableStream<Uint8Array>({
      write: () => Promise.reject(new Error("Broken pipe")),
    });
    const out = new OrderedOutput(s.file, data.length, 1000, broken.getWriter(), true);
    out.verified(0);
    await assert.rejects(out.finish(), (e: Error & { exitCode?: number }) => {
      assert.equal(e.exitCode, 6);
      assert.match(e.message, /cannot write the output: Broken pipe/);
      return true;
    });
  } finally {
    await s.cleanup();
  }
});
