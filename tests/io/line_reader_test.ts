import assert from "node:assert/strict";
import { type ByteSource, LineReader } from "../../lib/io/line_reader.ts";

/** A source handing out `chunks` one per read, then end of input. */
function chunks(...parts: string[]): ByteSource {
  const queue = parts.map((p) => new TextEncoder().encode(p));
  return {
    read(p: Uint8Array): Promise<number | null> {
      const next = queue.shift();
      if (next === undefined) return Promise.resolve(null);
      p.set(next);
      return Promise.resolve(next.length);
    },
  };
}

Deno.test("LineReader: lines across chunks, CRLF, a last line without newline, then undefined", async () => {
  const r = new LineReader(chunks("fi", "rst\nsec", "ond\r\n\nth€", "ird"));
  const signal = new AbortController().signal;
  const got = [];
  for (let line; (line = await r.readLine(signal)) !== undefined;) got.push(line);
  assert.deepEqual(got, ["first", "second", "", "th€ird"]);
  assert.equal(await r.readLine(signal), undefined);
});

Deno.test("LineReader: an abort rejects a read that never completes (Ctrl-C at a prompt)", async () => {
  const never: ByteSource = { read: () => new Promise(() => {}) };
  const stop = new AbortController();
  const pending = new LineReader(never).readLine(stop.signal);
  stop.abort();
  await assert.rejects(
    pending,
    (e: unknown) => e instanceof DOMException && e.name === "AbortError",
  );
  await assert.rejects(new LineReader(chunks("x\n")).readLine(stop.signal));
});
