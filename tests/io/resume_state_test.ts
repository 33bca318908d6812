import assert from "node:assert/strict";
import fc from "fast-check";
import type { FileMeta } from "../../lib/engine/consensus.ts";
import { ExitCode, UdpgetError } from "../../lib/base/exit.ts";
import { keepAfterFailure } from "../../lib/io/partial_download.ts";
import {
  decodeResumeState,
  encodeResumeState,
  freshState,
  markPiece,
  planResume,
  verifiedPieces,
} from "../../lib/io/resume_state.ts";

function meta(over: Partial<FileMeta> = {}): FileMeta {
  return {
    size: 10 * 1024 + 1,
    pieceSize: 1024,
    maxBlock: 1400,
    mtimeMs: 5,
    digest: new Uint8Array(32).fill(1),
    piecesRoot: new Uint8Array(32).fill(2),
    ...over,
  };
}

Deno.test("resume state: encode/decode round trip keeps identity and verified pieces", () => {
  const s = freshState("dir/f.bin", meta());
  for (const p of [0, 3, 10]) markPiece(s, p);
  const back = decodeResumeState(encodeResumeState(s));
  assert.ok(back);
  assert.deepEqual(back, s);
  assert.deepEqual(verifiedPieces(back), [0, 3, 10]);
});

Deno.test("resume state: property — any set of pieces survives the round trip", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 5000 }),
      fc.integer({ min: 1, max: 4096 }),
      fc.array(fc.nat(), { maxLength: 50 }),
      (size, pieceSize, picks) => {
        const s = freshState("x", meta({ size, pieceSize }));
        const count = Math.ceil(size / pieceSize);
        const want = count === 0
          ? []
          : [...new Set(picks.map((p) => p % count))].sort((a, b) => a - b);
        for (const p of want) markPiece(s, p);
        const back = decodeResumeState(encodeResumeState(s));
        assert.ok(back);
        assert.deepEqual(verifiedPieces(back), want);
      },
    ),
    { seed: 7, numRuns: 300 },
  );
});

Deno.test("resume state: malformed documents are rejected, never half-trusted", () => {
  const good = JSON.parse(encodeResumeState(freshState("f", meta())));
  const bad: unknown[] = [
    "",
    "not json",
    "null",
    "[]",
    { ...good, udpget: 2 },
    { ...good, name: 7 },
    { ...good, size: -1 },
    { ...good, size: 1.5 },
    { ...good, pieceSize: 0 },
    { ...good, digest: "ab" },
    { ...good, piecesRoot: "G".repeat(64) },
    { ...good, verified: "***" },
    { ...good, verified: btoa("\x01") }, // 1 byte for 11 pieces: wrong length
  ];
  for (const b of bad) {
    const text = typeof b === "string" ? b : JSON.stringify(b);
    assert.equal(decodeResumeState(text), undefined, text);
  }
  assert.ok(decodeResumeState(JSON.stringify(good)));
});

Deno.test("resume plan: same version resumes, another version or name starts over", () => {
  const m = meta();
  const s = freshState("f", m);
  markPiece(s, 2);
  assert.deepEqual(planResume(s, "f", m), { kind: "resume", pieces: [2] });
  assert.equal(planResume(undefined, "f", m).kind, "foreign");
  for (
    const other of [
      meta({ size: m.size + 1 }),
      meta({ pieceSize: 2048 }),
      meta({ digest: new Uint8Array(32).fill(9) }),
      meta({ piecesRoot: new Uint8Array(32).fill(9) }),
    ]
  ) {
    assert.equal(planResume(s, "f", other).kind, "changed");
  }
  assert.deepEqual(planResume(s, "g", m), { kind: "changed", was: 'a download of "f"' });
  assert.equal(planResume(s, "f", meta({ mtimeMs: 99 })).kind, "resume", "mtime is not identity");
});

Deno.test("keepAfterFailure: keep verified work, except when the whole file proved wrong", () => {
  const interrupted = new UdpgetError(ExitCode.Interrupted, "interrupted");
  const wrong = new UdpgetError(ExitCode.Verification, "sha256 mismatch");
  assert.equal(keepAfterFailure(interrupted, 3), true);
  assert.equal(keepAfterFailure(new Error("bug"), 1), true);
  assert.equal(keepAfterFailure(interrupted, 0), false, "nothing to resume");
  assert.equal(keepAfterFailure(wrong, 50), false);
});
