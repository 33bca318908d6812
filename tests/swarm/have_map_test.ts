import assert from "node:assert/strict";
import fc from "fast-check";
import { completeHaveReply, HaveLog, MAX_HAVE_LIST } from "../../lib/swarm/have_log.ts";
import { HaveMap } from "../../lib/swarm/have_map.ts";
import { decode, encode, HaveForm, type HaveReply, NO_TOKEN } from "../../lib/wire/packet.ts";

const FILE = 0x1234n;

/** One poll: the client's query, the source's answer through the codec, applied. */
function poll(log: HaveLog, map: HaveMap, seen: number[]): HaveReply {
  const q = map.query();
  const request = {
    type: "have_request",
    requestId: 1,
    token: NO_TOKEN,
    fileId: FILE,
    name: "f",
    ...q,
  } as const;
  const r = decode(encode(log.answer(request, FILE)));
  assert.ok(r.ok && r.packet.type === "have_reply");
  assert.ok(map.apply(r.packet, (p) => seen.push(p)));
  return r.packet;
}

Deno.test("have-map: a small log is listed from the start, then only what is new", () => {
  const log = new HaveLog(1000);
  const map = new HaveMap(1000);
  const seen: number[] = [];
  for (const p of [7, 3, 999]) log.add(p);
  const first = poll(log, map, seen);
  assert.equal(first.form, HaveForm.List);
  assert.deepStrictEqual(seen, [7, 3, 999]);
  log.add(3); // already held: no new entry
  log.add(500);
  const second = poll(log, map, seen);
  assert.equal(second.entries.length, 4, "one entry: only the piece added since");
  assert.deepStrictEqual(seen, [7, 3, 999, 500]);
  assert.equal(map.count, 4);
  assert.ok(map.has(500) && !map.has(501));
});

Deno.test("have-map: a long log is read as bitfield pages, then continued as a list", () => {
  const pieces = 20_000; // three pages of 8192
  const log = new HaveLog(pieces);
  const map = new HaveMap(pieces);
  for (let p = 0; p < pieces; p += 3) log.add(p);
  const seen: number[] = [];
  const forms: number[] = [];
  for (let i = 0; i < 3; i++) forms.push(poll(log, map, seen).form);
  assert.deepStrictEqual(forms, [HaveForm.Bitfield, HaveForm.Bitfield, HaveForm.Bitfield]);
  assert.equal(map.count, Math.ceil(pieces / 3));
  log.add(1);
  log.add(19_999);
  assert.equal(poll(log, map, seen).form, HaveForm.List);
  assert.ok(map.has(1) && map.has(19_999));
  assert.equal(new Set(seen).size, seen.length, "each piece reported once");
});

Deno.test("have-map: a complete source says so in 34 bytes and the map fills", () => {
  const req = {
    type: "have_request",
    requestId: 9,
    token: NO_TOKEN,
    fileId: FILE,
    since: 0,
    firstPiece: 0,
    name: "f",
  } as const;
  const bytes = encode(completeHaveReply(req, 70_000));
  assert.equal(bytes.length, 34);
  const map = new HaveMap(70_000);
  let n = 0;
  const r = decode(bytes);
  assert.ok(r.ok && r.packet.type === "have_reply");
  assert.ok(map.apply(r.packet, () => n++));
  assert.equal(n, 70_000);
  assert.ok(map.complete);
  assert.ok(map.forget(5));
  assert.ok(!map.complete && !map.has(5) && map.count === 69_999);
  assert.ok(!map.forget(5), "a piece not claimed cannot be forgotten twice");
});

Deno.test("have-map: answers for another piece count, or lists with a gap, change nothing", () => {
  const map = new HaveMap(100);
  const base: HaveReply = {
    type: "have_reply",
    requestId: 1,
    fileId: FILE,
    pieces: 100,
    held: 10,
    form: HaveForm.List,
    first: 5, // the client knows nothing yet: a list from 5 skips 0..4
    entries: new Uint8Array(4),
    fetching: new Uint8Array(0),
  };
  assert.ok(!map.apply(base, () => assert.fail("nothing is new")));
  assert.ok(!map.apply({ ...base, pieces: 101, first: 0 }, () => assert.fail()));
  assert.ok(!map.apply({ ...base, form: HaveForm.Bitfield, first: 3 }, () => assert.fail()));
  assert.equal(map.count, 0);
});

Deno.test("property: polling converges to the source's pieces and never claims others", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 30_000 }),
      fc.array(fc.tuple(fc.nat(), fc.nat({ max: 600 })), { maxLength: 12 }),
      (pieces, rounds) => {
        const log = new HaveLog(pieces);
        const map = new HaveMap(pieces);
        const seen: number[] = [];
        for (const [seed, adds] of rounds) {
          for (let i = 0; i < adds; i++) log.add((seed + i * 7919) % pieces);
          poll(log, map, seen);
          for (const p of seen) assert.ok(log.has(p), "a claimed piece is held");
        }
        // enough polls to finish a look and catch up: pages, then lists of MAX_HAVE_LIST
        for (let i = 0; i < 8 + Math.ceil(log.held / MAX_HAVE_LIST); i++) poll(log, map, seen);
        assert.equal(map.count, log.held);
        assert.equal(seen.length, log.held);
      },
    ),
    { numRuns: 60 },
  );
});

Deno.test("have map: a log shorter than what was read means the source started over", () => {
  const m = new HaveMap(16);
  const list = (held: number, pieces: number[]) => ({
    type: "have_reply" as const,
    requestId: 1,
    fileId: 1n,
    pieces: 16,
    held,
    form: HaveForm.List,
    first: 0,
    entries: new Uint8Array(pieces.flatMap((p) => [0, 0, 0, p])),
    fetching: new Uint8Array(0),
  });
  assert.ok(m.apply(list(3, [1, 2, 3]), () => {}));
  assert.ok(!m.shrank(list(3, [1, 2, 3])));
  assert.ok(!m.shrank(list(16, [])), "complete is not shorter");
  assert.ok(m.shrank(list(2, [7, 8])), "2 entries where 3 were read");
});
