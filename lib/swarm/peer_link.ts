/**
 * The control exchanges with one swarm peer beside the data (PROTOCOL.md §10.3–10.4): polling its
 * have-map (the origin design's "client info request/response") and asking which peers it knows,
 * on timers, with its address-validation token and a liveness verdict. Data requests to the peer
 * are the fetch session's; this machine only keeps the session's view of the peer current.
 *
 * Polling: while the peer is incomplete, a HAVE_REQUEST that may wait (flags bit 2): the peer
 * answers with the pieces verified since the last answer (a few bytes) when it has news (at once
 * for a rare piece, else in batches: `HeldPolls`), or after `HAVE_HOLD_MS` with none; the next poll
 * leaves as soon as the answer is in. A peer that answers at once with nothing (it does not hold
 * polls, or has no room to) is polled backing off to `maxHavePollMs`; one that does not know the
 * flag is polled every `havePollMs` at most while it has news. A PEERS_REQUEST soon after meeting,
 * then every `pexEveryMs`. A peer that answers nothing for `quietAfterMs` after being asked is
 * reported quiet (and back when it is heard again): its pieces no longer keep the servers from
 * being asked for them, while it may still be only slow. One that answers nothing for
 * `deadAfterMs` is reported dead; the caller removes it from the transfer and may meet it again
 * later under a new source id. A link with nothing to ask (a complete peer, between peer exchanges) is not judged
 * by its silence.
 *
 * Pure: the clock comes in as arguments, request ids from the injected generator.
 *
 * @module
 */

import { ErrorCode, HaveForm, NO_TOKEN, type Packet } from "../wire/packet.ts";
import { HaveMap } from "./have_map.ts";
import { HAVE_HOLD_MS } from "./held_polls.ts";

/** Timers of a peer link. */
export interface PeerLinkTiming {
  /** Between HAVE polls of an incomplete peer that has news (ms). */
  havePollMs: number;
  /** Between HAVE polls of a peer whose last answers had nothing new, at most (ms). */
  maxHavePollMs: number;
  /** Between PEERS polls (ms). */
  pexEveryMs: number;
  /** First PEERS poll after meeting (ms). */
  firstPexMs: number;
  /** An unanswered request is given up after this long (ms). */
  requestTimeoutMs: number;
  /**
   * Nothing heard for this long since it was asked something: the peer is quiet (ms), until it
   * is heard again; longer for a peer that has answered slowly before (twice its slowest answer:
   * on a slow uplink answers wait behind data).
   */
  quietAfterMs: number;
  /**
   * Nothing heard for this long since it was asked something: the peer is dead (ms); longer for
   * a peer that has answered slowly before (twice its slowest answer).
   */
  deadAfterMs: number;
}

/**
 * Default timers. A piece is relayed only once its next holder hears of it, so the have poll is
 * part of every hop's delay: a held poll tells at once and paces itself (`HeldPolls`); a peer that
 * does not know held polls is polled every 50 ms while it has news, no more often (the real-code
 * simulator, 100 fetchers, 64 KiB pieces at 8 MiB/s, before polls were held: 1.45 × the bound
 * against 1.50 at 100 ms; 200 fetchers polling every 5 ms: a faster ramp, but the polls took a
 * tenth of the peers' upload). A peer that does not hold polls is polled backing off to 200 ms
 * while it has nothing new, so that a slow swarm does not spend its upload on empty answers — a few
 * dozen bytes each way per poll, to each of up to seventy peers. Peer exchange every 5 s meshes a
 * swarm in seconds whatever the tracker's interval. Dead after 1.5 s of silence while asked (seven
 * polls or more): a peer that left keeps its pieces in everyone's have-maps until then (the
 * real-code simulator, two of eight leaving: the last done at 2.3 × the bound with 3 s, 1.5 × with
 * 1.5 s). Quiet after 0.5 s (a held poll is answered within 0.2 s and a round trip): from then it
 * is asked nothing, and its pieces and claims no longer keep the servers from being asked for
 * them, so a piece only a leaver had is fetched again a second sooner (the real-code simulator,
 * two of eight leaving, seeds 1–8: the last done at 1.04–1.34 × the bound, against 1.28–2.02; 20
 * arriving 75 ms apart, 4 leaving: the slowest at 1.26–1.31 × F/u_s against 1.31–1.50). Twice the
 * slowest answer, not less: at 32 KiB/s, answers wait behind data, and a tighter limit paused
 * peers only slow (16 fetchers: 1.50–1.55 × against 1.47–1.52).
 */
export const DEFAULT_PEER_TIMING: PeerLinkTiming = {
  havePollMs: 50,
  maxHavePollMs: 200,
  pexEveryMs: 5000,
  firstPexMs: 300,
  requestTimeoutMs: 1000,
  quietAfterMs: 500,
  deadAfterMs: 1500,
};

/** What a link tells its owner. */
export type PeerLinkEvent =
  /** The peer holds `piece` (first time seen). */
  | { kind: "has"; piece: number }
  /** The peer says it holds every piece. */
  | { kind: "complete" }
  /** The pieces the peer fetches from a server now (its latest word: replaces the last). */
  | { kind: "fetching"; pieces: number[] }
  /** The peer listed these peers (compact entries of `family`). */
  | { kind: "peers"; family: number; entries: Uint8Array }
  /** The peer holds another file (STALE), or keeps answering nonsense: stop using it. */
  | { kind: "unusable"; reason: string }
  /** Nothing heard for a while: maybe gone (its pieces should not hold the servers back). */
  | { kind: "quiet" }
  /** Heard again after `quiet`. */
  | { kind: "back" }
  /** Nothing heard for too long. */
  | { kind: "dead" }
  /** The peer's have-log is shorter than what was read of it: it started over. */
  | { kind: "restarted" };

interface Pending {
  id: number;
  what: "have" | "peers";
  deadline: number;
}

/** One peer's control exchanges (see the module comment). */
export class PeerLink {
  /** What the peer holds, as far as it said. */
  readonly have: HaveMap;
  /** Address-validation token the peer handed out (all zero before its first RETRY). */
  token: Uint8Array = NO_TOKEN;
  #fileId: bigint;
  #t: PeerLinkTiming;
  #nextId: () => number;
  #pending: Pending[] = [];
  #nextHave: number;
  /** Between have polls now: `havePollMs` after news, growing while answers have none. */
  #havePoll: number;
  #nextPex: number;
  #lastHeard: number;
  /** When the first request since the peer was last heard left (undefined: none since). */
  #askedSince: number | undefined;
  /** The longest the peer has taken to answer anything after being asked (ms). */
  #slowestAnswer = 0;
  #events: PeerLinkEvent[] = [];
  /** When the latest have poll left. */
  #haveSentAt = -Infinity;
  /** Polls carry "may wait" (flags bit 2) until the peer answers UNSUPPORTED to one. */
  #mayWait = true;
  #badAnswers = 0;
  #over = false;
  /** Reported quiet, not heard since. */
  #quiet = false;
  /** Whether the peer ever answered (only such peers are passed on in peer exchange). */
  answered = false;
  /** Set when this node no longer needs pieces: have polls stop, peer exchange goes on. */
  seeding = false;

  constructor(
    pieces: number,
    fileId: bigint,
    now: number,
    nextId: () => number,
    timing: PeerLinkTiming = DEFAULT_PEER_TIMING,
  ) {
    this.have = new HaveMap(pieces);
    this.#fileId = fileId;
    this.#t = timing;
    this.#nextId = nextId;
    this.#nextHave = now;
    this.#havePoll = timing.havePollMs;
    this.#nextPex = now + timing.firstPexMs;
    this.#lastHeard = now;
  }

  /** When the peer was last heard from (any valid answer or data). */
  get lastHeard(): number {
    return this.#lastHeard;
  }

  /** Whether the link is over (dead or unusable). */
  get over(): boolean {
    return this.#over;
  }

  /** Whether request id `id` is one this link sent and awaits (a request of ours come back). */
  issued(id: number): boolean {
    return this.#pending.some((q) => q.id === id);
  }

  /** Any datagram from the peer shows it is there (data counts too). */
  heard(now: number): void {
    const asked = this.#askedSince;
    if (asked !== undefined) this.#slowestAnswer = Math.max(this.#slowestAnswer, now - asked);
    this.#lastHeard = now;
    this.#askedSince = undefined;
    if (!this.#quiet) return;
    this.#quiet = false;
    this.#events.push({ kind: "back" });
  }

  /** Silence after being asked that makes the peer quiet (ms); see `quietAfterMs`. */
  #quietLimit(): number {
    return Math.max(this.#t.quietAfterMs, 2 * this.#slowestAnswer);
  }

  /**
   * Silence after being asked that makes the peer dead (ms): `deadAfterMs`, or twice the longest
   * it ever took to answer. A peer behind a deep queue (an uncapped upload on a slow link keeps
   * seconds of data in the kernel's and the modem's buffers, and its answers wait behind them)
   * has shown it answers slowly, not that it left.
   */
  #deadLimit(): number {
    return Math.max(this.#t.deadAfterMs, 2 * this.#slowestAnswer);
  }

  /**
   * A reply from the peer; false when it answers none of this link's requests (then it is the
   * fetch session's, or stray).
   */
  handleReply(now: number, p: Packet): boolean {
    const i = this.#pending.findIndex((q) => q.id === p.requestId);
    if (i < 0) return false;
    const q = this.#pending[i];
    this.#pending.splice(i, 1);
    this.heard(now);
    if (p.type === "have_reply" || p.type === "peers_reply") this.answered = true;
    if (p.type === "retry") {
      this.token = p.token.slice();
      this.#due(q.what, now); // ask again at once, with the token
    } else if (p.type === "error") this.#onError(p.code, p.message, q.what, now);
    else if (p.type === "have_reply" && q.what === "have") this.#onHave(p, now);
    else if (p.type === "peers_reply" && q.what === "peers") this.#onPeers(p, now);
    else this.#bad(now, `a ${p.type} for a ${q.what} request`);
    return true;
  }

  /** Timers: unanswered requests are given up; a silent peer is declared dead. */
  handleTimeout(now: number): void {
    if (this.#over) return;
    if (this.#pending.some((q) => q.deadline <= now)) {
      this.#pending = this.#pending.filter((q) => {
        if (q.deadline > now) return true;
        this.#due(q.what, now); // try again now
        return false;
      });
    }
    const asked = this.#askedSince;
    if (asked === undefined) return;
    if (now - asked >= this.#deadLimit()) return this.#end({ kind: "dead" });
    if (this.#quiet || now - asked < this.#quietLimit()) return;
    this.#quiet = true;
    this.#events.push({ kind: "quiet" });
  }

  /** The next control request to send to the peer, if one is due. */
  pollTransmit(now: number): Packet | undefined {
    if (this.#over) return undefined;
    if (!this.seeding && !this.have.complete && now >= this.#nextHave && !this.#waiting("have")) {
      const id = this.#send("have", now);
      const q = this.have.query();
      const wait = this.#mayWait ? { wait: true } : {};
      const body = { token: this.token, fileId: this.#fileId, name: "swarm", ...q, ...wait };
      return { type: "have_request", requestId: id, ...body };
    }
    if (now >= this.#nextPex && !this.#waiting("peers")) {
      const id = this.#send("peers", now);
      return {
        type: "peers_request",
        requestId: id,
        token: this.token,
        fileId: this.#fileId,
        name: "swarm",
      };
    }
    return undefined;
  }

  /** When the link next has something to do (ms), or undefined when it is over. */
  pollTimeout(): number | undefined {
    if (this.#over) return undefined;
    const asked = this.#askedSince;
    let t = asked === undefined
      ? Infinity
      : asked + (this.#quiet ? this.#deadLimit() : Math.min(this.#quietLimit(), this.#deadLimit()));
    for (const q of this.#pending) t = Math.min(t, q.deadline);
    if (!this.seeding && !this.have.complete && !this.#waiting("have")) {
      t = Math.min(t, this.#nextHave);
    }
    if (!this.#waiting("peers")) t = Math.min(t, this.#nextPex);
    return t;
  }

  /** Whether a request of kind `what` awaits its answer. */
  #waiting(what: Pending["what"]): boolean {
    for (const q of this.#pending) if (q.what === what) return true;
    return false;
  }

  /** The next event for the owner. */
  poll(): PeerLinkEvent | undefined {
    return this.#events.shift();
  }

  #send(what: Pending["what"], now: number): number {
    const id = this.#nextId() >>> 0;
    this.#askedSince ??= now;
    // (a have poll may be held at the peer until it has news: its answer may take that longer)
    const hold = what === "have" ? HAVE_HOLD_MS : 0;
    this.#pending.push({ id, what, deadline: now + hold + this.#t.requestTimeoutMs });
    if (what === "have") {
      this.#nextHave = now + this.#havePoll;
      this.#haveSentAt = now;
    } else this.#nextPex = now + this.#t.pexEveryMs;
    return id;
  }

  #due(what: Pending["what"], now: number): void {
    if (what === "have") this.#nextHave = now;
    else this.#nextPex = now;
  }

  #onHave(p: Extract<Packet, { type: "have_reply" }>, now: number): void {
    if (p.fileId !== this.#fileId) return this.#bad(now, "a have-map for another file");
    if (this.have.shrank(p)) return this.#end({ kind: "restarted" });
    const wasComplete = this.have.complete;
    let news = 0;
    const ok = this.have.apply(p, (piece) => {
      news++;
      this.#events.push({ kind: "has", piece });
    });
    if (!ok) return this.#bad(now, "a have-map that does not fit the file");
    const t = this.#t;
    // An empty answer after a hold is the peer saying "nothing yet" as late as it could: poll
    // again at once (it holds the next one too). An empty answer at once is a peer that does not
    // hold polls (or has no room to): back off as from any poll that found nothing.
    const held = now - this.#haveSentAt >= HAVE_HOLD_MS / 2;
    const quiet = news === 0 && !held;
    this.#havePoll = quiet ? Math.min(t.maxHavePollMs, this.#havePoll * 1.5) : t.havePollMs;
    // A peer that holds polls sets the pace itself (news of a rare piece at once, of others in
    // batches): ask again at once, so the next news is not late by our interval.
    this.#nextHave = this.#mayWait && !quiet
      ? now
      : Math.max(now, this.#haveSentAt + this.#havePoll);
    this.#badAnswers = 0;
    if (this.have.complete && !wasComplete) this.#events.push({ kind: "complete" });
    this.#events.push({ kind: "fetching", pieces: u32s(p.fetching, this.have.pieces) });
    // a reply that did not catch up (more log, or more bitfield pages) is followed at once
    const q = this.have.query();
    if (q.firstPiece > 0 || (p.form === HaveForm.List && q.since < p.held)) this.#nextHave = now;
  }

  #onPeers(p: Extract<Packet, { type: "peers_reply" }>, now: number): void {
    if (p.fileId !== this.#fileId) return this.#bad(now, "peers for another file");
    this.#events.push({ kind: "peers", family: p.family, entries: p.entries });
  }

  #onError(code: number, message: string, what: Pending["what"], now: number): void {
    // STALE: it shares another file (or none); anything else: it is busy or confused, retry later
    if (code === ErrorCode.Stale) {
      return this.#end({ kind: "unusable", reason: `STALE: ${message}` });
    }
    if (code === ErrorCode.Unsupported && what === "have" && this.#mayWait) {
      this.#mayWait = false; // (a peer older than held polls: poll it plainly, at once)
      return void (this.#nextHave = now);
    }
    if (what === "have") this.#nextHave = now + 5 * this.#t.maxHavePollMs;
    this.#bad(now, message);
  }

  #bad(_now: number, reason: string): void {
    if (++this.#badAnswers >= 8) this.#end({ kind: "unusable", reason });
  }

  #end(e: PeerLinkEvent): void {
    if (this.#over) return;
    this.#over = true;
    this.#pending = [];
    this.#events.push(e);
  }
}

/** Big-endian u32 piece indices below `pieces`. */
function u32s(bytes: Uint8Array, pieces: number): number[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: number[] = [];
  for (let at = 0; at + 4 <= bytes.length; at += 4) {
    const piece = view.getUint32(at);
    if (piece < pieces) out.push(piece);
  }
  return out;
}
