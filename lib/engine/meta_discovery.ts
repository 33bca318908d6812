/**
 * Metadata discovery: one META_REQUEST to every server at once, each retried on its own with
 * the shared retry policy, RETRY (address validation) followed with the new token, BUSY (the
 * server is still hashing) waited out up to a limit. Ends with one answer per server: its
 * metadata, its error, or silence. Pure: times come in as arguments.
 *
 * @module
 */

import { ErrorCode, NO_TOKEN, type Packet, TOKEN_PROBE_NAME } from "../wire/packet.ts";
import type { MetaAnswer } from "./consensus.ts";
import {
  attemptTimeout,
  type RequestMachine,
  type RequestTransmit,
  type RetryOptions,
} from "./retry_schedule.ts";

/** Retry policy of metadata requests: 4 attempts from 250 ms (the RTT is not known yet). */
export const META_RETRY: RetryOptions = { firstTimeoutMs: 250, maxTimeoutMs: 4000, attempts: 4 };
/** How long a BUSY server (hashing a big file) may keep us waiting, and how often to ask. */
export const META_BUSY_LIMIT_MS = 120_000;
export const META_BUSY_RETRY_MS = 200;
/** Request ids remembered per server (answers to older ones are ignored). */
const REMEMBERED_IDS = 8;
/** RETRYs followed for one attempt; more means the token is refused (the address changed). */
const RETRIES_PER_ATTEMPT = 2;

interface ServerState {
  answer: MetaAnswer | undefined;
  attempt: number;
  retries: number;
  /** Id of the request in flight, and when it was sent. */
  id: number | undefined;
  sentAt: number;
  /** When to send the next request (now, after a timeout, or after BUSY). */
  sendAt: number;
  token: Uint8Array;
  rttMs: number | undefined;
  /** The message of its last BUSY answer while it still has not answered (it is hashing). */
  busy: string | undefined;
  /** Ids of the latest requests sent to it: an answer to any of them is its answer. */
  sent: number[];
  /** Id of the token probe sent to it (see `pollTransmit`), once sent. */
  probeId: number | undefined;
}

/** Asks every server about one file name. */
export class MetaDiscovery implements RequestMachine {
  #servers: ServerState[];
  #busyUntil: number;
  /** When a server first answered BUSY, if one did. */
  firstBusyAt: number | undefined;

  /** Starts discovery of `name` on `servers` servers at `now`. */
  constructor(
    readonly name: string,
    servers: number,
    now: number,
    readonly nextRequestId: () => number,
    readonly retry: RetryOptions = META_RETRY,
  ) {
    this.#busyUntil = now + META_BUSY_LIMIT_MS;
    this.#servers = Array.from({ length: servers }, () => ({
      answer: undefined,
      attempt: 0,
      retries: 0,
      id: undefined,
      sentAt: 0,
      sendAt: now,
      token: NO_TOKEN,
      rttMs: undefined,
      busy: undefined,
      sent: [],
      probeId: undefined,
    }));
  }

  get done(): boolean {
    return this.#servers.every((s) => s.answer !== undefined);
  }

  /** Each server's answer so far (undefined: still being asked). */
  partial(): (MetaAnswer | undefined)[] {
    return this.#servers.map((s) => s.answer);
  }

  /** One answer per server, once `done`. */
  answers(): MetaAnswer[] {
    return this.#servers.map((s) => s.answer ?? { kind: "silent" });
  }

  /** The address-validation token `server` handed out (all zero if none). */
  token(server: number): Uint8Array {
    return this.#servers[server].token;
  }

  /** The BUSY messages of the servers still hashing the file (they carry its progress). */
  busy(): string[] {
    return this.#servers.flatMap((s) => s.answer === undefined && s.busy ? [s.busy] : []);
  }

  /** Round trip measured to `server` by its answer (ms), if any. */
  rtt(server: number): number | undefined {
    return this.#servers[server].rttMs;
  }

  handleReply(now: number, server: number, p: Packet): boolean {
    const s = this.#servers[server];
    if (s && p.requestId === s.probeId) {
      if (p.type === "retry") s.token = p.token.slice();
      return true; // (a server that validates nothing answers the probe with an error: no matter)
    }
    if (!s || !s.sent.includes(p.requestId)) return false;
    const current = p.requestId === s.id;
    if (p.type === "retry") {
      // the newest token validates every later request, even one beside an answer
      s.token = p.token.slice();
      if (!current || s.answer) return true;
      s.id = undefined;
      s.rttMs = now - s.sentAt;
      // followed at once; a RETRY after RETRY means validation keeps failing: an attempt lost
      if (++s.retries > RETRIES_PER_ATTEMPT) this.#failAttempt(s, now);
      else s.sendAt = now;
      return true;
    }
    // an answer to an earlier request counts too: a server may send the answer right behind
    // the RETRY that made us ask again (PROTOCOL.md §7.1)
    if (s.answer || (p.type !== "error" && p.type !== "meta_reply")) return true;
    if (current) s.rttMs = now - s.sentAt;
    s.id = undefined;
    if (p.type === "error" && p.code === ErrorCode.Busy && now < this.#busyUntil) {
      s.sendAt = now + META_BUSY_RETRY_MS;
      s.busy = p.message;
      this.firstBusyAt ??= now;
    } else if (p.type === "error") {
      s.answer = { kind: "error", code: p.code, message: p.message };
    } else {
      const { size, pieceSize, maxBlock, mtimeMs } = p;
      // (copies: the packet's bytes are views into a receive buffer that is reused)
      const digest = p.digest.slice();
      const piecesRoot = p.piecesRoot.slice();
      s.answer = { kind: "meta", meta: { size, pieceSize, maxBlock, mtimeMs, digest, piecesRoot } };
    }
    return true;
  }

  /**
   * A server the network says cannot be reached is done with at once, as silent: a closed port
   * answers with ICMP port unreachable, and waiting for its time-outs would cost seconds.
   */
  handleUnreachable(_now: number, server: number, reason: string): boolean {
    const s = this.#servers[server];
    if (!s || s.answer) return false;
    s.answer = { kind: "silent", unreachable: reason };
    s.id = undefined;
    return true;
  }

  handleTimeout(now: number): void {
    for (const s of this.#servers) {
      if (s.answer || s.id === undefined) continue;
      if (now >= s.sentAt + attemptTimeout(this.retry, s.attempt)) this.#failAttempt(s, now);
    }
  }

  pollTransmit(now: number): RequestTransmit | undefined {
    for (const [server, s] of this.#servers.entries()) {
      if (s.probeId === undefined && s.token === NO_TOKEN && s.id === undefined) {
        // a token probe first, which a server that validates addresses answers with a RETRY;
        // the real request is answered without a token (PROTOCOL.md §7.1), so the token for
        // the chunk requests comes in the same round trip
        s.probeId = this.nextRequestId() >>> 0;
        const probe = {
          type: "meta_request",
          requestId: s.probeId,
          token: NO_TOKEN,
          name: TOKEN_PROBE_NAME,
        };
        return { server, packet: probe as Packet };
      }
      if (s.answer || s.id !== undefined || now < s.sendAt) continue;
      s.id = this.nextRequestId() >>> 0;
      s.sentAt = now;
      s.sent.push(s.id);
      if (s.sent.length > REMEMBERED_IDS) s.sent.shift();
      const packet = { type: "meta_request", requestId: s.id, token: s.token, name: this.name };
      return { server, packet: packet as Packet };
    }
    return undefined;
  }

  pollTimeout(): number | undefined {
    let t = Infinity;
    for (const s of this.#servers) {
      if (s.answer) continue;
      t = Math.min(
        t,
        s.id === undefined ? s.sendAt : s.sentAt + attemptTimeout(this.retry, s.attempt),
      );
    }
    return t === Infinity ? undefined : t;
  }

  #failAttempt(s: ServerState, now: number): void {
    s.id = undefined;
    s.retries = 0;
    if (++s.attempt >= this.retry.attempts) s.answer = { kind: "silent" };
    else s.sendAt = now;
  }
}
