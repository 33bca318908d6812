import assert from "node:assert/strict";
import { StatusLine } from "../../lib/cli/status_line.ts";

/** A status line writing into a string, on a terminal `width` columns wide. */
function line(render: (w: number) => string, width = 40) {
  let out = "";
  const s = new StatusLine(render, (t) => void (out += t), () => width, false);
  return { s, out: () => out };
}

Deno.test("status line: a message gets a line of its own, the line comes back below it", () => {
  let n = 0;
  const { s, out } = line(() => `progress ${++n}`);
  s.draw();
  s.note("udpget: resuming f.bin: 3 of 8 pieces already verified");
  s.draw();
  s.stop();
  assert.equal(
    out(),
    "\rprogress 1\x1b[K" +
      "\r\x1b[Kudpget: resuming f.bin: 3 of 8 pieces already verified\n" + // cleared first
      "\rprogress 2\x1b[K" +
      "\rprogress 3\x1b[K\n", // the last state stays, on its own line
  );
});

Deno.test("status line: renders one column short of the width; nothing to show, nothing drawn", () => {
  const widths: number[] = [];
  const { s, out } = line((w) => (widths.push(w), ""), 80);
  s.draw();
  s.note("a message");
  s.stop();
  assert.deepEqual(widths, [79, 79]);
  assert.equal(out(), "a message\n", "no empty status line, no stray newline");
});
