import assert from "node:assert/strict";
import { fetchSummary, summaryFigures, summarySources } from "../../lib/cli/fetch_summary.ts";

const MiB = 1 << 20;

Deno.test("summary: the figures divide, resumed bytes apart", () => {
  // the run: 256 MiB in 4.33 s "(27.4 MiB/s; 137 MiB resumed)" did not divide
  assert.equal(
    summaryFigures(256 * MiB, 137 * MiB, 119 * MiB, 4330),
    "256 MiB: 137 MiB resumed, 119 MiB fetched in 4.33 s (27.4 MiB/s)",
  );
  assert.equal(summaryFigures(64 * MiB, 0, 64 * MiB, 2000), "64 MiB in 2.00 s (32 MiB/s)");
  assert.equal(
    summaryFigures(64 * MiB, 0, 64 * MiB, 4000, 2000),
    "64 MiB in 4.00 s (16 MiB/s, 2.00 s of it waiting for servers to hash)",
  );
});

Deno.test("summary: servers that delivered nothing are not listed; one server, no percentage", () => {
  assert.equal(
    summarySources([{ label: "a:1", bytes: 300 }, { label: "b:2", bytes: 0 }, {
      label: "c:3",
      bytes: 100,
    }]),
    "; from a:1 75%, c:3 25%",
  );
  assert.equal(
    summarySources([{ label: "a:1", bytes: 5 }, { label: "b:2", bytes: 0 }]),
    "; from a:1",
  );
});

Deno.test("summary: three servers in one line of about 140 columns (it was about 250)", () => {
  const line = fetchSummary({
    out: "big.bin",
    size: 256 * MiB,
    resumed: 0,
    fetched: 256 * MiB,
    ms: 2310,
    hashWaitMs: 0,
    verified: "256 pieces verified (SHA-256)",
    rerequested: 100_000, // under 1 %: not worth a word
    sources: ["10.0.0.1:9000", "10.0.0.2:9000", "10.0.0.3:9000"].map((label, i) => ({
      label,
      bytes: (i + 1) * 1000,
    })),
  });
  assert.equal(
    line,
    "udpget: big.bin: 256 MiB in 2.31 s (110.8 MiB/s), 256 pieces verified (SHA-256); " +
      "from 10.0.0.1:9000 17%, 10.0.0.2:9000 33%, 10.0.0.3:9000 50%",
  );
  assert.ok(line.length < 160, `${line.length} columns`);
});
