/**
 * What a sharing fetcher answers to other peers (PROTOCOL.md §10.2): the serving half of a swarm
 * node, as a pure decision in the shape of the serve core. Events in: a datagram, its sender, the
 * clocks; actions out: datagrams to send back and runs of blocks to read from the `.part` and send.
 *
 * It exposes one file and nothing else: content is chosen by `file_id` (a peer is reached through
 * the swarm, so names mean nothing here), and only pieces in the {@link HaveLog} — verified
 * against the trusted hashes — are served; anything else is NOT_HELD. The checks are `serve`'s:
 * the same request gate (tokens before anything larger than 3× the request, the HMAC trailer of a
 * private swarm), the duplicate filter, range limits, the transfer caps and the `--share-rate`
 * bucket, all inside the serve core. A have poll that may wait, with nothing new to tell, is held
 * until this node verifies a piece (`HeldPolls`); the node calls {@link PeerShare.releaseHeld}.
 *
 * @module
 */

import {
  type ChunkRequest,
  encode,
  ErrorCode,
  type HaveRequest,
  metaReplyOf,
  type RequestPacket,
} from "../wire/packet.ts";
import type { RequestGate } from "../serving/request_gate.ts";
import type {
  RunAction,
  ServeAction,
  ServeCore,
  ServeCoreOptions,
  ServedPieces,
} from "../serving/serve_core.ts";
import { TransferLog } from "../serving/transfer_log.ts";
import { SWARM_QUEUE_BOUND_MS } from "../wire/busy_retry.ts";
import { hashesReplyCount } from "../serving/serve_policy.ts";
import type { HaveLog } from "./have_log.ts";
import { HeldPolls } from "./held_polls.ts";

/**
 * Idle credit of the `--share-rate` bucket (ms), as a server's. A peer idle for a moment may then
 * send that much at once; on an uplink of about the cap's capacity the burst stays queued in
 * front of everything it sends after, draining only as fast as the link's headroom over the cap.
 * At 50 ms (before: a send the loop delays would be upload lost) every relay hop through such a
 * peer carried a standing queue of tens of ms, and requests timed out in it (the real-code
 * simulator, 200 fetchers of 8 MiB: 6.7 F of requests asked again and 9.4 F of peer upload
 * wasted; at 10 ms, 0.2 F and 4.8 F).
 */
export const SHARE_CREDIT_MS = 10;

/**
 * A piece fewer than this many peers hold, as this node knows (its peers' have-maps, and the
 * copies it has sent itself), is rare here: fresh from a server, or one hop from it. Its news is
 * told at once (`SwarmNode.pieceVerified`) and requests for it go first (`ShareOutbox`).
 */
export const RARE_HOLDERS = 2;

/**
 * The serve core options of a sharing peer capped at `shareRate` bytes/s (none: no cap);
 * `random` spreads BUSY retry times (seeded in the simulator).
 */
export function shareCoreOptions(
  shareRate: number | undefined,
  random: () => number = Math.random,
): ServeCoreOptions {
  return {
    rate: shareRate,
    random,
    creditMs: SHARE_CREDIT_MS,
    // (unbounded, thirty askers each keeping a window here queued 0.4–0.6 s, median and p90 in
    // the simulator at N = 32: past their deadlines, so they asked again elsewhere and both
    // copies came — 40 % of all peer upload was such duplicates)
    maxBacklogMs: SWARM_QUEUE_BOUND_MS,
    transfers: new TransferLog(() => {}),
  };
}

/** The trusted metadata of the shared file. */
export interface SharedMetadata {
  fileId: bigint;
  size: number;
  pieceSize: number;
  mtimeMs: number;
  digest: Uint8Array;
  piecesRoot: Uint8Array;
  /**
   * 32 bytes a piece, verified against `piecesRoot`; empty until the fetcher trusts its list
   * (`trustHashes`): a node joins its swarm before, to get the list from peers (§10.7).
   */
  pieceHashes: Uint8Array;
}

/** A datagram to send back to the asker. */
export interface ReplyAction {
  kind: "reply";
  bytes: Uint8Array;
}

/** The answer to a held have poll (`PeerShare.releaseHeld`): a datagram for `to`. */
export interface HeldReply {
  to: Deno.NetAddr;
  bytes: Uint8Array;
}

/** What the shell does for one datagram: replies, and runs of blocks (from the serve core). */
export type ShareAction = RunAction | ReplyAction;

/** Peers to tell an asker about (peer exchange): compact entries of the asker's family. */
export type PeerLister = (asker: Deno.NetAddr) => { family: 4 | 6; entries: Uint8Array };

/** Counters of the serving half. */
export interface ShareStats {
  datagrams: number;
  /** Dropped: not udpget, a reply type, or an authentication failure too small to answer. */
  dropped: number;
  /** Answered with an ERROR at once (malformed, unsupported, authentication). */
  malformed: number;
  retries: number;
  duplicates: number;
  requests: number;
  /** CHUNK_REQUESTs for pieces not verified yet. */
  notHeld: number;
}

/** The serving half of a swarm node (see the module comment). */
export class PeerShare {
  readonly stats: ShareStats = {
    datagrams: 0,
    dropped: 0,
    malformed: 0,
    retries: 0,
    duplicates: 0,
    requests: 0,
    notHeld: 0,
  };
  #meta: SharedMetadata;
  #have: HaveLog;
  #gate: RequestGate;
  #core: ServeCore;
  #peers: PeerLister;
  #fetching: () => number[];
  #pieces: ServedPieces;
  #scratch: ServeAction[] = [];
  /** Have polls that wait for this node's next verified piece (PROTOCOL.md §10.3). */
  #held = new HeldPolls<Deno.NetAddr>();
  /**
   * Called with the sender of every admitted request about the shared file: a peer that asks
   * is in the swarm, at that address (its requests leave from the port it shares on).
   */
  onPeerRequest: ((from: Deno.NetAddr) => void) | undefined;
  /** How many of this node's peers hold `piece`, as far as it knows (none set: 0). */
  holders: ((piece: number) => number) | undefined;
  /** Copies of each piece this node has admitted a request for (they count as holders). */
  #copies: Uint16Array;

  constructor(
    meta: SharedMetadata,
    have: HaveLog,
    gate: RequestGate,
    core: ServeCore,
    peers: PeerLister,
    fetching: () => number[] = () => [],
  ) {
    this.#fetching = fetching;
    this.#meta = meta;
    this.#copies = new Uint16Array(have.pieces);
    this.#have = have;
    this.#gate = gate;
    this.#core = core;
    this.#peers = peers;
    this.#pieces = {
      fileId: meta.fileId,
      size: meta.size,
      changed: false,
      holds: (offset, length) => this.#holds(offset, length),
    };
  }

  /**
   * Datagram `data` from `from`: pushes to `out` what to send back. `now` is the monotonic clock
   * of the serve core (pacing), `epochMs` the wall clock of tokens and the HMAC trailer.
   */
  onDatagram(
    now: number,
    epochMs: number,
    data: Uint8Array,
    from: Deno.NetAddr,
    out: ShareAction[],
  ): void {
    this.stats.datagrams++;
    const d = this.#gate.admit(data, from.hostname, epochMs);
    if (d.kind === "drop") return void this.stats.dropped++;
    if (d.kind === "answer") {
      if (d.why === "retry") this.stats.retries++;
      else this.stats.malformed++;
      return void out.push({ kind: "reply", bytes: d.bytes });
    }
    const p = d.request;
    if (this.#core.isDuplicate(now, p, from.hostname, from.port)) {
      return void this.stats.duplicates++;
    }
    this.stats.requests++;
    const before = out.length;
    this.#serve(now, p, from, out);
    // replies to a proven address count toward `--share-rate` as the runs do (the gate's own
    // answers above do not: anyone may ask for those)
    for (let i = before; i < out.length; i++) {
      const a = out[i];
      if (a.kind === "reply") this.#core.charge(now, a.bytes.length);
    }
  }

  #serve(now: number, p: RequestPacket, from: Deno.NetAddr, out: ShareAction[]): void {
    const m = this.#meta;
    if (p.type === "meta_request") return this.#metaReply(p.requestId, out);
    if (p.fileId !== m.fileId) return this.#refuse(p.requestId, ErrorCode.Stale, "not shared", out);
    this.onPeerRequest?.(from);
    switch (p.type) {
      case "chunk_request":
        return this.#chunk(now, p, from, out);
      case "hashes_request":
        return this.#hashesReply(p.requestId, p.firstPiece, p.count, out);
      case "have_request":
        if (p.wait && !this.#have.complete) {
          const key = `${from.hostname}|${from.port}`;
          if (this.#held.hold(now, key, p, from, this.#have.held)) return;
        }
        return void out.push({ kind: "reply", bytes: this.#haveReply(p) });
      case "peers_request": {
        const { family, entries } = this.#peers(from);
        const reply = { type: "peers_reply", requestId: p.requestId, fileId: m.fileId } as const;
        return void out.push({ kind: "reply", bytes: encode({ ...reply, family, entries }) });
      }
    }
  }

  #chunk(now: number, p: ChunkRequest, from: Deno.NetAddr, out: ShareAction[]): void {
    const actions = this.#scratch;
    actions.length = 0;
    // (a request within one piece, as peers ask: its rank is that piece's known holders)
    const piece = Math.floor(p.offset / this.#meta.pieceSize);
    const inPiece = piece === Math.floor((p.offset + p.length - 1) / this.#meta.pieceSize);
    const holders = inPiece && piece < this.#copies.length
      ? (this.holders?.(piece) ?? 0) + this.#copies[piece]
      : Infinity;
    const rare = holders < RARE_HOLDERS;
    this.#core.onChunk(now, from, p, this.#pieces, actions);
    let admitted = false;
    for (const a of actions) {
      if (a.kind === "run") {
        out.push(rare ? { ...a, rank: holders } : a);
        admitted = true;
      } else {
        if (a.code === ErrorCode.NotHeld) this.stats.notHeld++;
        this.#refuse(a.requestId, a.code, a.message, out);
      }
    }
    if (admitted && inPiece && this.#copies[piece] < 0xffff) this.#copies[piece]++;
  }

  #haveReply(p: HaveRequest): Uint8Array {
    return encode(this.#have.answer(p, this.#meta.fileId, this.#fetching()));
  }

  /**
   * The held polls due at `now` (news held long enough, or of a `rare` piece; or their hold is
   * over), answered: pushes to `out` what to send where. The node calls it when it verified a
   * piece and on its timers.
   */
  releaseHeld(now: number, out: HeldReply[], rare = false): void {
    for (const poll of this.#held.due(now, this.#have.held, rare)) {
      const bytes = this.#haveReply(poll.request);
      this.#core.charge(now, bytes.length); // (a reply to a proven address, as in onDatagram)
      out.push({ to: poll.to, bytes });
    }
  }

  /** Whether `releaseHeld` would answer any held poll at `now` (nothing is allocated to ask). */
  heldDue(now: number): boolean {
    return this.#held.anyDue(now, this.#have.held);
  }

  /** When the first held poll is due at the latest (ms), or undefined when none is held. */
  heldUntil(): number | undefined {
    return this.#held.nextDeadline();
  }

  #metaReply(requestId: number, out: ShareAction[]): void {
    out.push({ kind: "reply", bytes: encode(metaReplyOf(requestId, this.#meta)) });
  }

  /** The piece hashes are trusted now: they are shared from here on. */
  trustHashes(hashes: Uint8Array): void {
    this.#meta = { ...this.#meta, pieceHashes: hashes };
  }

  #hashesReply(requestId: number, first: number, count: number, out: ShareAction[]): void {
    const m = this.#meta;
    if (m.pieceHashes.length === 0 && m.size > 0) {
      return this.#refuse(requestId, ErrorCode.NotHeld, "no piece hashes yet", out);
    }
    const n = hashesReplyCount(first, count, m.pieceHashes.length / 32);
    if (n === 0) return this.#refuse(requestId, ErrorCode.OutOfRange, "no such piece", out);
    const hashes = m.pieceHashes.subarray(first * 32, (first + n) * 32);
    const reply = { type: "hashes_reply", requestId, fileId: m.fileId, firstPiece: first } as const;
    out.push({ kind: "reply", bytes: encode({ ...reply, hashes }) });
  }

  #refuse(requestId: number, code: number, message: string, out: ShareAction[]): void {
    out.push({ kind: "reply", bytes: encode({ type: "error", requestId, code, message }) });
  }

  /** Whether every piece `[offset, offset + length)` touches is verified. */
  #holds(offset: number, length: number): boolean {
    const size = this.#meta.pieceSize;
    const last = Math.floor((offset + length - 1) / size);
    for (let piece = Math.floor(offset / size); piece <= last; piece++) {
      if (!this.#have.has(piece)) return false;
    }
    return true;
  }
}
