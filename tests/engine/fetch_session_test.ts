import assert from "node:assert/strict";
import { FetchSession, type SessionEvent } from "../../lib/engine/fetch_session.ts";
import { type ChunkRequest, ErrorCode } from "../../lib/wire/packet.ts";
import { formatBusyRetry } from "../../lib/wire/busy_retry.ts";

/** A session of `size` bytes in 1 MiB pieces and 1444-byte blocks, with no source yet. */
function bare(size: number, lanes?: number): FetchSession {
  let id = 1;
  return new FetchSession({
    size,
    pieceSize: 1 << 20,
    blockSize: 1444,
    fileId: 3n,
    name: "f",
    nextRequestId: () => id++,
    lanes,
  }, 0);
}

function session(): FetchSession {
  const s = bare(8 << 20);
  s.addSource(0, 0, { rttMs: 10 });
  return s;
}

function drain(s: FetchSession, now: number): ChunkRequest[] {
  const out: ChunkRequest[] = [];
  for (let t = s.pollTransmit(now); t; t = s.pollTransmit(now)) out.push(t.packet);
  return out;
}

function events(s: FetchSession): SessionEvent[] {
  const out: SessionEvent[] = [];
  for (let e = s.poll(); e; e = s.poll()) out.push(e);
  return out;
}

Deno.test("session: RETRYs for requests sent before the token came do not count as failures", () => {
  const s = session();
  const first: ChunkRequest[] = [];
  for (let t = 0; t < 40; t++) first.push(...drain(s, t)); // paced: before any answer came
  assert.ok(first.length > 8, `more went out without a token than RETRYs tolerated in a row`);
  const token = new Uint8Array(16).fill(7);
  // the source validates addresses: every one of those requests is answered with a RETRY
  for (const r of first) s.handleReply(40, 0, { type: "retry", requestId: r.requestId, token });
  assert.deepEqual(events(s).filter((e) => e.kind === "dropped"), [], "not dropped");
  const next: ChunkRequest[] = [];
  for (let t = 40; t < 60; t++) next.push(...drain(s, t)); // (as the pacing allows)
  assert.ok(next.length > 0);
  assert.ok(next.every((r) => r.token.every((b) => b === 7)), "later requests carry the token");
});

Deno.test("session: RETRY after RETRY for requests carrying the token drops the source", () => {
  const s = session();
  let now = 0;
  const token = new Uint8Array(16).fill(7);
  let dropped: SessionEvent | undefined;
  for (let round = 0; round < 20 && !dropped; round++) {
    const sent = drain(s, now);
    now += 20;
    // each round answers only the first request, so every RETRY counted follows the last one
    if (sent[0]) s.handleReply(now, 0, { type: "retry", requestId: sent[0].requestId, token });
    dropped = events(s).find((e) => e.kind === "dropped");
    s.handleTimeout(now);
  }
  assert.ok(dropped?.kind === "dropped");
  assert.match(dropped.reason, /address validation keeps failing/);
});

Deno.test("session: NOT_HELD keeps the source, withdraws the piece and sends it elsewhere", () => {
  const s = bare(4 << 20);
  const claimed = new Set([0, 1, 2, 3]);
  const forgotten: number[] = [];
  const forget = (p: number) => void (claimed.delete(p), forgotten.push(p));
  s.addSource(0, 0, { has: (p) => claimed.has(p), rttMs: 10, forget });
  const first = drain(s, 0);
  assert.ok(first.length > 0);
  const piece = Math.floor(first[0].offset / (1 << 20));
  s.handleReply(1, 0, {
    type: "error",
    requestId: first[0].requestId,
    code: ErrorCode.NotHeld,
    message: "not held",
  });
  assert.deepEqual(events(s), [{ kind: "not_held", source: 0, piece }]);
  assert.deepEqual(forgotten, [piece]);
  assert.equal(s.alive, 1, "still a source");
  s.addSource(1, 1, { rttMs: 10 });
  const toPiece: number[] = [];
  for (let now = 2; now < 200; now++) {
    for (let t = s.pollTransmit(now); t; t = s.pollTransmit(now)) {
      if (Math.floor(t.packet.offset / (1 << 20)) === piece) toPiece.push(t.source);
    }
  }
  assert.ok(toPiece.length > 0, "the piece is asked for again");
  assert.ok(toPiece.every((source) => source === 1), "only from the source that holds it");
});

Deno.test("session: a server's GIVEN_OUT keeps it, names the unsent pieces; an old server's UNSUPPORTED unflags it", () => {
  const s = bare(4 << 20, 2);
  s.addSource(0, 0, { rttMs: 10 });
  s.setSwarmRequests(0, true);
  const sent: {
    piece: number;
    offset: number;
    length: number;
    lane: number;
    swarm?: boolean;
    requestId: number;
  }[] = [];
  const take = (now: number) => {
    for (let t = s.pollTransmit(now); t; t = s.pollTransmit(now)) {
      const { offset, length, swarm, requestId } = t.packet;
      const piece = Math.floor(offset / (1 << 20));
      sent.push({ piece, offset, length, lane: t.lane, swarm, requestId });
    }
  };
  // (a swarm request is for a whole piece, and two may be in flight: the pacing spaces them)
  for (let now = 0; now < 1000 && sent.length < 2; now++) take(now);
  assert.equal(sent.length, 2, "two whole pieces in flight");
  assert.ok(
    sent.every((r) => r.offset === r.piece << 20 && r.length === 1 << 20),
    "each asks for its whole piece",
  );
  assert.ok(sent.every((r) => r.swarm === true), "flagged");
  assert.ok(sent.every((r) => r.lane === r.piece % 2), "a piece's requests leave from one lane");
  const first = sent[0];
  s.handleReply(6, 0, {
    type: "error",
    requestId: first.requestId,
    code: ErrorCode.GivenOut,
    message: "given out; unsent 2 3",
  });
  assert.deepEqual(events(s), [{
    kind: "given_out",
    source: 0,
    piece: first.piece,
    unsent: [2, 3],
  }]);
  assert.equal(s.alive, 1, "still a source");
  // an older server knows no swarm flag: every flagged request in flight gets UNSUPPORTED, and
  // it is asked plainly from then on
  assert.ok(sent.length >= 2, `${sent.length} requests in flight`);
  for (const r of sent.slice(1)) {
    s.handleReply(7, 0, {
      type: "error",
      requestId: r.requestId,
      code: ErrorCode.Unsupported,
      message: "unsupported flags 0x4",
    });
  }
  assert.equal(s.alive, 1, "not dropped for it");
  sent.length = 0;
  for (let now = 8; now < 400 && sent.length === 0; now++) take(now);
  assert.ok(sent.length > 0 && sent.every((r) => r.swarm === undefined), "no flag any more");
  s.setSwarmRequests(0, true);
  for (let now = 400; now < 800; now++) take(now);
  assert.ok(sent.every((r) => r.swarm === undefined), "and it stays off");
  // GIVEN_OUT to a request that did not ask for it is a fault, not a decision to go along with
  s.handleReply(801, 0, {
    type: "error",
    requestId: sent[0].requestId,
    code: ErrorCode.GivenOut,
    message: "given out; unsent 1",
  });
  assert.ok(!events(s).some((e) => e.kind === "given_out"));
});

Deno.test("session: a whole-piece source is never asked for the part of a piece that fits its window", () => {
  // a server asked as a swarm's records a piece as given out at its first byte: asked for a
  // head that fit, with the rest left for a later request, it held everyone else off a piece
  // this fetcher could not share yet
  const piece = 64 << 10;
  const blockSize = 4 << 10;
  let id = 1;
  const s = new FetchSession({
    size: 16 * piece,
    pieceSize: piece,
    blockSize,
    fileId: 3n,
    name: "f",
    nextRequestId: () => id++,
  }, 0);
  s.addSource(0, 0, { rttMs: 10 });
  s.setSwarmRequests(0, true);
  const sent: ChunkRequest[] = [];
  /** Requests being answered, in order, and the next offset each sends. */
  const due: { r: ChunkRequest; at: number }[] = [];
  for (let now = 0; now < 400 && !s.sched.done; now++) {
    for (let t = s.pollTransmit(now); t; t = s.pollTransmit(now)) {
      sent.push(t.packet);
      due.push({ r: t.packet, at: t.packet.offset });
    }
    // the source sends one block a ms, in the order asked (a paced server)
    const d = due[0];
    if (!d) continue;
    const n = Math.min(blockSize, d.r.offset + d.r.length - d.at);
    const h = { requestId: d.r.requestId, fileIdHigh: 0, fileIdLow: 3, offset: d.at, dataAt: 0 };
    s.handleBlock(now, 0, { ...h, dataLen: n });
    d.at += n;
    if (d.at >= d.r.offset + d.r.length) due.shift();
    for (let e = s.poll(); e; e = s.poll()) {
      if (e.kind === "verify") s.handleVerified(e.piece, true);
    }
  }
  assert.ok(s.sched.done, "the file came");
  assert.equal(sent.length, 16, "one request per piece");
  for (const r of sent) {
    assert.equal(r.offset % piece, 0, `request at ${r.offset} starts a piece`);
    assert.equal(r.length, piece, `request at ${r.offset} asks for the whole piece`);
  }
});

Deno.test("session: a swarm source's BUSY with a retry time pauses it until the earliest time given, with no fault", () => {
  const s = bare(8 << 20);
  s.addSource(0, 0, { rttMs: 10 });
  s.setSwarmRequests(0, true);
  let now = 0;
  const sent: ChunkRequest[] = [];
  while (sent.length < 2 && now < 1000) sent.push(...drain(s, now++));
  assert.equal(sent.length, 2, "two whole pieces in flight");
  const busy = (r: ChunkRequest, ms: number) =>
    s.handleReply(now, 0, {
      type: "error",
      requestId: r.requestId,
      code: ErrorCode.Busy,
      message: formatBusyRetry(ms),
    });
  busy(sent[1], 300);
  busy(sent[0], 40); // (the earliest wins: turns are staggered per request)
  assert.deepEqual(events(s), []);
  assert.equal(s.alive, 1);
  const at = now;
  for (; now < at + 40; now++) {
    assert.deepEqual(drain(s, now), [], `nothing before its turn (${now})`);
  }
  let again: ChunkRequest[] = [];
  for (; again.length === 0 && now < at + 300; now++) again = drain(s, now);
  assert.ok(
    again.length > 0 && now - 1 - at >= 40 && now - 1 - at < 300,
    `back at ${now - 1 - at} ms: after the earliest time, before the latest`,
  );
  // the same message to a plain request is a plain BUSY: the RTO back-off, not the time given
  const p = bare(8 << 20);
  p.addSource(0, 0, { rttMs: 10 });
  const plain = drain(p, 0)[0];
  p.handleReply(1, 0, {
    type: "error",
    requestId: plain.requestId,
    code: ErrorCode.Busy,
    message: formatBusyRetry(10_000),
  });
  let back = 2;
  while (drain(p, back).length === 0 && back < 5000) back++;
  assert.ok(back < 5000, `a plain request's BUSY is not a 10 s pause (back at ${back} ms)`);
});

Deno.test("session: a paused source is asked nothing; what it had in flight goes to others at once; resumed, it is asked again", () => {
  const s = bare(4 << 20);
  s.addSource(0, 0, { rttMs: 10 });
  const before = drain(s, 0);
  assert.ok(before.length > 0);
  const pieces = new Set(before.map((r) => Math.floor(r.offset / (1 << 20))));
  s.pauseSource(0, true);
  assert.deepEqual(drain(s, 1), [], "paused: no request leaves");
  assert.equal(s.wantsService(1), false);
  assert.equal(s.alive, 1, "still a source, not dropped");
  assert.deepEqual(events(s), [], "no event: nothing was dropped");
  s.addSource(1, 2, { rttMs: 10 });
  const moved = new Set<number>();
  for (let now = 2; now < 5; now++) {
    for (let t = s.pollTransmit(now); t; t = s.pollTransmit(now)) {
      assert.equal(t.source, 1, "only the other source is asked");
      moved.add(Math.floor(t.packet.offset / (1 << 20)));
    }
  }
  for (const p of pieces) assert.ok(moved.has(p), `piece ${p} was asked of the other source`);
  s.pauseSource(0, false);
  const after: number[] = [];
  for (let now = 5; now < 200 && after.length === 0; now++) {
    for (let t = s.pollTransmit(now); t; t = s.pollTransmit(now)) after.push(t.source);
  }
  assert.ok(after.includes(0), "resumed: asked again");
});
