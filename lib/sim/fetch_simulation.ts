/**
 * A deterministic, in-process network simulation of one fetch: the real `FetchSession` engine
 * against simulated servers, each behind its own simulated path (rate, delay, queue with tail
 * drop, loss, reordering, outages, fragmentation). Simulated time only: a 256 MiB transfer over
 * 50 ms paths runs in a few seconds of CPU, and the same seed replays the same run.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { FetchSession } from "../engine/fetch_session.ts";
import type { SourceStats } from "../engine/fetch_session.ts";
import type { CongestionController } from "../engine/congestion/controller.ts";
import type { Packet } from "../wire/packet.ts";
import { EventQueue } from "./event_queue.ts";
import { Link, type LinkSpec } from "./link.ts";
import {
  type RunAction,
  type ServeAction,
  ServeCore,
  type ServedPieces,
} from "../serving/serve_core.ts";
import { seededRandom } from "./prng.ts";

/** One simulated server and its path. */
export interface SimServer {
  /** Server → client direction (the data). */
  down: LinkSpec;
  /** Client → server direction (the requests). */
  up: LinkSpec;
  /** The server's own send cap in bits per second (`serve --rate`); default none. */
  serverRateBps?: number;
  /** Fraction of blocks it sends with a flipped byte (a lying or broken server). */
  corrupt?: number;
}

/** A simulated fetch. */
export interface FetchScenario {
  seed: number;
  size: number;
  pieceSize: number;
  blockSize: number;
  servers: SimServer[];
  /** Client-side cap (`--limit`), bytes per second. */
  limitBytesPerSec?: number;
  /** Give up after this much simulated time (ms). */
  maxSimMs?: number;
  /** Controller to use instead of the default. */
  makeController?: (source: number) => CongestionController;
  /**
   * The client's event loop: datagrams that arrive are handled in batches, at the end of turns
   * lasting 5–100 % of this many ms each (uniformly drawn), all with the time of the turn's end — as
   * a busy receive loop does. Arrivals then look bunched, the delivery-rate samples noisy (ACK
   * compression, in TCP's words). Default 0: each datagram is handled the moment it arrives.
   */
  clientTurnMs?: number;
}

/** What happened. */
export interface FetchOutcome {
  finished: boolean;
  failure?: string;
  /** Simulated time from start to the last piece verified (ms). */
  simMs: number;
  /** Every byte of the output equals the source. */
  correct: boolean;
  /** Bytes declared lost and asked for again. */
  rerequested: number;
  sources: SourceStats[];
  /** Events the simulation processed (a measure of its CPU cost). */
  events: number;
  /** Datagrams dropped by each server's downlink: random loss and queue overflow. */
  downLoss: number[];
  downQueueDrops: number[];
}

/** Size of a CHUNK_REQUEST datagram for a short name (the uplink carries only these). */
const REQUEST_BYTES = 60;
const REPLY_HEADER = 28;

/** Deterministic file content for a seed: fast to make, different at every offset. */
export function simFile(size: number, seed: number): Uint8Array {
  const words = new Uint32Array(Math.ceil(size / 4));
  let x = (seed | 0) || 0x9e3779b9;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x;
  }
  return new Uint8Array(words.buffer, 0, size);
}

/** The ideal time for a scenario: size over the sum of the downlinks' rates × (1 − loss). */
export function idealMs(sc: FetchScenario): number {
  const rate = sc.servers.reduce((t, s) => t + s.down.rateBps / 8000 * (1 - s.down.loss), 0);
  return sc.size / rate;
}

/** Runs one simulated fetch to its end (or `maxSimMs`). */
export function simulateFetch(sc: FetchScenario): FetchOutcome {
  const clock = new EventQueue();
  const random = seededRandom(sc.seed);
  const file = simFile(sc.size, sc.seed);
  const out = new Uint8Array(sc.size);
  const fileId = 0x0123456789abcdefn;
  const session = new FetchSession({
    size: sc.size,
    pieceSize: sc.pieceSize,
    blockSize: sc.blockSize,
    fileId,
    name: "sim.bin",
    nextRequestId: () => Math.floor(random() * 0x100000000),
    limitBytesPerSec: sc.limitBytesPerSec,
    makeController: sc.makeController,
  }, 0);
  const downs = sc.servers.map((s) => new Link(s.down, clock, random));
  const ups = sc.servers.map((s) => new Link(s.up, clock, random));
  let finishedAt = -1;
  let failure: string | undefined;
  let timerAt = Infinity;

  const handle = (source: number, p: Packet) => {
    const w = session.handleReply(clock.now, source, p);
    if (w) out.set(w.data, w.offset);
  };
  const arrived: [number, Packet][] = [];
  const endTurn = () => {
    for (const [source, p] of arrived) handle(source, p);
    arrived.length = 0;
    pump();
  };
  const onReply = (source: number, p: Packet) => {
    const turn = sc.clientTurnMs ?? 0;
    if (turn <= 0) {
      handle(source, p);
      pump();
      return;
    }
    if (arrived.length === 0) clock.at(clock.now + turn * (0.05 + 0.95 * random()), endTurn);
    arrived.push([source, p]);
  };

  /**
   * Each server is the real serve core (duplicate copies ignored, ranges checked, `--rate`
   * paced); the runs it answers with enter the downlink block by block at the time they leave.
   */
  const cores = sc.servers.map((s) =>
    new ServeCore({ rate: s.serverRateBps === undefined ? undefined : s.serverRateBps / 8 }, 0)
  );
  const served: ServedPieces = { fileId, size: sc.size, changed: false };
  const peer: Deno.NetAddr = { transport: "udp", hostname: "192.0.2.1", port: 9 };
  const actions: ServeAction[] = [];
  const serve = (source: number, p: Packet) => {
    if (p.type !== "chunk_request") return;
    if (cores[source].isDuplicate(clock.now, p, peer.hostname, peer.port)) return;
    actions.length = 0;
    cores[source].onChunk(clock.now, peer, p, served, actions);
    for (const a of actions) {
      if (a.kind === "refuse") {
        const error: Packet = {
          type: "error",
          requestId: a.requestId,
          code: a.code,
          message: a.message,
        };
        downs[source].send(REPLY_HEADER, () => onReply(source, error));
        continue;
      }
      const send = () => sendRun(source, a);
      if (a.at <= clock.now) send();
      else clock.at(a.at, send);
    }
  };
  const sendRun = (source: number, a: RunAction) => {
    const spec = sc.servers[source];
    for (let off = a.offset; off < a.offset + a.length; off += a.blockSize) {
      const n = Math.min(a.blockSize, a.offset + a.length - off);
      let data = file.subarray(off, off + n);
      if (spec.corrupt && random() < spec.corrupt) {
        data = data.slice();
        data[0] ^= 0xff;
      }
      const reply: Packet = {
        type: "chunk_reply",
        requestId: a.requestId,
        fileId: a.fileId,
        offset: off,
        data,
      };
      downs[source].send(REPLY_HEADER + n, () => onReply(source, reply));
    }
  };

  const verify = (piece: number) => {
    const start = piece * sc.pieceSize;
    const end = Math.min(sc.size, start + sc.pieceSize);
    const ok = Buffer.compare(out.subarray(start, end), file.subarray(start, end)) === 0;
    session.handleVerified(piece, ok);
  };

  const pump = () => {
    for (let t = session.pollTransmit(clock.now); t; t = session.pollTransmit(clock.now)) {
      const { source, packet } = t;
      for (let c = 0; c < t.copies; c++) {
        ups[source].send(REQUEST_BYTES, () => serve(source, packet));
      }
    }
    for (let e = session.poll(); e; e = session.poll()) {
      if (e.kind === "verify") verify(e.piece);
      else if (e.kind === "finished") finishedAt = clock.now;
      else if (e.kind === "failed") failure = e.reason;
    }
    const next = session.pollTimeout(clock.now);
    if (next !== undefined && next < timerAt) {
      timerAt = Math.max(next, clock.now);
      const at = timerAt;
      clock.at(at, () => {
        if (timerAt !== at) return; // superseded by an earlier timer
        timerAt = Infinity;
        session.handleTimeout(clock.now);
        pump();
      });
    }
  };

  sc.servers.forEach((s, i) => session.addSource(i, 0, undefined, 2 * s.down.delayMs));
  pump();
  clock.run(sc.maxSimMs ?? 3_600_000, () => finishedAt >= 0 || failure !== undefined);
  const finished = finishedAt >= 0;
  return {
    finished,
    failure,
    simMs: finished ? finishedAt : clock.now,
    correct: finished && Buffer.compare(out, file) === 0,
    rerequested: session.rerequested,
    sources: session.stats(),
    events: clock.processed,
    downLoss: downs.map((d) => d.stats.lost),
    downQueueDrops: downs.map((d) => d.stats.queueDrops),
  };
}
