/**
 * The fetch coordinator alone, against a scripted fake: no network, no files, a hand-moved
 * clock. Each test plays the servers' answers and checks the actions that come out.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { ExitCode, UdpgetError } from "../../lib/base/exit.ts";
import type { FileMeta } from "../../lib/engine/consensus.ts";
import type {
  CoordinatorAction,
  CoordinatorTransmit,
  FetchCoordinatorOptions,
} from "../../lib/engine/fetch_actions.ts";
import { FetchCoordinator } from "../../lib/engine/fetch_coordinator.ts";
import { ErrorCode, fileIdOf, type Packet, TOKEN_PROBE_NAME } from "../../lib/wire/packet.ts";
import { formatBusyRetry } from "../../lib/wire/busy_retry.ts";

const PIECE = 4096;
const PIECES = 4;

function sha256(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update(bytes).digest());
}

/** The piece hashes of a version (made up: only their root matters here). */
function hashesOf(version: number): Uint8Array {
  return new Uint8Array(PIECES * 32).fill(version);
}

/** A version of the 16 KiB file, told apart by `version`. */
function meta(version: number): FileMeta {
  return {
    size: PIECES * PIECE,
    pieceSize: PIECE,
    maxBlock: 65000,
    mtimeMs: 0,
    digest: new Uint8Array(32).fill(version),
    piecesRoot: sha256(hashesOf(version)),
  };
}

function coordinator(servers: number, o: Partial<FetchCoordinatorOptions> = {}) {
  let id = 1;
  return new FetchCoordinator({
    servers: Array.from({ length: servers }, (_, i) => ({
      label: `s${i}`,
      hostname: `10.0.0.${i + 1}`,
      family: "ipv4" as const,
    })),
    lanes: 1,
    receiveBuffer: 1 << 20,
    blockSize: 1000, // (no probe)
    verify: "pieces",
    keyed: false,
    nextRequestId: () => id++,
    sha256,
    ...o,
  });
}

function sends(c: FetchCoordinator, now: number): CoordinatorTransmit[] {
  const out: CoordinatorTransmit[] = [];
  for (let t = c.pollTransmit(now); t; t = c.pollTransmit(now)) out.push(t);
  return out;
}

function actions(c: FetchCoordinator): CoordinatorAction[] {
  const out: CoordinatorAction[] = [];
  for (let a = c.poll(); a; a = c.poll()) out.push(a);
  return out;
}

function only<K extends CoordinatorAction["kind"]>(
  all: CoordinatorAction[],
  kind: K,
): Extract<CoordinatorAction, { kind: K }>[] {
  return all.filter((a): a is Extract<CoordinatorAction, { kind: K }> => a.kind === kind);
}

/** Answers the metadata requests among `sent` (not the token probes) with each server's version. */
function answerMeta(
  c: FetchCoordinator,
  now: number,
  sent: CoordinatorTransmit[],
  versions: number[],
) {
  for (const t of sent) {
    const p = t.packet;
    if (p.type !== "meta_request" || p.name === TOKEN_PROBE_NAME) continue;
    const m = meta(versions[t.server]);
    c.handleDatagram(now, t.server, { type: "meta_reply", requestId: p.requestId, ...m });
  }
}

/** Answers the hash requests among `sent` with `list` (the right one, or not). */
function answerHashes(
  c: FetchCoordinator,
  now: number,
  sent: CoordinatorTransmit[],
  list: Uint8Array,
) {
  for (const t of sent) {
    const p = t.packet;
    if (p.type !== "hashes_request") continue;
    const hashes = list.subarray(p.firstPiece * 32, (p.firstPiece + p.count) * 32);
    const reply: Packet = {
      type: "hashes_reply",
      requestId: p.requestId,
      fileId: p.fileId,
      firstPiece: p.firstPiece,
      hashes,
    };
    c.handleDatagram(now, t.server, reply);
  }
}

/** Discovery of "f" on `versions.length` servers, each answering with its version at 10 ms. */
function discover(c: FetchCoordinator, versions: number[]): CoordinatorAction[] {
  c.start(0, "f");
  const sent = sends(c, 0);
  assert.equal(sent.length, 2 * versions.length, "a token probe and a request to each");
  answerMeta(c, 10, sent, versions);
  return actions(c);
}

/** On to the transfer: the output is fine, the `.part` opened (`ring`, `claimed`). */
function openPart(c: FetchCoordinator, ring = 0, claimed: number[] = []): CoordinatorAction[] {
  c.handleOutputReady(20);
  const before = actions(c);
  assert.equal(only(before, "open_part").length, 1);
  c.handlePartReady(30, { claimed, ring, output: "f" });
  return [...before, ...actions(c)];
}

Deno.test("coordinator: the majority's version is fetched; the other server is left out and said", () => {
  const c = coordinator(3);
  const all = discover(c, [1, 2, 1]);
  const chosen = only(all, "check_output");
  assert.equal(chosen.length, 1);
  assert.deepEqual(chosen[0].meta.digest, meta(1).digest);
  assert.deepEqual(only(all, "server").map((s) => [s.server, s.status]), [
    [0, "used"],
    [1, "used"],
    [2, "used"],
    [1, "left_out"],
  ]);
  assert.deepEqual(only(all, "notice").map((n) => n.line), [
    "udpget: s1: left out, it has another version (16384 bytes, sha256 0202020202020202…)",
  ]);
});

Deno.test("coordinator: one against one is a tie: exit 5, each version said, nothing fetched", () => {
  const c = coordinator(2);
  const all = discover(c, [1, 2]);
  assert.deepEqual(only(all, "notice").map((n) => n.line), [
    "udpget: s0: 16384 bytes, sha256 0101010101010101…",
    "udpget: s1: 16384 bytes, sha256 0202020202020202…",
  ]);
  const [failed] = only(all, "failed");
  assert.equal(failed.error.exitCode, ExitCode.Verification);
  assert.match(failed.error.message, /servers disagree on "f" and no version has a majority/);
  assert.equal(c.meta, undefined);
  assert.equal(c.ended, true);
});

Deno.test("coordinator: --checksum names the version to trust, even held by a minority", () => {
  const c = coordinator(3, { checksum: meta(2).digest });
  const all = discover(c, [1, 2, 1]);
  const [chosen] = only(all, "check_output");
  assert.deepEqual(chosen.meta.digest, meta(2).digest, "chosen once its holder answered");
  // (the third answered after that: it is taken in when the transfer starts, and left out too)
  assert.deepEqual(
    only(all, "server").filter((s) => s.status === "left_out").map((s) => s.server),
    [0],
  );
  const later = openPart(c);
  assert.deepEqual(
    only(later, "server").filter((s) => s.status === "left_out").map((s) => s.server),
    [2],
  );
  // and nobody offering it is exit 5, naming the digest
  const none = coordinator(2, { checksum: meta(3).digest });
  const [failed] = only(discover(none, [1, 1]), "failed");
  assert.equal(failed.error.exitCode, ExitCode.Verification);
  assert.match(failed.error.message, /^no server offers "f" with sha256 0303/);
});

Deno.test("coordinator: a hash list that does not hash to the agreed root is not used: the whole file is checked", () => {
  const c = coordinator(1);
  discover(c, [1]);
  const first = openPart(c);
  assert.deepEqual(only(first, "phase").map((p) => p.phase), ["prepare", "transfer"]);
  const sent = sends(c, 30);
  assert.ok(sent.some((t) => t.packet.type === "hashes_request"));
  assert.ok(sent.some((t) => t.packet.type === "chunk_request"), "the transfer does not wait");
  answerHashes(c, 40, sent, hashesOf(9)); // a server slipping in hashes of other bytes
  const all = actions(c);
  assert.deepEqual(only(all, "notice").map((n) => n.line), [
    "udpget: piece hash list does not match the agreed root; using the file digest",
  ]);
  assert.deepEqual(only(all, "open_verifier"), [
    { kind: "open_verifier", hashes: undefined, whole: true },
  ]);
  assert.equal(c.verification, "full");
});

Deno.test("coordinator: the right hash list is used; a stream without one cannot be verified (exit 5)", () => {
  const good = coordinator(1);
  discover(good, [1]);
  openPart(good);
  answerHashes(good, 40, sends(good, 30), hashesOf(1));
  const [opened] = only(actions(good), "open_verifier");
  assert.deepEqual(opened.hashes, hashesOf(1));
  assert.equal(opened.whole, false);

  const stream = coordinator(1);
  discover(stream, [1]);
  openPart(stream, 4);
  answerHashes(stream, 40, sends(stream, 30), hashesOf(9));
  const [failed] = only(actions(stream), "failed");
  assert.equal(failed.error.exitCode, ExitCode.Verification);
  assert.match(failed.error.message, /a stream cannot be verified piece by piece; use -o FILE$/);
});

Deno.test("coordinator: a resume fetches the hash list first, re-checks the claims, then transfers", () => {
  const c = coordinator(1);
  discover(c, [1]);
  const first = openPart(c, 0, [0, 2]);
  assert.deepEqual(only(first, "phase").map((p) => p.phase), ["prepare", "hashes"]);
  assert.deepEqual(c.uncheckedClaims(), [0, 2], "a run ending now keeps claiming both");
  const sent = sends(c, 30);
  assert.ok(sent.every((t) => t.packet.type === "hashes_request"), "nothing else before");
  answerHashes(c, 40, sent, hashesOf(1));
  const all = actions(c);
  assert.deepEqual(only(all, "verify").map((v) => v.piece), [0, 2]);
  c.handleVerified(0, true);
  c.handleVerified(2, false);
  const after = actions(c);
  assert.deepEqual(only(after, "notice").map((n) => n.line), [
    "udpget: resuming f: 1 of 4 pieces already verified, 1 failed its re-check and will be fetched again",
  ]);
  assert.deepEqual(only(after, "phase").map((p) => p.phase), ["transfer"]);
  assert.equal(c.resumed, PIECE);
  assert.deepEqual(c.uncheckedClaims(), []);
  assert.ok(sends(c, 50).some((t) => t.packet.type === "chunk_request"));
});

Deno.test("coordinator: a local fault ends the fetch with its error, no server dropped or blamed", () => {
  const c = coordinator(2);
  discover(c, [1, 1]);
  openPart(c);
  sends(c, 30);
  const fault = new UdpgetError(ExitCode.LocalIo, "cannot write f.part: No space left on device");
  c.handleLocalFault(fault);
  const all = actions(c);
  assert.deepEqual(only(all, "failed"), [{ kind: "failed", error: fault }]);
  assert.deepEqual(only(all, "server").filter((s) => s.status === "dropped"), []);
  assert.equal(c.pollTransmit(40), undefined, "nothing more is asked for");
});

Deno.test("coordinator: after nobody has the name, another can be asked for", () => {
  const c = coordinator(1);
  c.start(0, "nope");
  for (const t of sends(c, 0)) {
    const p = t.packet;
    if (p.type !== "meta_request" || p.name === TOKEN_PROBE_NAME) continue;
    c.handleDatagram(5, t.server, {
      type: "error",
      requestId: p.requestId,
      code: 1,
      message: "no such file",
    });
  }
  const [failed] = only(actions(c), "failed");
  assert.equal(failed.error.exitCode, ExitCode.NotFound);
  const all = discover(c, [1]);
  assert.equal(only(all, "check_output").length, 1);
  assert.equal(fileIdOf(c.meta!.digest), fileIdOf(meta(1).digest));
});

Deno.test("coordinator: a swarm fetcher's requests carry the flag from the first; GIVEN_OUT holds the piece off the servers 1 s and the named ones go first", () => {
  // (a rate limit: the first requests cover one piece, not the whole small file)
  const c = coordinator(1, { limitBytesPerSec: 20_000 });
  c.askServersAsSwarm(true); // (as client.ts does for a swarm fetcher, before anything is sent)
  discover(c, [1]);
  openPart(c);
  const first = sends(c, 30).map((t) => t.packet).filter((p) => p.type === "chunk_request");
  assert.ok(first.length > 0 && first.every((p) => p.swarm === true), "flagged from the first");
  const refused = first[0];
  const piece = Math.floor(refused.offset / PIECE);
  const requested = new Set(first.map((p) => Math.floor(p.offset / PIECE)));
  const named = [0, 1, 2, 3].findLast((p) => !requested.has(p))!;
  assert.ok(named !== undefined, `a piece not asked for yet (asked: ${[...requested]})`);
  c.handleDatagram(31, 0, {
    type: "error",
    requestId: refused.requestId,
    code: ErrorCode.GivenOut,
    message: `given out; unsent ${named}`,
  });
  assert.deepEqual(only(actions(c), "server").filter((s) => s.status === "dropped"), []);
  const asked = (from: number, to: number) => {
    const pieces: number[] = [];
    for (let t = from; t < to; t += 5) {
      for (const s of sends(c, t)) {
        if (s.packet.type === "chunk_request") pieces.push(Math.floor(s.packet.offset / PIECE));
      }
    }
    return pieces;
  };
  const during = asked(32, 1030);
  assert.ok(!during.includes(piece), `held off for 1 s: ${during.join(",")}`);
  assert.equal(during[0], named, "the piece named unsent goes first");
});

Deno.test("coordinator: a swarm fetcher's hash list from a peer while the server is busy; a peer's bad list excludes it and the server's is used", () => {
  for (const liar of [false, true]) {
    const c = coordinator(1);
    c.askServersAsSwarm(true);
    discover(c, [1]);
    openPart(c);
    const [ask] = sends(c, 30).filter((t) => t.packet.type === "hashes_request");
    assert.ok(ask.packet.type === "hashes_request" && ask.packet.swarm, "flagged to the server");
    c.handleDatagram(31, 0, {
      type: "error",
      requestId: ask.packet.requestId,
      code: ErrorCode.Busy,
      message: formatBusyRetry(300),
    });
    c.peerAnswers(7, new Uint8Array(16).fill(7)); // (a peer met: it answered a have poll)
    const [toPeer] = sends(c, 32).filter((t) => t.packet.type === "hashes_request");
    assert.equal(toPeer.peer, 7, "the peer is asked while the server is busy");
    assert.ok(toPeer.packet.type === "hashes_request");
    const list = hashesOf(liar ? 9 : 1);
    c.handlePeerDatagram(33, 7, {
      type: "hashes_reply",
      requestId: toPeer.packet.requestId,
      fileId: toPeer.packet.fileId,
      firstPiece: 0,
      hashes: list,
    });
    const after = actions(c);
    if (!liar) {
      const [opened] = only(after, "open_verifier");
      assert.deepEqual(opened.hashes, hashesOf(1), "the peer's list, checked against the root");
      continue;
    }
    assert.deepEqual(only(after, "open_verifier"), [], "a list that misses the root is not used");
    assert.deepEqual(only(after, "peer_dropped"), [{
      kind: "peer_dropped",
      peer: 7,
      reason: "excluded: sent piece hashes that do not match the agreed root",
    }]);
    const again = sends(c, 331).filter((t) => t.packet.type === "hashes_request");
    assert.deepEqual(again.map((t) => [t.server, t.peer]), [[0, undefined]], "the server again");
    answerHashes(c, 332, again, hashesOf(1));
    const [opened] = only(actions(c), "open_verifier");
    assert.deepEqual(opened.hashes, hashesOf(1));
  }
});
