import assert from "node:assert/strict";
import { SwarmNode, type SwarmTransfer } from "../../lib/swarm/swarm_node.ts";
import { HaveLog } from "../../lib/swarm/have_log.ts";
import { PeerShare } from "../../lib/swarm/peer_share.ts";
import { HAVE_HOLD_MS } from "../../lib/swarm/held_polls.ts";
import { RequestGate } from "../../lib/serving/request_gate.ts";
import { ServeCore } from "../../lib/serving/serve_core.ts";
import { CookieJar } from "../../lib/wire/cookie.ts";
import { decode, encode, HaveForm, type Packet } from "../../lib/wire/packet.ts";

const PIECES = 8;
const FILE = 0x77n;
const PEER = { hostname: "10.0.0.9", port: 7000 };
const TRACKER = { hostname: "10.0.0.1", port: 6969 };

/** A node with one peer met (it asked us), and a fake transfer recording what it is told. */
function setup() {
  const jar = new CookieJar(new Uint8Array(32).fill(1));
  const have = new HaveLog(PIECES);
  const told: string[] = [];
  const ready = { now: true };
  const forgets: ((piece: number) => void)[] = [];
  const transfer: SwarmTransfer = {
    addPeer: (_now, peer, _has, forget) => {
      if (!ready.now) return false; // (a resume's re-check: the transfer does not run yet)
      forgets.push(forget);
      told.push(`add ${peer}`);
      return true;
    },
    removePeer: (peer, reason) => void told.push(`remove ${peer} ${reason}`),
    pausePeer: (peer, paused) => void told.push(`${paused ? "pause" : "resume"} ${peer}`),
    peerHas: (peer) => void told.push(`has ${peer}`),
    handlePeerDatagram: () => {},
    peerAnswers: () => {},
    serversMayHaveWork: () => void told.push("servers"),
    askServersAsSwarm: (on) => void told.push(`swarm ${on}`),
    preferPiece: (piece) => void told.push(`prefer ${piece}`),
    acceptsPeers: () => ready.now,
  };
  const share = new PeerShare(
    {
      fileId: FILE,
      size: PIECES << 20,
      pieceSize: 1 << 20,
      mtimeMs: 0,
      digest: new Uint8Array(32),
      piecesRoot: new Uint8Array(32),
      pieceHashes: new Uint8Array(PIECES * 32),
    },
    have,
    new RequestGate(jar, undefined),
    new ServeCore({}, 0),
    () => ({ family: 4, entries: new Uint8Array(0) }),
  );
  let id = 1000;
  const node = new SwarmNode(
    {
      pieces: PIECES,
      fileId: FILE,
      tracker: TRACKER,
      trackerLabel: "t",
      nextRequestId: () => id++,
      announce: {
        infoHash: new Uint8Array(20),
        peerId: new Uint8Array(20),
        key: 1,
        port: 6000,
        family: "ipv4",
        numWant: 50,
        random: () => 5,
      },
    },
    transfer,
    share,
    have,
    0,
  );
  // the peer asks us (with a valid token): we meet it
  const token = jar.issue(PEER.hostname, Date.now());
  const ask = {
    type: "have_request",
    requestId: 1,
    token,
    fileId: FILE,
    since: 0,
    firstPiece: 0,
    name: "s",
  } as const;
  node.handleDatagram(0, Date.now(), encode(ask), PEER);
  const askAgain = (now: number) =>
    node.handleDatagram(now, Date.now(), encode({ ...ask, requestId: now }), PEER);
  /** The peer polls us with "may wait", knowing the first `since` entries of our log. */
  const pollWaiting = (now: number, since: number) =>
    node.handleDatagram(
      now,
      Date.now(),
      encode({ ...ask, requestId: now, since, wait: true }),
      PEER,
    );
  return { node, told, askAgain, pollWaiting, forgets, ready };
}

/** Answers every HAVE_REQUEST the node sends to the peer with `held` pieces and `fetching`. */
function peerAnswers(node: SwarmNode, now: number, held: number[], fetching: number[]): void {
  node.handleTimeout(now);
  for (let s = node.pollSend(now); s; s = node.pollSend(now)) {
    if (s.kind !== "datagram" || s.to.port !== PEER.port) continue;
    const r = decode(s.bytes);
    if (!r.ok || r.packet.type !== "have_request") continue;
    const u32 = (xs: number[]) => {
      const b = new Uint8Array(4 * xs.length);
      xs.forEach((x, i) => new DataView(b.buffer).setUint32(4 * i, x));
      return b;
    };
    const reply: Packet = {
      type: "have_reply",
      requestId: r.packet.requestId,
      fileId: FILE,
      pieces: PIECES,
      held: held.length,
      form: HaveForm.List,
      first: 0,
      entries: u32(held),
      fetching: u32(fetching),
    };
    node.handleDatagram(now, Date.now(), encode(reply), PEER);
  }
}

Deno.test("swarm node: servers are kept off pieces a peer holds or fetches, and a claim expires", () => {
  const { node, told } = setup();
  peerAnswers(node, 1, [0], [3]);
  assert.equal(node.availability[0], 1);
  assert.equal(node.claimed[3], 1);
  assert.ok(told.includes("add 0"), "the peer with a piece joins the transfer");
  assert.ok(!node.serverMayServe(0), "a peer holds it");
  assert.ok(!node.serverMayServe(3), "a peer fetches it from a server");
  assert.ok(node.serverMayServe(5));
  // a claim that never turns into a piece holds the servers back only a few seconds, even
  // when the peer repeats it in every answer
  for (let t = 500; t <= 5000; t += 500) peerAnswers(node, t, [0], [3]);
  assert.equal(node.claimed[3], 1);
  assert.ok(node.serverMayServe(3), "the claim expired");
  assert.ok(told.includes("servers"), "the servers are told they may have work");
});

Deno.test("swarm node: a peer dropped for a bad piece is banned and its counts are taken back", () => {
  const { node, told, askAgain } = setup();
  peerAnswers(node, 1, [0, 1], [2]);
  node.peerDropped(0, "excluded: sent bytes that failed the hash of piece 1", 2);
  assert.deepEqual([...node.availability], [0, 0, 0, 0, 0, 0, 0, 0]);
  assert.deepEqual([...node.claimed], [0, 0, 0, 0, 0, 0, 0, 0]);
  assert.ok(node.serverMayServe(0) && node.serverMayServe(2));
  assert.equal(node.peers[0].alive, false);
  assert.match(node.peers[0].reason ?? "", /excluded/);
  // met again (it asks us once more): not taken back
  told.length = 0;
  askAgain(3);
  peerAnswers(node, 4, [0, 1], []);
  assert.ok(node.peers.length === 1, "no new peer entry for the banned address");
  assert.equal(node.livePeers, 0);
  assert.ok(!told.some((t) => t.startsWith("add")));
});

Deno.test("swarm node: a peer silent a while (quiet) no longer keeps the servers off its pieces and is asked nothing; heard again, it counts again", () => {
  const { node, told } = setup();
  peerAnswers(node, 1, [0, 1], [2]);
  assert.ok(!node.serverMayServe(0) && !node.serverMayServe(2));
  told.length = 0;
  // it answers nothing from now on (its next poll left at 1)
  for (let t = 10; t <= 600; t += 10) {
    node.handleTimeout(t);
    while (node.pollSend(t));
  }
  assert.deepEqual([...node.availability], [0, 0, 0, 0, 0, 0, 0, 0]);
  assert.deepEqual([...node.claimed], [0, 0, 0, 0, 0, 0, 0, 0]);
  assert.ok(node.serverMayServe(0) && node.serverMayServe(2), "the servers may be asked");
  assert.ok(told.includes("pause 0") && told.includes("servers"), told.join(", "));
  assert.ok(!told.some((t) => t.startsWith("remove")), "not removed: it may be only slow");
  assert.equal(node.peers[0].alive, true);
  told.length = 0;
  node.heard(0, 700); // (a block from it)
  node.handleTimeout(700);
  assert.deepEqual([...node.availability], [1, 1, 0, 0, 0, 0, 0, 0], "counted once again");
  assert.ok(told.includes("resume 0"), told.join(", "));
  assert.ok(!node.serverMayServe(0));
});

Deno.test("swarm node: server requests stay flagged unless the tracker is silent and no peer answers", () => {
  const { node, told, askAgain } = setup();
  node.handleTimeout(0);
  assert.ok(!told.some((t) => t.startsWith("swarm")), "flagged from the start (by the shell)");
  // the tracker never answers, and the one peer met has not answered either: plain requests
  let t = 0;
  for (; t < 120_000 && !told.includes("swarm false"); t += 250) {
    node.handleTimeout(t);
    while (node.pollSend(t));
  }
  assert.ok(told.includes("swarm false"), "alone off a silent tracker: asked as a plain fetcher");
  t += 21_000; // (the silent peer was given up; it may be met again after 20 s)
  askAgain(t);
  peerAnswers(node, t, [], []);
  node.handleTimeout(t);
  assert.equal(told.at(-1), "swarm true", "a peer answers: flagged again");
  node.completed(t + 3000);
  node.handleTimeout(t + 3001);
  assert.equal(told.at(-1), "swarm false", "a complete fetcher asks nothing as a swarm fetcher");
});

Deno.test("swarm node: a peer whose have-log shrank (it started over) is met anew with an empty map", () => {
  const { node, told } = setup();
  peerAnswers(node, 1, [0, 1, 2], []);
  assert.deepEqual([...node.availability].slice(0, 3), [1, 1, 1]);
  // its next answer shows a log of one piece: it lost the other two
  peerAnswers(node, 200, [5], []);
  assert.equal(node.peers[0].alive, false);
  assert.match(node.peers[0].reason ?? "", /started over/);
  assert.ok(told.includes("remove 0 started over with fewer pieces"), told.join("; "));
  assert.deepEqual([...node.availability].slice(0, 3), [0, 0, 0], "its old claims are gone");
  assert.equal(node.peers.length, 2, "the same address, met again as a new peer");
  assert.equal(node.availability[5], 1, "and what it holds now counts");
});

Deno.test("swarm node: a piece new in the swarm goes first, once; pieces read when a peer joins do not", () => {
  const { node, told } = setup();
  peerAnswers(node, 1, [0, 1], []);
  assert.ok(told.includes("add 0"));
  assert.ok(!told.some((t) => t.startsWith("prefer")), "what a joining peer holds is not news");
  peerAnswers(node, 200, [0, 1, 4], []);
  assert.deepEqual(told.filter((t) => t.startsWith("prefer")), ["prefer 4"]);
  peerAnswers(node, 400, [0, 1, 4, 6], []);
  peerAnswers(node, 600, [0, 1, 4, 6], []);
  assert.deepEqual(told.filter((t) => t.startsWith("prefer")), ["prefer 4", "prefer 6"]);
});

Deno.test("swarm node: a complete peer that turns out to lack a piece (NOT_HELD) is polled for its have-map again at once", () => {
  const { node, forgets } = setup();
  peerAnswers(node, 1, [0, 1, 2, 3, 4, 5, 6, 7], []);
  node.handleTimeout(2);
  while (node.pollSend(2));
  const idle = node.pollTimeout() ?? Infinity;
  assert.ok(idle > 200, `a complete peer is not polled: next turn at ${idle} ms`);
  forgets[0](3); // it answered NOT_HELD for piece 3
  const next = node.pollTimeout() ?? Infinity;
  assert.ok(next <= 60, `polled again within a poll interval, not at ${next} ms`);
});

Deno.test("swarm node: a have poll held for news is answered in the turn a piece is verified, or when its hold ends", () => {
  const { node, pollWaiting } = setup();
  const repliesToPeer = (now: number) => {
    const out: Packet[] = [];
    for (let s = node.pollSend(now); s; s = node.pollSend(now)) {
      if (s.kind !== "datagram" || s.to.port !== PEER.port) continue;
      const r = decode(s.bytes);
      if (r.ok && r.packet.type === "have_reply") out.push(r.packet);
    }
    return out;
  };
  repliesToPeer(0); // (the answer to setup's first poll)
  pollWaiting(10, 0);
  node.handleTimeout(20);
  assert.deepEqual(repliesToPeer(20), [], "nothing to tell: held");
  assert.ok((node.pollTimeout() ?? Infinity) <= 10 + HAVE_HOLD_MS, "the node wakes for its end");
  node.pieceVerified(5, 30);
  assert.equal(node.pollTimeout(), 30, "an answer to send: a turn now");
  const told = repliesToPeer(30);
  assert.equal(told.length, 1);
  assert.ok(told[0].type === "have_reply" && told[0].held === 1 && told[0].requestId === 10);
  pollWaiting(40, 1);
  node.handleTimeout(40 + HAVE_HOLD_MS);
  const late = repliesToPeer(40 + HAVE_HOLD_MS);
  assert.ok(late.length === 1 && late[0].type === "have_reply" && late[0].held === 1, "in time");
});

Deno.test("swarm node: peers met while the transfer could not take them (a resume's re-check) join as soon as it can", () => {
  const { node, told, ready } = setup();
  ready.now = false;
  peerAnswers(node, 100, [0, 1, 2, 3, 4, 5, 6, 7], []); // (a seed: its have-map will not grow)
  assert.ok(!told.some((t) => t.startsWith("add")), "not taken during the re-check");
  ready.now = true;
  node.handleTimeout(150);
  assert.ok(told.includes("add 0"), `joined at once, not at the next once-a-second pass: ${told}`);
});
