import assert from "node:assert/strict";
import fc from "fast-check";
import { formatBytes, formatDuration, formatRate } from "../../lib/base/format.ts";

Deno.test("formatBytes: binary units, at most one fraction digit", () => {
  assert.equal(formatBytes(0), "0 B");
  assert.equal(formatBytes(1), "1 B");
  assert.equal(formatBytes(1000), "1000 B");
  assert.equal(formatBytes(1023), "1023 B");
  assert.equal(formatBytes(1024), "1 KiB");
  assert.equal(formatBytes(1536), "1.5 KiB");
  assert.equal(formatBytes(1024 * 1024), "1 MiB");
  assert.equal(formatBytes(2.5 * 1024 * 1024), "2.5 MiB");
  assert.equal(formatBytes(5 * 2 ** 30), "5 GiB");
  assert.equal(formatBytes(2 ** 40), "1 TiB");
});

Deno.test("formatBytes: property — number, one fraction digit at most, a binary unit", () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), (n) => {
      assert.match(formatBytes(n), /^\d+(\.\d)? (B|KiB|MiB|GiB|TiB|PiB)$/);
    }),
    { seed: 7, numRuns: 500 },
  );
});

Deno.test("formatRate: bytes per second, negative clamped to 0", () => {
  assert.equal(formatRate(0), "0 B/s");
  assert.equal(formatRate(1536), "1.5 KiB/s");
  assert.equal(formatRate(3 * 1024 * 1024), "3 MiB/s");
  assert.equal(formatRate(-5), "0 B/s");
  assert.equal(formatRate(-1e9), "0 B/s");
});

Deno.test("formatDuration: m:ss under an hour, h:mm:ss above", () => {
  assert.equal(formatDuration(0), "0:00");
  assert.equal(formatDuration(7), "0:07");
  assert.equal(formatDuration(59), "0:59");
  assert.equal(formatDuration(60), "1:00");
  assert.equal(formatDuration(62), "1:02");
  assert.equal(formatDuration(599), "9:59");
  assert.equal(formatDuration(3599), "59:59");
  assert.equal(formatDuration(3600), "1:00:00");
  assert.equal(formatDuration(3723), "1:02:03");
  assert.equal(formatDuration(36000 + 59 * 60 + 9), "10:59:09");
  assert.equal(formatDuration(100 * 3600), "100:00:00");
});

Deno.test("formatDuration: rounds to the nearest second, carrying into minutes and hours", () => {
  assert.equal(formatDuration(0.4), "0:00");
  assert.equal(formatDuration(6.5), "0:07");
  assert.equal(formatDuration(59.5), "1:00");
  assert.equal(formatDuration(3599.5), "1:00:00");
});

Deno.test("formatDuration: unknown or negative is --:--", () => {
  assert.equal(formatDuration(Infinity), "--:--");
  assert.equal(formatDuration(-Infinity), "--:--");
  assert.equal(formatDuration(NaN), "--:--");
  assert.equal(formatDuration(-1), "--:--");
  assert.equal(formatDuration(-0.001), "--:--");
});

Deno.test("formatDuration: property — parses back to the rounded seconds", () => {
  fc.assert(
    fc.property(fc.double({ min: 0, max: 1e6, noNaN: true }), (sec) => {
      const text = formatDuration(sec);
      assert.match(text, /^(\d+:[0-5]\d:[0-5]\d|\d+:[0-5]\d)$/);
      const parts = text.split(":").map(Number);
      const total = parts.reduce((acc, p) => acc * 60 + p, 0);
      assert.equal(total, Math.round(sec));
      if (parts.length === 3) assert.ok(parts[0] > 0);
    }),
    { seed: 3, numRuns: 500 },
  );
});
