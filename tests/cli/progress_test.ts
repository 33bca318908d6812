import assert from "node:assert/strict";
import fc from "fast-check";
import stringWidth from "string-width";
import { renderProgress, type TransferView } from "../../lib/cli/progress.ts";
import { RateWindow } from "../../lib/cli/rate_window.ts";

const MiB = 1 << 20;

function transfer(over: Partial<TransferView> = {}): TransferView {
  return {
    phase: "transfer",
    name: "movie.mkv",
    total: 100 * MiB,
    fetched: 10 * MiB,
    resumed: 0,
    rate: MiB,
    alive: 3,
    servers: 3,
    ...over,
  };
}

Deno.test("progress: file name, share, bytes, current rate, ETA and servers", () => {
  const line = renderProgress(transfer(), 200);
  assert.equal(
    line,
    "movie.mkv  10.0%  10 MiB / 100 MiB  1 MiB/s  ETA 1:30  servers 3/3",
  );
});

Deno.test("progress: resumed bytes count toward the share, shown apart, never in the rate", () => {
  // 90 MiB resumed, 5 MiB fetched now at 1 MiB/s: 5 MiB left is 5 s, not the 103 MiB/s of old
  const line = renderProgress(transfer({ fetched: 5 * MiB, resumed: 90 * MiB }), 200);
  assert.match(line, /95\.0%/);
  assert.match(line, / 1 MiB\/s /);
  assert.match(line, /ETA 0:05/);
  assert.match(line, /\(90 MiB resumed\)$/);
});

Deno.test("progress: a narrow terminal truncates, never wraps; the name gives way first", () => {
  const long = "a-very-long-file-name-that-would-never-fit-on-one-line-of-a-terminal.iso";
  const wide = renderProgress(transfer({ name: long }), 120);
  assert.ok(stringWidth(wide) <= 120);
  assert.match(wide, /…/, "the name is shortened in its middle");
  assert.match(wide, /servers 3\/3$/, "the figures are kept whole when they fit");
  const narrow = renderProgress(transfer({ name: long }), 30);
  assert.ok(stringWidth(narrow) <= 30, narrow);
});

Deno.test("progress: property — never wider than the terminal, never NaN", () => {
  fc.assert(
    fc.property(
      fc.string({ maxLength: 120 }),
      fc.integer({ min: 1, max: 300 }),
      fc.nat({ max: 2 ** 40 }),
      fc.nat({ max: 2 ** 40 }),
      fc.nat({ max: 2 ** 40 }),
      (name, width, a, b, rate) => {
        const [fetched, total] = a <= b ? [a, b] : [b, a];
        const line = renderProgress(transfer({ name, fetched, total, rate }), width);
        assert.ok(stringWidth(line) <= width, `${width}: ${line}`);
        assert.ok(!/NaN|Infinity|undefined/.test(line), line);
        assert.ok(!line.includes("\n"));
      },
    ),
    { seed: 5, numRuns: 400 },
  );
});

Deno.test("progress: the hashing phase shows the servers' progress", () => {
  const line = renderProgress({
    phase: "hashing",
    name: "big.iso",
    busy: 2,
    servers: 3,
    done: 3 * MiB,
    total: 4 * MiB,
    elapsedMs: 2000,
  }, 200);
  assert.equal(line, "big.iso  servers hashing the file 75%  (2 of 3 busy)  0:02");
  const unknown = renderProgress({
    phase: "hashing",
    name: "big.iso",
    busy: 1,
    servers: 1,
    elapsedMs: 0,
  }, 200);
  assert.equal(unknown, "big.iso  servers hashing the file  (1 of 1 busy)  0:00");
});

Deno.test("rate window: the rate over the last seconds, not since the start", () => {
  const w = new RateWindow(5000);
  assert.equal(w.rate(), 0);
  // 10 s at 1 MB/s, then 10 s at 10 MB/s: the current rate is 10 MB/s, not the 5.5 average
  for (let t = 0; t <= 10_000; t += 200) w.sample(t, t * 1000);
  for (let t = 10_200; t <= 20_000; t += 200) w.sample(t, 10e6 + (t - 10_000) * 10_000);
  assert.equal(Math.round(w.rate()), 10e6);
});

Deno.test("progress: at 60 columns whole fields go, not the name (resumed, servers, sizes first)", () => {
  const v = transfer({
    name: "big2.bin",
    fetched: 5 * MiB,
    resumed: 90 * MiB,
    alive: 2,
    servers: 3,
  });
  assert.equal(
    renderProgress(v, 200),
    "big2.bin  95.0%  95 MiB / 100 MiB  1 MiB/s  ETA 0:05  servers 2/3  (90 MiB resumed)",
  );
  assert.equal(renderProgress(v, 60), "big2.bin  95.0%  95 MiB / 100 MiB  1 MiB/s  ETA 0:05");
  assert.equal(renderProgress(v, 40), "big2.bin  95.0%  1 MiB/s  ETA 0:05");
  assert.equal(renderProgress(v, 24), "big2.bin  95.0%  1 MiB/s");
  // a long name gives way only down to a readable part before a field goes
  const long = renderProgress(transfer({ name: "a".repeat(80) }), 60);
  assert.match(long, /^a+…a+ {2}10\.0%/);
  assert.ok(stringWidth(long) <= 60);
});
