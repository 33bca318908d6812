import assert from "node:assert/strict";
import fc from "fast-check";
import { CookieJar } from "../../lib/wire/cookie.ts";
import { RequestGate } from "../../lib/serving/request_gate.ts";
import { ServeCore } from "../../lib/serving/serve_core.ts";
import { HaveLog } from "../../lib/swarm/have_log.ts";
import {
  type HeldReply,
  PeerShare,
  RARE_HOLDERS,
  type ShareAction,
  type SharedMetadata,
} from "../../lib/swarm/peer_share.ts";
import { HAVE_HOLD_MS } from "../../lib/swarm/held_polls.ts";
import { decode, encode, ErrorCode, NO_TOKEN, type Packet } from "../../lib/wire/packet.ts";

const PIECE = 1 << 16;
const META: SharedMetadata = {
  fileId: 0xabcn,
  size: 4 * PIECE - 100,
  pieceSize: PIECE,
  mtimeMs: 0,
  digest: new Uint8Array(32).fill(1),
  piecesRoot: new Uint8Array(32).fill(2),
  pieceHashes: new Uint8Array(4 * 32).fill(3),
};
const ASKER: Deno.NetAddr = { transport: "udp", hostname: "10.0.0.2", port: 7000 };

/** A share holding pieces 0 and 2, and a token valid for ASKER. */
function share(core = new ServeCore({}, 0)) {
  const jar = new CookieJar(new Uint8Array(32).fill(9));
  const have = new HaveLog(4);
  have.add(2);
  have.add(0);
  const asked: Deno.NetAddr[] = [];
  const s = new PeerShare(
    META,
    have,
    new RequestGate(jar, undefined),
    core,
    (a) => {
      asked.push(a);
      return { family: 4, entries: new Uint8Array([10, 0, 0, 3, 0x1b, 0x58]) };
    },
  );
  const token = jar.issue(ASKER.hostname, 1000);
  let id = 1;
  const ask = (p: Record<string, unknown>): ShareAction[] => {
    const out: ShareAction[] = [];
    s.onDatagram(5, 1000, encode({ requestId: id++, token, ...p } as Packet), ASKER, out);
    return out;
  };
  return { s, ask, asked, token, have, core };
}

function replyOf(actions: ShareAction[]): Packet {
  assert.equal(actions.length, 1);
  const a = actions[0];
  assert.equal(a.kind, "reply");
  const r = decode(a.kind === "reply" ? a.bytes : new Uint8Array());
  assert.ok(r.ok);
  return r.packet;
}

const chunk = {
  type: "chunk_request",
  fileId: META.fileId,
  blockSize: 1000,
  name: "../../etc/passwd",
};

Deno.test("peer share: only verified pieces are served; the rest is NOT_HELD, whatever the name", () => {
  const { s, ask } = share();
  const runs = ask({ ...chunk, offset: 2 * PIECE, length: 5000 });
  assert.deepEqual(runs.map((a) => a.kind === "run" && [a.offset, a.length]), [[2 * PIECE, 5000]]);
  const missing = replyOf(ask({ ...chunk, offset: PIECE + 10, length: 100 }));
  assert.ok(missing.type === "error" && missing.code === ErrorCode.NotHeld);
  const across = replyOf(ask({ ...chunk, offset: PIECE - 100, length: 200 }));
  assert.ok(across.type === "error" && across.code === ErrorCode.NotHeld, "a range into piece 1");
  const other = replyOf(ask({ ...chunk, fileId: 0xabdn, offset: 0, length: 100 }));
  assert.ok(other.type === "error" && other.code === ErrorCode.Stale, "another file: nothing");
  assert.equal(s.stats.notHeld, 2);
});

Deno.test("peer share: HAVE lists the verified pieces; META, HASHES and PEERS answer", () => {
  const { ask, asked, have } = share();
  const h = replyOf(
    ask({ type: "have_request", fileId: META.fileId, since: 0, firstPiece: 0, name: "x" }),
  );
  assert.ok(h.type === "have_reply" && h.held === 2);
  assert.deepEqual([...h.entries], [0, 0, 0, 2, 0, 0, 0, 0]);
  have.add(1);
  const more = replyOf(
    ask({ type: "have_request", fileId: META.fileId, since: 2, firstPiece: 0, name: "x" }),
  );
  assert.ok(more.type === "have_reply" && more.first === 2 && more.entries[3] === 1);
  const m = replyOf(ask({ type: "meta_request", name: "anything" }));
  assert.ok(m.type === "meta_reply" && m.size === META.size && m.pieceSize === PIECE);
  const hs = replyOf(
    ask({ type: "hashes_request", fileId: META.fileId, firstPiece: 3, count: 9, name: "x" }),
  );
  assert.ok(hs.type === "hashes_reply" && hs.hashes.length === 32);
  const p = replyOf(ask({ type: "peers_request", fileId: META.fileId, name: "x" }));
  assert.ok(p.type === "peers_reply" && p.entries.length === 6);
  assert.deepEqual(asked, [ASKER]);
});

Deno.test("peer share: an unproven address gets a RETRY, never data", () => {
  const { s } = share();
  const out: ShareAction[] = [];
  const p = {
    ...chunk,
    type: "chunk_request" as const,
    requestId: 1,
    token: NO_TOKEN,
    offset: 0,
    length: 5000,
  };
  s.onDatagram(0, 1000, encode(p), ASKER, out);
  const r = replyOf(out);
  assert.equal(r.type, "retry");
});

Deno.test("property: any datagram gets at most one small answer or runs of held pieces", () => {
  const { s, token } = share();
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), fc.boolean(), (bytes, asChunk) => {
      let data: Uint8Array = bytes;
      if (asChunk && bytes.length >= 12) {
        // a well-formed request with random fields, from a proven address
        const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        data = encode({
          type: "chunk_request",
          requestId: view.getUint32(0),
          token,
          fileId: META.fileId,
          offset: view.getUint32(4) % (5 * PIECE),
          length: 1 + (view.getUint16(8) % 4 * PIECE),
          blockSize: 1 + view.getUint16(10) % 2000,
          name: "f",
        });
      }
      const out: ShareAction[] = [];
      s.onDatagram(0, 1000, data, ASKER, out);
      for (const a of out) {
        if (a.kind === "reply") assert.ok(a.bytes.length <= 3 * Math.max(data.length, 400));
        if (a.kind !== "run") continue;
        for (
          let piece = Math.floor(a.offset / PIECE);
          piece * PIECE < a.offset + a.length;
          piece++
        ) {
          assert.ok(piece === 0 || piece === 2, `piece ${piece} is not verified`);
        }
      }
    }),
    { numRuns: 500 },
  );
});

Deno.test("peer share: replies to a proven asker count toward --share-rate; the gate's answers to anyone do not", () => {
  const rate = 1 << 20;
  const { s, ask, core } = share(new ServeCore({ rate, creditMs: 0 }, 0));
  for (let i = 0; i < 200; i++) { // a flood from a forged address: RETRYs, uncharged
    const out: ShareAction[] = [];
    const p = { type: "have_request" as const, requestId: i, token: NO_TOKEN, fileId: META.fileId };
    s.onDatagram(5, 1000, encode({ ...p, since: 0, firstPiece: 0, name: "x" }), ASKER, out);
    assert.equal(replyOf(out).type, "retry");
  }
  assert.equal(core.chargedAheadMs(5), 0);
  let sent = 0;
  for (let i = 0; i < 20; i++) { // a proven asker's hash lists: charged
    const out = ask({
      type: "hashes_request",
      fileId: META.fileId,
      firstPiece: 0,
      count: 4,
      name: "x",
    });
    sent += out[0].kind === "reply" ? out[0].bytes.length : 0;
  }
  const expectMs = (sent - 1500) / rate * 1000; // (less the bucket's 1500-byte floor)
  assert.ok(Math.abs(core.chargedAheadMs(5) - expectMs) < 0.1, `${core.chargedAheadMs(5)} ms`);
});

Deno.test("peer share: a have poll that may wait is held until a piece is verified, or for HAVE_HOLD_MS; never when there is news", () => {
  const { s, token, have } = share(); // (pieces 2 and 0 held: a log of 2)
  let id = 100;
  const poll = (now: number, since: number, wait = true): ShareAction[] => {
    const out: ShareAction[] = [];
    const p = { type: "have_request", requestId: id++, token, fileId: META.fileId, firstPiece: 0 };
    s.onDatagram(now, 1000, encode({ ...p, since, name: "swarm", wait } as Packet), ASKER, out);
    return out;
  };
  const listed = (bytes: Uint8Array) => {
    const r = decode(bytes);
    assert.ok(r.ok && r.packet.type === "have_reply");
    return { first: r.packet.first, held: r.packet.held, count: r.packet.entries.length / 4 };
  };
  assert.deepEqual(poll(10, 2), [], "nothing past 2: held");
  assert.equal(s.heldUntil(), 10 + HAVE_HOLD_MS);
  const none: HeldReply[] = [];
  s.releaseHeld(50, none);
  assert.equal(none.length, 0, "no news yet");
  have.add(1);
  const out: HeldReply[] = [];
  s.releaseHeld(60, out);
  assert.equal(out.length, 1);
  assert.deepEqual(out[0].to, ASKER);
  assert.deepEqual(listed(out[0].bytes), { first: 2, held: 3, count: 1 }, "piece 1, at once");
  assert.equal(s.heldUntil(), undefined);

  assert.deepEqual(poll(70, 3), []);
  const early: HeldReply[] = [];
  s.releaseHeld(70 + HAVE_HOLD_MS - 1, early);
  assert.equal(early.length, 0);
  s.releaseHeld(70 + HAVE_HOLD_MS, early);
  assert.deepEqual(listed(early[0].bytes), { first: 3, held: 3, count: 0 }, "nothing new, in time");

  assert.equal(poll(300, 1).length, 1, "news already: answered at once");
  assert.equal(poll(300, 3, false).length, 1, "a poll that may not wait: at once");
  have.add(3);
  assert.equal(poll(300, 4).length, 1, "a complete source answers at once");
});

Deno.test("peer share: a request for a rare piece is ranked (it goes first) for two copies; common pieces are not", () => {
  const { s, ask, have } = share();
  have.add(3);
  s.holders = (piece) => (piece === 0 ? 5 : piece === 3 ? 1 : 0);
  const rank = (piece: number) => {
    const [a] = ask({ ...chunk, offset: piece * PIECE, length: 1000 });
    assert.ok(a.kind === "run", "served");
    return a.rank;
  };
  assert.equal(rank(0), undefined, "five peers hold piece 0: not rare");
  assert.deepEqual([rank(2), rank(2), rank(2)], [0, 1, undefined], "copies sent count as holders");
  assert.deepEqual([rank(3), rank(3)], [1, undefined], `rare below ${RARE_HOLDERS} holders`);
  // a request across two pieces (peers do not send them) is not ranked
  const [across] = ask({ ...chunk, offset: 3 * PIECE - 500, length: 1000 });
  assert.ok(across.kind === "run" && across.rank === undefined);
});
