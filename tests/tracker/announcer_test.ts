import assert from "node:assert/strict";
import {
  Announcer,
  type AnnouncerEvent,
  FIRST_RETRY_MS,
  UNREACHABLE_AFTER,
} from "../../lib/tracker/announcer.ts";
import {
  type AnnounceEvent,
  encodeAnnounceResponse,
  encodeConnectResponse,
  encodeErrorResponse,
  parseRequest,
} from "../../lib/tracker/bep15_packet.ts";

const ID = new Uint8Array(8).fill(7);

/** An announcer with a counter for transaction ids. */
function announcer(now = 0): Announcer {
  let n = 100;
  return new Announcer({
    infoHash: new Uint8Array(20).fill(1),
    peerId: new Uint8Array(20).fill(2),
    key: 42,
    port: 6000,
    family: "ipv4",
    numWant: 50,
    random: () => n++,
  }, now);
}

/** A scripted tracker: answers what the announcer sent, and records the announce events. */
class FakeTracker {
  events: AnnounceEvent[] = [];
  interval = 5;
  refuse: string | undefined;
  silent = false;
  answer(bytes: Uint8Array): Uint8Array | undefined {
    if (this.silent) return undefined;
    const r = parseRequest(bytes);
    assert.ok(r.ok, "the announcer sends well-formed requests");
    const q = r.request;
    if (q.action === "connect") return encodeConnectResponse(q.transactionId, ID);
    assert.equal(q.action, "announce");
    if (q.action !== "announce") return undefined;
    assert.deepEqual(q.connectionId, ID);
    assert.equal(q.port, 6000);
    this.events.push(q.event);
    if (this.refuse) return encodeErrorResponse(q.transactionId, this.refuse);
    const peers = new Uint8Array([127, 0, 0, 1, 0x1f, 0x90]);
    return encodeAnnounceResponse({
      transactionId: q.transactionId,
      interval: this.interval,
      leechers: 1,
      seeders: 0,
      peers,
    });
  }
}

/** Runs the announcer against `t` until `until` ms, stepping its timers; returns its events. */
function run(a: Announcer, t: FakeTracker, from: number, until: number): AnnouncerEvent[] {
  const events: AnnouncerEvent[] = [];
  for (let now = from; now <= until;) {
    a.handleTimeout(now);
    for (let out = a.pollTransmit(); out; out = a.pollTransmit()) {
      const reply = t.answer(out);
      if (reply) assert.ok(a.handleDatagram(now, reply));
    }
    for (let e = a.poll(); e; e = a.poll()) events.push(e);
    const next = a.pollTimeout();
    if (next === undefined) break;
    now = Math.max(now + 1, next);
  }
  return events;
}

Deno.test("announcer: connect, started, then none every interval; completed once; stopped", () => {
  const a = announcer();
  const t = new FakeTracker();
  const events = run(a, t, 0, 11_000);
  assert.deepEqual(t.events, ["started", "none", "none"]);
  assert.equal(events[0].kind, "peers");
  a.complete(11_500);
  run(a, t, 11_500, 12_000);
  assert.deepEqual(t.events.slice(3), ["completed"]);
  a.stop(12_100);
  const last = run(a, t, 12_100, 13_000);
  assert.deepEqual(t.events.slice(4), ["stopped"]);
  assert.deepEqual(last.map((e) => e.kind), ["stopped"]);
  assert.ok(a.done);
});

Deno.test("announcer: a silent tracker is retried with back-off, said unreachable once, then found", () => {
  const a = announcer();
  const t = new FakeTracker();
  t.silent = true;
  const quiet = run(a, t, 0, 30_000);
  assert.deepEqual(quiet.map((e) => e.kind), ["unreachable"]);
  // 1 + 2 + 4 + 8 + 16 s of waiting: five attempts in 30 s, not hundreds
  t.silent = false;
  const back = run(a, t, 30_000, 100_000);
  assert.equal(back[0].kind, "reachable");
  assert.ok(back.some((e) => e.kind === "peers"));
  assert.equal(t.events[0], "started");
  assert.ok(UNREACHABLE_AFTER * FIRST_RETRY_MS < 30_000);
});

Deno.test("announcer: a refusal is said once, and a restarted tracker is joined again", () => {
  const a = announcer();
  const t = new FakeTracker();
  t.refuse = "info-hash not allowed";
  const refused = run(a, t, 0, 60_000);
  assert.deepEqual(refused.map((e) => e.kind), ["refused"]);
  assert.ok(t.events.length >= 3, "it keeps trying at the interval");
  t.refuse = undefined;
  const joined = run(a, t, 60_000, 80_000);
  assert.ok(joined.some((e) => e.kind === "peers"));
});

Deno.test("announcer: stray and malformed datagrams are not taken as answers", () => {
  const a = announcer();
  a.handleTimeout(0);
  const connect = a.pollTransmit();
  assert.ok(connect);
  assert.ok(!a.handleDatagram(1, new Uint8Array(3)));
  assert.ok(!a.handleDatagram(1, encodeConnectResponse(999, ID)), "wrong transaction id");
  const r = parseRequest(connect);
  assert.ok(r.ok);
  assert.ok(a.handleDatagram(2, encodeConnectResponse(r.request.transactionId, ID)));
});
