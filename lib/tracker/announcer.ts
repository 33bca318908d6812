/**
 * The client side of BEP 15: one swarm's announces to one tracker, as a pure state machine in
 * the shape of the fetch engine. Events in: a datagram from the tracker, a timer, the local
 * progress, "complete", "stop"; actions out: datagrams to send, peers learned, one-line notices.
 * The shell (a sharing fetcher, or `serve --tracker`) sends the datagrams from the socket it
 * shares on, so the tracker records the port peers must use.
 *
 * Timing. BEP 15 retries after 15·2^n s, made for public trackers across the Internet; a swarm
 * on a LAN or a fleet should meet in seconds, so the first retry comes after 1 s and doubles up
 * to 60 s, and it never gives up: a tracker that restarts is found again (a restarted tracker
 * forgets every connection id and ignores announces carrying an old one, as opentracker and
 * `udpget tracker` do, or answers them with an error: either way the client connects anew). A tracker that does not answer only costs the swarm's help: after a few attempts the
 * announcer says so once ({@link AnnouncerEvent} "unreachable"), and again once it answers.
 *
 * @module
 */

import {
  type AnnounceEvent,
  encodeAnnounceRequest,
  encodeConnectRequest,
  type Family,
  parseResponse,
  type TrackerResponse,
} from "./bep15_packet.ts";
import { sealTrackerRequest } from "./request_auth.ts";

/** First wait for an answer (ms); it doubles on every silence. */
export const FIRST_RETRY_MS = 1000;
/** Longest wait for an answer (ms). */
export const MAX_RETRY_MS = 60_000;
/** Silent attempts before the tracker is reported unreachable. */
export const UNREACHABLE_AFTER = 4;
/** A connection id is used at most this long after it was received (BEP 15: one minute). */
export const CONNECTION_ID_USE_MS = 60_000;
/** Shortest announce interval honoured (s): a tracker cannot make the client flood it. */
export const MIN_INTERVAL_S = 2;

/** What the announcer tells its shell. */
export type AnnouncerEvent =
  /** The tracker listed these peers (compact form: address then port). */
  | { kind: "peers"; peers: Uint8Array[]; leechers: number; seeders: number }
  /** The tracker answered an error (e.g. the info-hash is not on its whitelist). */
  | { kind: "refused"; message: string }
  /** No answer after several attempts (said once until it answers again). */
  | { kind: "unreachable" }
  /** It answers again after having been unreachable. */
  | { kind: "reachable" }
  /** The `stopped` announce was answered (or given up): the shell may close. */
  | { kind: "stopped" };

/** Fixed settings of one swarm's announces. */
export interface AnnouncerOptions {
  /** 20 bytes. */
  infoHash: Uint8Array;
  /** 20 bytes, random per process. */
  peerId: Uint8Array;
  /** Random per process (BEP 15 `key`: lets the tracker recognise the peer across addresses). */
  key: number;
  /** Port peers reach this node on (the shared socket's). */
  port: number;
  /** The socket's family: decides the size of compact peers in answers. */
  family: Family;
  /** Peers wanted per announce. */
  numWant: number;
  /** Shared key of a private tracker (`--secret-file`): announces carry the auth option. */
  secret?: Uint8Array;
  /** Random 32-bit numbers (transaction ids); injected so tests replay. */
  random(): number;
}

/** Progress reported in announces, bytes. */
export interface AnnounceProgress {
  downloaded: number;
  left: number;
  uploaded: number;
}

type Phase = "connect" | "announce";

/** One swarm's announce cycle (see the module comment). */
export class Announcer {
  #o: AnnouncerOptions;
  #progress: AnnounceProgress = { downloaded: 0, left: 0, uploaded: 0 };
  #connectionId: Uint8Array | undefined;
  #connectedAt = 0;
  /** Whether a `started` announce was answered. */
  #started = false;
  /** `completed`: not yet due, due (the download completed), or answered. */
  #completed: "no" | "due" | "sent" = "no";
  #intervalMs = 10_000;
  /** When the next announce is due (ms), while none is in flight. */
  #dueAt: number;
  /** The request in flight: its transaction id, phase and when to give up waiting. */
  #pending: { tid: number; phase: Phase; deadline: number; event?: AnnounceEvent } | undefined;
  #attempts = 0;
  #unreachable = false;
  #stopping = false;
  #done = false;
  #out: Uint8Array[] = [];
  #events: AnnouncerEvent[] = [];
  #lastRefusal: string | undefined;

  constructor(opts: AnnouncerOptions, now: number) {
    this.#o = opts;
    this.#dueAt = now;
  }

  /** Progress to report in the next announces. */
  setProgress(p: AnnounceProgress): void {
    this.#progress = { ...p };
  }

  /** The download completed: announce `completed` now (once). */
  complete(now: number): void {
    if (this.#stopping || this.#completed !== "no") return;
    this.#completed = "due";
    if (this.#pending === undefined) this.#dueAt = Math.min(this.#dueAt, now);
  }

  /** Leaving the swarm: announce `stopped` now; "stopped" follows when answered or given up. */
  stop(now: number): void {
    if (this.#stopping) return;
    this.#stopping = true;
    this.#pending = undefined;
    this.#attempts = 0;
    this.#dueAt = now;
    if (!this.#started && this.#connectionId === undefined) {
      // never got in: nothing to take back
      this.#finish();
    }
  }

  /** True once stopped for good. */
  get done(): boolean {
    return this.#done;
  }

  /**
   * A datagram from the tracker's address; returns whether it was an answer to this announcer
   * (a stray or malformed datagram changes nothing).
   */
  handleDatagram(now: number, bytes: Uint8Array): boolean {
    const pending = this.#pending;
    if (pending === undefined) return false;
    const r = parseResponse(bytes, this.#o.family);
    if (r === undefined || r.transactionId !== pending.tid) return false;
    this.#pending = undefined;
    this.#answered();
    this.#onResponse(now, pending.phase, pending.event, r);
    return true;
  }

  /** Timers: a silent tracker is asked again; an announce falls due. */
  handleTimeout(now: number): void {
    const p = this.#pending;
    if (p !== undefined && now >= p.deadline) {
      this.#pending = undefined;
      this.#attempts++;
      if (this.#stopping && this.#attempts >= 2) return this.#finish(); // don't hold up an exit
      if (this.#attempts === UNREACHABLE_AFTER && !this.#unreachable) {
        this.#unreachable = true;
        this.#events.push({ kind: "unreachable" });
      }
      // a silent tracker may have restarted and forgotten the id: connect again
      this.#connectionId = undefined;
      this.#dueAt = now;
    }
    if (this.#pending === undefined && !this.#done && now >= this.#dueAt) this.#send(now);
  }

  /** The next datagram to send to the tracker. */
  pollTransmit(): Uint8Array | undefined {
    return this.#out.shift();
  }

  /** The next event for the shell. */
  poll(): AnnouncerEvent | undefined {
    return this.#events.shift();
  }

  /** When {@link handleTimeout} wants to run next (ms); undefined when done. */
  pollTimeout(): number | undefined {
    if (this.#done) return undefined;
    return this.#pending?.deadline ?? this.#dueAt;
  }

  #send(now: number): void {
    const tid = this.#o.random() >>> 0;
    const wait = Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** this.#attempts);
    const fresh = this.#connectionId !== undefined &&
      now - this.#connectedAt < CONNECTION_ID_USE_MS;
    if (!fresh) {
      this.#out.push(encodeConnectRequest(tid));
      this.#pending = { tid, phase: "connect", deadline: now + wait };
      return;
    }
    const event = this.#nextEvent();
    this.#out.push(this.#announce(tid, event));
    this.#pending = { tid, phase: "announce", deadline: now + wait, event };
  }

  #nextEvent(): AnnounceEvent {
    if (this.#stopping) return "stopped";
    if (!this.#started) return "started";
    return this.#completed === "due" ? "completed" : "none";
  }

  #announce(tid: number, event: AnnounceEvent): Uint8Array {
    const o = this.#o;
    const bytes = encodeAnnounceRequest({
      connectionId: this.#connectionId!,
      transactionId: tid,
      infoHash: o.infoHash,
      peerId: o.peerId,
      downloaded: BigInt(Math.max(0, Math.floor(this.#progress.downloaded))),
      left: BigInt(Math.max(0, Math.floor(this.#progress.left))),
      uploaded: BigInt(Math.max(0, Math.floor(this.#progress.uploaded))),
      event,
      ip: 0,
      key: o.key >>> 0,
      numWant: this.#stopping ? 0 : o.numWant,
      port: o.port,
    });
    return o.secret ? sealTrackerRequest(bytes, o.secret) : bytes;
  }

  #onResponse(now: number, phase: Phase, event: AnnounceEvent | undefined, r: TrackerResponse) {
    if (r.action === "connect" && phase === "connect") {
      this.#connectionId = r.connectionId;
      this.#connectedAt = now;
      this.#send(now); // the announce follows at once
      return;
    }
    if (r.action === "announce" && phase === "announce") return this.#onAnnounced(now, event, r);
    if (r.action === "error") {
      // an expired id (the tracker restarted) reads as an error too: connect afresh next time
      this.#connectionId = undefined;
      if (r.message !== this.#lastRefusal) {
        this.#events.push({ kind: "refused", message: r.message });
      }
      this.#lastRefusal = r.message; // said once, not every interval
      if (this.#stopping) return this.#finish();
      this.#dueAt = now + this.#intervalMs;
      return;
    }
    // an answer of the wrong kind: treat as silence, ask again soon
    this.#dueAt = now + FIRST_RETRY_MS;
  }

  #onAnnounced(
    now: number,
    event: AnnounceEvent | undefined,
    r: Extract<TrackerResponse, { action: "announce" }>,
  ): void {
    if (this.#stopping) return this.#finish();
    this.#lastRefusal = undefined;
    if (event === "started") this.#started = true;
    if (event === "completed") this.#completed = "sent";
    this.#intervalMs = Math.max(MIN_INTERVAL_S, r.interval) * 1000;
    // a completion that came while this announce was in flight is told at once
    this.#dueAt = this.#completed === "due" ? now : now + this.#intervalMs;
    this.#events.push({ kind: "peers", peers: r.peers, leechers: r.leechers, seeders: r.seeders });
  }

  #answered(): void {
    this.#attempts = 0;
    if (!this.#unreachable) return;
    this.#unreachable = false;
    this.#events.push({ kind: "reachable" });
  }

  #finish(): void {
    this.#done = true;
    this.#pending = undefined;
    this.#events.push({ kind: "stopped" });
  }
}
