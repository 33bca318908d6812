import assert from "node:assert/strict";
import { META_RETRY, MetaDiscovery } from "../../lib/engine/meta_discovery.ts";
import { attemptTimeout, type RequestTransmit } from "../../lib/engine/retry_schedule.ts";
import { ErrorCode, type Packet, TOKEN_PROBE_NAME } from "../../lib/wire/packet.ts";

/** The next request to send, token probes (a name-less request per server) left out. */
function poll(m: MetaDiscovery, now: number): RequestTransmit | undefined {
  for (let t = m.pollTransmit(now); t; t = m.pollTransmit(now)) {
    if (t.packet.type !== "meta_request" || t.packet.name !== TOKEN_PROBE_NAME) return t;
  }
  return undefined;
}

function ids(): () => number {
  let n = 100;
  return () => n++;
}

function metaReply(requestId: number, digestByte: number): Packet {
  return {
    type: "meta_reply",
    requestId,
    size: 10,
    mtimeMs: 0,
    pieceSize: 4,
    maxBlock: 65000,
    digest: new Uint8Array(32).fill(digestByte),
    piecesRoot: new Uint8Array(32).fill(digestByte + 1),
  };
}

Deno.test("meta discovery: asks every server at once; answers keep their own bytes", () => {
  const m = new MetaDiscovery("a.txt", 2, 0, ids());
  const sent = [poll(m, 0)!, poll(m, 0)!];
  assert.equal(poll(m, 0), undefined);
  assert.deepEqual(sent.map((t) => t.server), [0, 1]);
  const reply = metaReply(sent[0].packet.requestId, 7);
  assert.equal(m.handleReply(30, 0, reply), true);
  // the shell reuses its receive buffer: the answer must not change with it
  (reply as { digest: Uint8Array }).digest.fill(0);
  assert.equal(m.handleReply(30, 1, metaReply(12345, 1)), false, "not an id of ours");
  m.handleReply(
    40,
    1,
    { type: "error", requestId: sent[1].packet.requestId, code: ErrorCode.NotFound, message: "x" },
  );
  assert.ok(m.done);
  const [a, b] = m.answers();
  assert.equal(a.kind, "meta");
  if (a.kind === "meta") assert.equal(a.meta.digest[0], 7);
  assert.equal(b.kind, "error");
  assert.equal(m.rtt(0), 30);
});

Deno.test("meta discovery: RETRY is followed at once with the token; BUSY waits and asks again", () => {
  const m = new MetaDiscovery("a.txt", 1, 0, ids());
  const first = poll(m, 0)!;
  const token = new Uint8Array(16).fill(9);
  m.handleReply(5, 0, { type: "retry", requestId: first.packet.requestId, token });
  const again = poll(m, 5)!;
  assert.ok(again);
  assert.deepEqual((again.packet as { token: Uint8Array }).token, token);
  m.handleReply(10, 0, {
    type: "error",
    requestId: again.packet.requestId,
    code: ErrorCode.Busy,
    message: "",
  });
  assert.equal(poll(m, 10), undefined, "not at once after BUSY");
  assert.ok(m.pollTimeout()! > 10);
  assert.ok(poll(m, m.pollTimeout()!));
  assert.equal(m.done, false);
});

Deno.test("meta discovery: a silent server is given up after the attempts, with doubling timeouts", () => {
  const m = new MetaDiscovery("a.txt", 1, 0, ids());
  let now = 0;
  const sends: number[] = [];
  while (!m.done) {
    const t = poll(m, now);
    if (t) sends.push(now);
    now = m.pollTimeout()!;
    m.handleTimeout(now);
  }
  assert.equal(sends.length, META_RETRY.attempts);
  const gaps = sends.slice(1).map((t, i) => t - sends[i]);
  assert.deepEqual(gaps, [0, 1, 2].map((k) => attemptTimeout(META_RETRY, k)));
  assert.deepEqual(m.answers(), [{ kind: "silent" }]);
});

Deno.test("meta discovery: servers still hashing are listed with their BUSY message", () => {
  const m = new MetaDiscovery("big.iso", 2, 0, ids());
  const [a, b] = [poll(m, 0)!, poll(m, 0)!];
  assert.deepEqual(m.busy(), []);
  assert.equal(m.firstBusyAt, undefined);
  const busy = (id: number, message: string): Packet => ({
    type: "error",
    requestId: id,
    code: ErrorCode.Busy,
    message,
  });
  m.handleReply(20, 0, busy(a.packet.requestId, "hashing 100/400"));
  m.handleReply(25, 1, busy(b.packet.requestId, "hashing 50/400"));
  assert.deepEqual(m.busy(), ["hashing 100/400", "hashing 50/400"]);
  assert.equal(m.firstBusyAt, 20, "the wait is counted from the first BUSY");
  const again = m.pollTimeout()!;
  const a2 = poll(m, again)!;
  m.handleReply(again + 10, a2.server, metaReply(a2.packet.requestId, 3));
  assert.deepEqual(m.busy(), ["hashing 50/400"], "an answered server is no longer busy");
});

Deno.test("meta discovery: an answer right behind its RETRY is taken, with the token", () => {
  const m = new MetaDiscovery("a.txt", 1, 0, ids());
  const first = poll(m, 0)!;
  const token = new Uint8Array(16).fill(5);
  const id = first.packet.requestId;
  m.handleReply(50, 0, { type: "retry", requestId: id, token });
  const again = poll(m, 50)!; // (asked again at once: an older server sends no answer)
  assert.notEqual(again.packet.requestId, id);
  assert.equal(m.handleReply(50, 0, metaReply(id, 4)), true, "the answer to the first id");
  assert.ok(m.done, "one round trip, not two");
  assert.deepEqual(m.token(0), token);
  assert.equal(m.rtt(0), 50);
  assert.equal(m.handleReply(100, 0, metaReply(again.packet.requestId, 4)), true);
  assert.equal(m.answers()[0].kind, "meta");
});

Deno.test("meta discovery: a RETRY arriving after the answer still updates the token", () => {
  const m = new MetaDiscovery("a.txt", 1, 0, ids());
  const first = poll(m, 0)!;
  m.handleReply(40, 0, metaReply(first.packet.requestId, 4));
  const token = new Uint8Array(16).fill(6);
  assert.equal(
    m.handleReply(41, 0, { type: "retry", requestId: first.packet.requestId, token }),
    true,
  );
  assert.deepEqual(m.token(0), token);
  assert.equal(poll(m, 41), undefined, "answered: nothing is asked again");
});

Deno.test("meta discovery: a token probe per server brings the token with the answer", () => {
  const m = new MetaDiscovery("a.txt", 1, 0, ids());
  const probe = m.pollTransmit(0)!;
  const ask = m.pollTransmit(0)!;
  assert.equal(m.pollTransmit(0), undefined, "one probe, one request");
  assert.ok(
    probe.packet.type === "meta_request" && probe.packet.name === TOKEN_PROBE_NAME,
    "probe first",
  );
  assert.ok(ask.packet.type === "meta_request" && ask.packet.name === "a.txt");
  const token = new Uint8Array(16).fill(8);
  assert.equal(
    m.handleReply(50, 0, { type: "retry", requestId: probe.packet.requestId, token }),
    true,
  );
  assert.equal(m.pollTransmit(50), undefined, "a probe's RETRY asks nothing again");
  m.handleReply(51, 0, metaReply(ask.packet.requestId, 2));
  assert.ok(m.done);
  assert.deepEqual(m.token(0), token);
  // a server that validates nothing refuses the empty name: that is not its answer
  const n = new MetaDiscovery("a.txt", 1, 0, ids());
  const p2 = n.pollTransmit(0)!;
  n.pollTransmit(0);
  const refusal: Packet = {
    type: "error",
    requestId: p2.packet.requestId,
    code: ErrorCode.AccessDenied,
    message: "empty name",
  };
  assert.equal(n.handleReply(20, 0, refusal), true);
  assert.ok(!n.done);
});

Deno.test("meta discovery: a server the network says is unreachable is done with at once", () => {
  const m = new MetaDiscovery("a.txt", 2, 0, ids());
  const sent = [poll(m, 0)!, poll(m, 0)!];
  assert.equal(m.handleUnreachable(1, 1, "Connection refused"), true);
  assert.equal(m.handleUnreachable(2, 1, "Connection refused"), false, "once");
  assert.deepEqual(m.partial()[1], { kind: "silent", unreachable: "Connection refused" });
  m.handleReply(3, 0, metaReply(sent[0].packet.requestId, 7));
  assert.ok(m.done, "no time-out waited for");
  assert.equal(poll(m, 10_000), undefined, "nothing sent to it again");
  assert.equal(m.handleUnreachable(4, 0, "Connection refused"), false, "an answer stands");
  assert.equal(m.partial()[0]?.kind, "meta");
});
