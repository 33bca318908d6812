import assert from "node:assert/strict";
import fc from "fast-check";
import { ErrorCode } from "../../lib/wire/packet.ts";
import {
  chooseMeta,
  type FileMeta,
  type MetaAnswer,
  sameVersion,
  settledMeta,
  toHex,
} from "../../lib/engine/consensus.ts";

function digestOf(byte: number): Uint8Array {
  return new Uint8Array(32).fill(byte);
}

function meta(over: Partial<FileMeta> = {}): FileMeta {
  return {
    size: 1000,
    pieceSize: 1 << 20,
    maxBlock: 1400,
    digest: digestOf(0xaa),
    piecesRoot: digestOf(0xbb),
    mtimeMs: 1_700_000_000_000,
    ...over,
  };
}

const ok = (m: FileMeta): MetaAnswer => ({ kind: "meta", meta: m });
const err = (code = 1, message = "not found"): MetaAnswer => ({ kind: "error", code, message });
const silent: MetaAnswer = { kind: "silent" };

Deno.test("toHex: lower-case, two digits per byte", () => {
  assert.equal(toHex(new Uint8Array()), "");
  assert.equal(toHex(new Uint8Array([0, 1, 15, 16, 127, 128, 254, 255])), "00010f107f80feff");
  assert.equal(toHex(digestOf(0xab)), "ab".repeat(32));
});

Deno.test("toHex: property — matches a reference encoding and round-trips", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
      const hex = toHex(bytes);
      assert.equal(hex, Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(""));
      assert.match(hex, /^([0-9a-f]{2})*$/);
      const back = Uint8Array.from(hex.match(/../g) ?? [], (h) => parseInt(h, 16));
      assert.deepEqual(back, bytes);
    }),
    { seed: 1, numRuns: 200 },
  );
});

Deno.test("chooseMeta: every server agreeing", () => {
  const m = meta();
  const c = chooseMeta([ok(m), ok(meta()), ok(meta())]);
  assert.deepEqual(c, { ok: true, meta: m, servers: [0, 1, 2], disagreeing: [] });
});

Deno.test("chooseMeta: a single server answering", () => {
  const m = meta();
  assert.deepEqual(chooseMeta([ok(m)]), { ok: true, meta: m, servers: [0], disagreeing: [] });
});

Deno.test("chooseMeta: the majority wins and the minority is reported", () => {
  const good = meta();
  const other = meta({ digest: digestOf(0x11) });
  const c = chooseMeta([ok(other), ok(good), err(), ok(good), silent, ok(good)]);
  assert.deepEqual(c, { ok: true, meta: good, servers: [1, 3, 5], disagreeing: [0] });
});

Deno.test("chooseMeta: size, piece size, digest and pieces root each split groups", () => {
  const base = meta();
  for (
    const variant of [
      meta({ size: 1001 }),
      meta({ pieceSize: 1 << 19 }),
      meta({ digest: digestOf(0x01) }),
      meta({ piecesRoot: digestOf(0x02) }),
    ]
  ) {
    const c = chooseMeta([ok(variant), ok(base), ok(base)]);
    assert.ok(c.ok);
    assert.deepEqual(c.servers, [1, 2]);
    assert.deepEqual(c.disagreeing, [0]);
    assert.equal(c.meta, base);
  }
});

Deno.test("chooseMeta: mtime does not split groups (informational only)", () => {
  const a = meta({ mtimeMs: 1 });
  const b = meta({ mtimeMs: 2 });
  const c = chooseMeta([ok(a), ok(b)]);
  assert.deepEqual(c, { ok: true, meta: a, servers: [0, 1], disagreeing: [] });
});

Deno.test("chooseMeta: a tie between versions is refused (no majority to trust)", () => {
  const x = meta({ digest: digestOf(0x01) });
  const y = meta({ digest: digestOf(0x02) });
  const z = meta({ digest: digestOf(0x03) });
  const tie = { ok: false, reason: "tie" };
  assert.deepEqual(chooseMeta([ok(x), ok(y), ok(y), ok(x)]), tie);
  assert.deepEqual(chooseMeta([silent, err(), ok(y), ok(x)]), tie);
  assert.deepEqual(chooseMeta([ok(z), ok(x), ok(y)]), tie, "three-way tie");
  // A tie below the largest group does not matter.
  const c = chooseMeta([ok(z), ok(x), ok(y), ok(y)]);
  assert.ok(c.ok);
  assert.deepEqual([c.meta, c.servers, c.disagreeing], [y, [2, 3], [0, 1]]);
  // The same bytes under two piece sizes are no rival versions: the first group is used.
  const small = meta({ digest: digestOf(0x01), pieceSize: 1 << 16 });
  const same = chooseMeta([ok(small), ok(x)]);
  assert.ok(same.ok);
  assert.deepEqual(same.servers, [0]);
  // With a trusted digest, the tie is resolved by the user.
  const t = chooseMeta([ok(x), ok(y)], digestOf(0x02));
  assert.ok(t.ok);
  assert.deepEqual(t.servers, [1]);
});

Deno.test("chooseMeta: a larger group beats an earlier one", () => {
  const x = meta({ digest: digestOf(0x01) });
  const y = meta({ digest: digestOf(0x02) });
  const c = chooseMeta([ok(x), ok(y), ok(y)]);
  assert.ok(c.ok);
  assert.deepEqual([c.meta, c.servers, c.disagreeing], [y, [1, 2], [0]]);
});

Deno.test("chooseMeta: errors and silent servers are neither chosen nor disagreeing", () => {
  const m = meta();
  const c = chooseMeta([err(), silent, ok(m), err(2, "denied")]);
  assert.deepEqual(c, { ok: true, meta: m, servers: [2], disagreeing: [] });
});

Deno.test("chooseMeta: every server refusing gives 'missing'", () => {
  assert.deepEqual(chooseMeta([err(), err(2, "denied"), err()]), { ok: false, reason: "missing" });
  assert.deepEqual(chooseMeta([err()]), { ok: false, reason: "missing" });
});

Deno.test("chooseMeta: nobody answering gives 'silent'", () => {
  assert.deepEqual(chooseMeta([silent, silent, silent]), { ok: false, reason: "silent" });
  assert.deepEqual(chooseMeta([silent]), { ok: false, reason: "silent" });
  assert.deepEqual(chooseMeta([]), { ok: false, reason: "silent" });
});

Deno.test("chooseMeta: silent servers mixed with refusals give 'missing'", () => {
  assert.deepEqual(chooseMeta([silent, err(), silent]), { ok: false, reason: "missing" });
  assert.deepEqual(chooseMeta([err(), silent]), { ok: false, reason: "missing" });
});

Deno.test("chooseMeta: trustedDigest picks its group even when it is the minority", () => {
  const trusted = meta({ digest: digestOf(0x77) });
  const other = meta();
  const c = chooseMeta(
    [ok(other), ok(other), ok(trusted), ok(other)],
    digestOf(0x77),
  );
  assert.deepEqual(c, { ok: true, meta: trusted, servers: [2], disagreeing: [0, 1, 3] });
});

Deno.test("chooseMeta: trustedDigest compares contents, not identity", () => {
  const m = meta({ digest: digestOf(0x77) });
  const c = chooseMeta([ok(m)], new Uint8Array(32).fill(0x77));
  assert.ok(c.ok);
  assert.deepEqual(c.servers, [0]);
});

Deno.test("chooseMeta: trustedDigest among several groups with that digest uses the majority", () => {
  // Same digest, different piece size: two groups both offering the trusted digest.
  const a = meta({ digest: digestOf(0x77), pieceSize: 1 << 16 });
  const b = meta({ digest: digestOf(0x77), pieceSize: 1 << 20 });
  const o = meta();
  const c = chooseMeta([ok(o), ok(o), ok(o), ok(a), ok(b), ok(b)], digestOf(0x77));
  assert.deepEqual(c, { ok: true, meta: b, servers: [4, 5], disagreeing: [0, 1, 2, 3] });
});

Deno.test("chooseMeta: trustedDigest held by nobody is not ok", () => {
  const c = chooseMeta([ok(meta()), ok(meta()), silent], digestOf(0x77));
  assert.equal(c.ok, false);
  assert.deepEqual(c, { ok: false, reason: "untrusted" });
  assert.deepEqual(chooseMeta([silent, silent], digestOf(0x77)), { ok: false, reason: "silent" });
});

Deno.test("chooseMeta: property — the chosen group is the largest one; ties are refused", () => {
  const answerArb: fc.Arbitrary<MetaAnswer> = fc.oneof(
    fc.constant(silent),
    fc.constant(err()),
    fc.integer({ min: 0, max: 3 }).map((v) => ok(meta({ digest: digestOf(v) }))),
  );
  fc.assert(
    fc.property(fc.array(answerArb, { maxLength: 12 }), (answers) => {
      const c = chooseMeta(answers);
      const metaIdx = answers.flatMap((a, i) => a.kind === "meta" ? [i] : []);
      if (metaIdx.length === 0) {
        const reason = answers.some((a) => a.kind === "error") ? "missing" : "silent";
        assert.deepEqual(c, { ok: false, reason });
        return;
      }
      const keyOf = (i: number) => toHex((answers[i] as { meta: FileMeta }).meta.digest);
      const counts = new Map<string, number>();
      for (const i of metaIdx) counts.set(keyOf(i), (counts.get(keyOf(i)) ?? 0) + 1);
      const best = Math.max(...counts.values());
      if ([...counts.values()].filter((n) => n === best).length > 1) {
        assert.deepEqual(c, { ok: false, reason: "tie" });
        return;
      }
      assert.ok(c.ok);
      const winner = metaIdx.find((i) => counts.get(keyOf(i)) === best)!;
      assert.deepEqual(c.servers, metaIdx.filter((i) => keyOf(i) === keyOf(winner)));
      assert.deepEqual(c.disagreeing, metaIdx.filter((i) => keyOf(i) !== keyOf(winner)));
      assert.equal(c.meta, (answers[winner] as { meta: FileMeta }).meta);
    }),
    { seed: 42, numRuns: 500 },
  );
});

Deno.test("chooseMeta: refused authentication is reported as such, not as a missing file", () => {
  const auth = err(ErrorCode.AuthFailed, "wrong key");
  const flags = err(ErrorCode.Unsupported, "unsupported flags 0x1");
  assert.deepEqual(chooseMeta([auth, err()]), { ok: false, reason: "auth" });
  assert.deepEqual(chooseMeta([flags, silent]), { ok: false, reason: "missing" }, "no key sent");
  assert.deepEqual(chooseMeta([flags, silent], undefined, true), { ok: false, reason: "auth" });
  const m = meta();
  assert.ok(chooseMeta([auth, ok(m)]).ok, "a server that offers the file wins");
});

Deno.test("settledMeta: a strict majority of all servers decides before the rest answer", () => {
  const a = meta();
  const b = meta({ digest: digestOf(0x11) });
  assert.equal(settledMeta([ok(a), undefined, undefined]), undefined, "1 of 3: still open");
  const c = settledMeta([ok(a), undefined, ok(a)]);
  assert.ok(c?.ok);
  assert.deepEqual(c.servers, [0, 2]);
  // 2 of 4 is no majority: the other two could agree on another version (a tie)
  assert.equal(settledMeta([ok(a), ok(a), undefined, undefined]), undefined);
  assert.equal(settledMeta([ok(a), ok(b), undefined]), undefined, "a tie so far");
  assert.equal(settledMeta([err(), undefined, undefined]), undefined);
});

Deno.test("settledMeta: with a trusted digest, the first server offering it is enough", () => {
  const a = meta();
  const c = settledMeta([undefined, ok(a), undefined], a.digest);
  assert.ok(c?.ok);
  assert.deepEqual(c.servers, [1]);
  assert.equal(settledMeta([ok(meta({ digest: digestOf(1) })), undefined], a.digest), undefined);
});

Deno.test("settledMeta: once everyone answered it is chooseMeta, failures included", () => {
  fc.assert(
    fc.property(
      fc.array(fc.oneof(fc.constant(silent), fc.constant(err()), fc.nat(2)), { maxLength: 6 }),
      (xs) => {
        const answers = xs.map((x) =>
          typeof x === "number" ? ok(meta({ digest: digestOf(x) })) : x
        );
        assert.deepEqual(settledMeta(answers), chooseMeta(answers));
      },
    ),
    { seed: 3, numRuns: 200 },
  );
});

Deno.test("settledMeta: a settled choice never changes, whatever the others answer", () => {
  fc.assert(
    fc.property(
      fc.array(fc.option(fc.nat(2), { nil: undefined }), { minLength: 1, maxLength: 6 }),
      fc.array(fc.nat(2), { minLength: 6, maxLength: 6 }),
      (known, later) => {
        const partial = known.map((x) => x === undefined ? undefined : ok(meta({ size: x })));
        const early = settledMeta(partial);
        if (!early?.ok) return;
        const full = partial.map((a, i) => a ?? ok(meta({ size: later[i] })));
        const final = chooseMeta(full);
        assert.ok(final.ok);
        assert.ok(sameVersion(final.meta, early.meta), "the same version wins in the end");
      },
    ),
    { seed: 4, numRuns: 300 },
  );
});
