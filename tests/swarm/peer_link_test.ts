import assert from "node:assert/strict";
import { DEFAULT_PEER_TIMING, PeerLink, type PeerLinkEvent } from "../../lib/swarm/peer_link.ts";
import { HAVE_HOLD_MS } from "../../lib/swarm/held_polls.ts";
import { HaveLog } from "../../lib/swarm/have_log.ts";
import { decode, encode, ErrorCode, type Packet } from "../../lib/wire/packet.ts";

const FILE = 77n;

/** A scripted peer: answers HAVE from its log and PEERS with one entry; can be silent. */
class FakePeer {
  log = new HaveLog(50);
  silent = false;
  stale = false;
  retryOnce = true;
  haves = 0;
  answer(p: Packet): Packet | undefined {
    if (this.silent) return undefined;
    if (!("token" in p)) return undefined;
    if (this.retryOnce) {
      this.retryOnce = false;
      return { type: "retry", requestId: p.requestId, token: new Uint8Array(16).fill(4) };
    }
    assert.ok(p.token.every((b) => b === 4), "requests after the RETRY carry its token");
    if (this.stale) {
      return {
        type: "error",
        requestId: p.requestId,
        code: ErrorCode.Stale,
        message: "not shared",
      };
    }
    if (p.type === "have_request") {
      this.haves++;
      return this.log.answer(p, FILE);
    }
    if (p.type === "peers_request") {
      return {
        type: "peers_reply",
        requestId: p.requestId,
        fileId: FILE,
        family: 4,
        entries: new Uint8Array(6),
      };
    }
    return undefined;
  }
}

function step(link: PeerLink, peer: FakePeer, from: number, to: number): PeerLinkEvent[] {
  const events: PeerLinkEvent[] = [];
  for (let now = from; now <= to; now += 10) {
    link.handleTimeout(now);
    for (let p = link.pollTransmit(now); p; p = link.pollTransmit(now)) {
      const r = peer.answer(p);
      if (!r) continue;
      const back = decode(encode(r)); // through the codec, as on the wire
      assert.ok(back.ok);
      assert.ok(link.handleReply(now, back.packet));
    }
    for (let e = link.poll(); e; e = link.poll()) events.push(e);
  }
  return events;
}

/** What a peer older than held polls answers to a poll with the flag (request `requestId`). */
function unsupported(requestId: number): Packet {
  return {
    type: "error",
    requestId,
    code: ErrorCode.Unsupported,
    message: "flags 0x4 not allowed",
  };
}

function newLink(now = 0): PeerLink {
  let id = 1;
  return new PeerLink(50, FILE, now, () => id++);
}

Deno.test("peer link: pieces the peer verifies are reported once each, within a poll", () => {
  const peer = new FakePeer();
  const link = newLink();
  peer.log.add(3);
  const first = step(link, peer, 0, 100);
  assert.deepEqual(first.filter((e) => e.kind === "has"), [{ kind: "has", piece: 3 }]);
  peer.log.add(9);
  peer.log.add(3);
  const later = step(link, peer, 110, 110 + DEFAULT_PEER_TIMING.maxHavePollMs + 20);
  assert.deepEqual(later.filter((e) => e.kind === "has"), [{ kind: "has", piece: 9 }]);
  assert.ok(link.have.has(9) && link.have.has(3) && !link.have.has(4));
});

Deno.test("peer link: polls every havePollMs while the peer has news, backing off to maxHavePollMs while it has none", () => {
  const { havePollMs, maxHavePollMs } = DEFAULT_PEER_TIMING;
  const quiet = new FakePeer();
  const idle = newLink();
  step(idle, quiet, 0, 2000);
  // at havePollMs throughout it would be 40 polls; backed off, about 2000 / maxHavePollMs
  assert.ok(quiet.haves <= 2000 / maxHavePollMs + 4, `${quiet.haves} polls of a peer with no news`);
  assert.ok(quiet.haves >= 2000 / maxHavePollMs - 2, `${quiet.haves}: still polled`);
  const busy = new FakePeer();
  const link = newLink();
  let piece = 0;
  const seen: number[] = [];
  for (let t = 0; t < 1000; t += 10) {
    if (t % 50 === 0) busy.log.add(piece++ % 50); // a piece verified every 50 ms
    for (const e of step(link, busy, t, t)) if (e.kind === "has") seen.push(e.piece);
  }
  assert.ok(busy.haves >= 1000 / havePollMs - 3, `${busy.haves} polls of a peer with news`);
  assert.equal(seen.length, 20, "every piece heard of");
});

Deno.test("peer link: peer exchange soon after meeting, then every few seconds", () => {
  const peer = new FakePeer();
  const link = newLink();
  const events = step(link, peer, 0, 11_000);
  const pex = events.filter((e) => e.kind === "peers");
  assert.equal(pex.length, 3, "at 0.3 s, 5.3 s and 10.3 s");
});

Deno.test("peer link: a complete peer is polled no more; seeding stops the polls too", () => {
  const peer = new FakePeer();
  for (let p = 0; p < 50; p++) peer.log.add(p);
  const link = newLink();
  const events = step(link, peer, 0, 200);
  assert.ok(events.some((e) => e.kind === "complete"));
  const polls = peer.haves;
  step(link, peer, 210, 2000);
  assert.equal(peer.haves, polls);
  const other = newLink(0);
  other.seeding = true;
  const p2 = new FakePeer();
  step(other, p2, 0, 2000);
  assert.equal(p2.haves, 0);
});

Deno.test("peer link: silence ends in dead, STALE in unusable", () => {
  const quiet = new FakePeer();
  quiet.silent = true;
  const link = newLink();
  const events = step(link, quiet, 0, DEFAULT_PEER_TIMING.deadAfterMs + 100);
  assert.deepEqual(events, [{ kind: "quiet" }, { kind: "dead" }]);
  assert.ok(link.over && link.pollTransmit(10_000) === undefined);
  const stale = new FakePeer();
  stale.stale = true;
  const other = newLink();
  const e2 = step(other, stale, 0, 500);
  assert.equal(e2.at(-1)?.kind, "unusable");
});

Deno.test("peer link: silence counts only once the peer was asked something", () => {
  const { deadAfterMs, firstPexMs, pexEveryMs } = DEFAULT_PEER_TIMING;
  const peer = new FakePeer();
  const link = newLink();
  link.seeding = true; // (no have polls: between peer exchanges it asks nothing)
  const idle = step(link, peer, 0, firstPexMs + pexEveryMs - 10);
  assert.ok(pexEveryMs > deadAfterMs + 1000, "the idle stretch is longer than the limit");
  assert.ok(!idle.some((e) => e.kind === "dead" || e.kind === "quiet"), "idle, not quiet");
  peer.silent = true;
  const asked = step(link, peer, firstPexMs + pexEveryMs, firstPexMs + pexEveryMs + deadAfterMs);
  assert.deepEqual(asked.filter((e) => e.kind === "dead"), [{ kind: "dead" }]);
});

Deno.test("peer link: silent a while after being asked, the peer is quiet (once); heard again, it is back", () => {
  const { quietAfterMs, deadAfterMs } = DEFAULT_PEER_TIMING;
  assert.ok(quietAfterMs > HAVE_HOLD_MS + 100, "a held poll's answer comes well before");
  const peer = new FakePeer();
  peer.silent = true;
  const link = newLink();
  assert.deepEqual(step(link, peer, 0, quietAfterMs - 10), [], "not yet");
  assert.equal(link.pollTimeout(), quietAfterMs, "woken when it turns quiet");
  assert.deepEqual(step(link, peer, quietAfterMs, quietAfterMs + 300), [{ kind: "quiet" }]);
  link.heard(quietAfterMs + 310); // (a block of data, or a late answer)
  assert.deepEqual(link.poll(), { kind: "back" });
  assert.equal(link.poll(), undefined);
  // (it took 810 ms to be heard: quiet and dead now both wait twice that after the next ask)
  const again = step(link, peer, quietAfterMs + 320, 5 * deadAfterMs);
  assert.deepEqual(again, [{ kind: "dead" }], "asked again, silent again");
});

Deno.test("peer link: a peer that once answered slowly gets twice that long before it counts as quiet", () => {
  const { quietAfterMs } = DEFAULT_PEER_TIMING;
  const link = newLink();
  link.pollTransmit(0);
  const slow = quietAfterMs; // (its answers wait behind its queue on a slow uplink)
  link.heard(slow);
  link.handleTimeout(slow + 1000);
  const poll = link.pollTransmit(slow + 1000);
  assert.ok(poll, "asked again, then silence");
  link.handleTimeout(slow + 1000 + quietAfterMs + 10);
  assert.equal(link.poll(), undefined, "not quiet after quietAfterMs: it has been this slow");
  link.handleTimeout(slow + 1000 + 2 * slow);
  assert.deepEqual(link.poll(), { kind: "quiet" });
});

Deno.test("peer link: a peer that once answered slowly gets twice that long before it counts as dead", () => {
  const { deadAfterMs } = DEFAULT_PEER_TIMING;
  const link = newLink();
  const poll = link.pollTransmit(0)!; // asked at 0...
  const slow = deadAfterMs - 100;
  link.heard(slow); // ...and heard from just in time (data or a late answer)
  link.handleTimeout(slow + 1000);
  assert.ok(link.pollTransmit(slow + 1000), "asked again, then silence");
  link.handleTimeout(slow + 1000 + deadAfterMs);
  assert.equal(link.over, false, "not dead after deadAfterMs: it has been this slow before");
  link.handleTimeout(slow + 1000 + 2 * slow);
  assert.equal(link.over, true, "dead after twice its slowest answer");
  assert.equal(poll.type, "have_request");
});

Deno.test("peer link: a backed-off link polls every havePollMs again once the peer has news", () => {
  const { havePollMs, maxHavePollMs } = DEFAULT_PEER_TIMING;
  const peer = new FakePeer();
  const link = newLink();
  step(link, peer, 0, 1000); // quiet: backed off to maxHavePollMs
  const before = peer.haves;
  step(link, peer, 1010, 1010 + 2 * maxHavePollMs);
  assert.ok(peer.haves - before <= 3, `${peer.haves - before} polls in ${2 * maxHavePollMs} ms`);
  peer.log.add(7); // news
  let t = 1020 + 2 * maxHavePollMs;
  const heard = step(link, peer, t, t + maxHavePollMs);
  assert.ok(heard.some((e) => e.kind === "has" && e.piece === 7));
  t += maxHavePollMs + 10;
  for (let i = 0; i < 10; i++, t += havePollMs) { // news keeps coming
    peer.log.add(8 + i);
    step(link, peer, t, t + havePollMs - 10);
  }
  const fast = peer.haves;
  step(link, peer, t, t + 2 * havePollMs - 10);
  assert.ok(peer.haves - fast >= 1, "still polled at the base interval after news");
});

Deno.test("peer link: polls may wait; a peer that holds them tells of a piece at once, and a hold's empty answer is followed at once", () => {
  const peer = new FakePeer();
  peer.retryOnce = false;
  const link = newLink();
  link.token = new Uint8Array(16).fill(4);
  let held: { p: Packet & { type: "have_request" }; at: number } | undefined;
  const heard: [number, number][] = [];
  let dead = false;
  for (let now = 0; now <= 2000; now += 10) {
    if (now === 1000) peer.log.add(6); // a piece verified
    if (now === 1030) peer.log.add(7); // and another, soon after
    link.handleTimeout(now);
    for (let p = link.pollTransmit(now); p; p = link.pollTransmit(now)) {
      if (p.type !== "have_request") continue;
      assert.equal(p.wait, true, "every have poll may wait");
      assert.equal(held, undefined, "one poll at a time");
      held = { p, at: now };
    }
    if (held && (peer.log.held > held.p.since || now - held.at >= HAVE_HOLD_MS)) {
      peer.haves++;
      const back = decode(encode(peer.log.answer(held.p, FILE)));
      assert.ok(back.ok && link.handleReply(now, back.packet), "a held answer is still awaited");
      held = undefined; // (the next poll leaves at the next turn)
    }
    for (let e = link.poll(); e; e = link.poll()) {
      if (e.kind === "has") heard.push([e.piece, now]);
      if (e.kind === "dead") dead = true;
    }
  }
  for (let e = link.poll(); e; e = link.poll()) if (e.kind === "has") heard.push([e.piece, 2000]);
  assert.equal(dead, false, "a peer that holds polls is not silent");
  // (the poll after news leaves havePollMs after the last, not after a backed-off interval)
  assert.deepEqual(heard, [[6, 1000], [7, 1030]], "told as soon as the pieces are verified");
  // quiet: one poll per hold (and the turn between), not one per havePollMs
  assert.ok(peer.haves >= 8 && peer.haves <= 11, `${peer.haves} polls in 2 s`);
});

Deno.test("peer link: a peer older than held polls (UNSUPPORTED to the flag) is polled without it, at once", () => {
  const link = newLink();
  link.token = new Uint8Array(16).fill(4);
  const first = link.pollTransmit(0);
  assert.ok(first?.type === "have_request" && first.wait === true);
  assert.ok(link.handleReply(3, unsupported(first.requestId)));
  const again = link.pollTransmit(3);
  assert.ok(again?.type === "have_request", "asked again at once");
  assert.equal(again.wait, undefined, "without the flag");
});

Deno.test("peer link: a peer that holds polls sets their pace: news in, the next poll leaves at once", () => {
  const { havePollMs } = DEFAULT_PEER_TIMING;
  const peer = new FakePeer();
  peer.retryOnce = false;
  const link = newLink();
  link.token = new Uint8Array(16).fill(4);
  const answer = (now: number, p: Packet | undefined) => {
    assert.ok(p?.type === "have_request");
    const back = decode(encode(peer.answer(p)!));
    assert.ok(back.ok && link.handleReply(now, back.packet));
  };
  const first = link.pollTransmit(0);
  peer.log.add(4); // (verified while the poll was held: the answer tells of it, 5 ms later)
  answer(5, first);
  const next = link.pollTransmit(5);
  assert.ok(next?.type === "have_request" && next.wait, "asked again at once, may wait");
  // a peer that does not know held polls is asked havePollMs apart at most, news or not
  const old = newLink();
  old.token = new Uint8Array(16).fill(4);
  assert.ok(old.handleReply(1, unsupported(old.pollTransmit(0)!.requestId)));
  const plain = old.pollTransmit(1);
  peer.log.add(5);
  const back = decode(encode(peer.answer(plain!)!));
  assert.ok(back.ok && old.handleReply(6, back.packet));
  assert.equal(old.pollTransmit(6), undefined, "not at once");
  assert.ok(old.pollTransmit(1 + havePollMs)?.type === "have_request", "havePollMs after the last");
});
