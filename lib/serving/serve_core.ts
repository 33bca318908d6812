/**
 * The serve core: what a server does with a request, as a pure state machine in the shape of
 * the fetch engine. Events in: a request (already admitted by `request_gate.ts`) with the state
 * of the file it names, at a time; actions out: runs of CHUNK_REPLY blocks to send (each with
 * the time it may leave, for `--rate`) and ERROR answers. No sockets, files or clocks: the
 * server shell (`server.ts`) reads each run with one file read and sends it with one call
 * (one GSO message per 64 KiB on the batched layer); the simulator drives the same core.
 *
 * It owns the decisions the shell used to make beside the socket: copies of a request already
 * answered are ignored (`duplicate_filter.ts`), ranges are checked against the file
 * (`serve_policy.ts`), transfers are counted and capped (`transfer_log.ts`), and the send rate
 * is capped by a token bucket.
 *
 * What it serves from is a {@link ServedPieces}: a whole file today, and the same interface lets
 * a swarm peer serve a partial download (only the pieces it holds).
 *
 * @module
 */

import {
  CHUNK_REPLY_HEADER_SIZE,
  type ChunkRequest,
  ErrorCode,
  type HashesRequest,
  type RequestPacket,
  writeChunkReplyHeaders,
} from "../wire/packet.ts";
import { BacklogGate } from "./backlog_gate.ts";
import { formatBusyRetry } from "../wire/busy_retry.ts";
import { TokenBucket } from "../engine/token_bucket.ts";
import { DuplicateFilter, requestKey } from "./duplicate_filter.ts";
import { checkChunkRequest } from "./serve_policy.ts";
import type { TransferLog } from "./transfer_log.ts";
import type { FirstCopyLedgers } from "./first_copy_ledger.ts";
import { formatGivenOut } from "../wire/given_out.ts";

/** A file (or part of one) as the core sees it when a request names it. */
export interface ServedPieces {
  /** Content identity requests must carry; undefined while it is being hashed (BUSY). */
  fileId: bigint | undefined;
  /** Current size in bytes. */
  size: number;
  /** It changed since it was hashed: requests get STALE. */
  changed: boolean;
  /** Why it is not hashed yet (the BUSY message), when `fileId` is undefined. */
  busyMessage?: string;
  /**
   * Whether `[offset, offset + length)` can be served (a partial file holds only verified
   * pieces); absent: all of it. A missing range gets NOT_HELD, which tells the asker to look
   * elsewhere, not that the source is broken (PROTOCOL.md §10.2).
   */
  holds?(offset: number, length: number): boolean;
  /** Bytes per piece, for the first-copy ledger (swarm requests); absent: no ledger. */
  pieceSize?: number;
}

/** Blocks `[offset, offset + length)` of a request, in `blockSize` datagrams, to send at `at`. */
export interface RunAction {
  kind: "run";
  requestId: number;
  fileId: bigint;
  offset: number;
  length: number;
  blockSize: number;
  /** When it may leave (ms, the caller's clock): later than now only under `--rate`. */
  at: number;
  /** Send with don't-fragment, or answer TOO_BIG (a path MTU probe, PROTOCOL.md §7.4). */
  unfragmented: boolean;
  /** The core's charged total when the run was timed (see `ServeCore.sendTime`). */
  charged?: number;
  /**
   * Set by a sharing peer on a run of a piece rare among its peers (`PeerShare`): it leaves
   * before the runs queued without one, lower ranks first (`ShareOutbox`).
   */
  rank?: number;
}

/**
 * The datagrams that carry run `a` (see `SendRun` in `lib/io/udp/datagram_socket.ts`): the
 * CHUNK_REPLY headers written into `headers`, the file's bytes `data` after them, block by block.
 */
export function chunkRun(a: RunAction, headers: Uint8Array, data: Uint8Array): {
  prefixes: Uint8Array;
  prefixLength: number;
  payload: Uint8Array;
  segment: number;
  count: number;
  unfragmented: boolean;
} {
  const count = writeChunkReplyHeaders(
    headers,
    a.requestId,
    a.fileId,
    a.offset,
    a.blockSize,
    a.length,
  );
  return {
    prefixes: headers,
    prefixLength: CHUNK_REPLY_HEADER_SIZE,
    payload: data,
    segment: a.blockSize,
    count,
    unfragmented: a.unfragmented,
  };
}

/** An ERROR to answer request `requestId` with. */
export interface RefuseAction {
  kind: "refuse";
  requestId: number;
  code: number;
  message: string;
  /** Refused because of the transfer caps (counted apart in the server's stats). */
  tooMany?: boolean;
}

/** What the core asks the shell to do. */
export type ServeAction = RunAction | RefuseAction;

/** Options of {@link ServeCore}. */
export interface ServeCoreOptions {
  /** Bytes per second to send at most, all clients together (`--rate`); undefined: no cap. */
  rate?: number;
  /** Largest run (bytes): one file read and one send call each (default 1 MiB). */
  runBytes?: number;
  /** Most blocks per run (the shell's header buffer; default 1024). */
  runBlocks?: number;
  /**
   * Idle credit of the `--rate` bucket, ms of the rate (default 10). A sharing peer, whose loop
   * also fetches, takes more: a send delayed by its own work would otherwise be capacity lost.
   */
  creditMs?: number;
  /** Counts transfers and caps them per client and server-wide; undefined: no caps. */
  transfers?: TransferLog;
  /**
   * What was given to swarm fetchers, per file (PROTOCOL.md §10.6); undefined: swarm requests
   * are served like any other.
   */
  firstCopies?: FirstCopyLedgers;
  /**
   * Under `rate`: a chunk request that would wait behind more than this many ms of data already
   * taken is refused BUSY with a retry time (PROTOCOL.md §4.2, `BacklogGate`) instead of queued.
   * Undefined: everything is queued (a `serve --rate` server queues in its shell instead).
   */
  maxBacklogMs?: number;
  /** Spreads the retry times of those BUSY answers (default `Math.random`; seeded in tests). */
  random?: () => number;
}

/** Default largest run. */
export const RUN_BYTES = 1 << 20;
/** Default most blocks per run. */
export const RUN_BLOCKS = 1024;
/** Runs under `--rate` carry about this many ms of the rate, so the pacing stays smooth. */
const PACED_RUN_MS = 5;
/** Idle credit of the `--rate` bucket, ms of the rate. */
/**
 * Most the bytes sent outside the runs may hold the data back (ms of the rate): a crowd's hash
 * lists on a slow server (12 fetchers at 32 KiB/s: 0.75 s) are paid for, a flood of requests
 * only delays the data this much, whatever its length (before the cap: 13.8 s after 10 s of
 * RETRYs at 2.4 times a 32 KiB/s rate).
 */
export const MAX_CHARGED_DEBT_MS = 1000;

const BUCKET_MS = 10;

/** The serve core (see the module comment). */
export class ServeCore {
  /** Copies of requests already answered, ignored. */
  duplicates = 0;
  #filter = new DuplicateFilter();
  #limiter: TokenBucket | undefined;
  #runBytes: number;
  #runBlocks: number;
  #transfers: TransferLog | undefined;
  #firstCopies: FirstCopyLedgers | undefined;
  #backlogGate: BacklogGate | undefined;
  /** When the last run timed so far will have left (ms), under `--rate`. */
  #runsEnd = -Infinity;
  /** Ms of the rate taken by `charge` so far (runs timed before a charge wait for it). */
  #chargedMs = 0;
  /** Chunk requests refused BUSY because the queue was full (`maxBacklogMs`). */
  busy = 0;

  constructor(opts: ServeCoreOptions, now: number) {
    this.#runBlocks = opts.runBlocks ?? RUN_BLOCKS;
    this.#transfers = opts.transfers;
    this.#firstCopies = opts.firstCopies;
    const runBytes = opts.runBytes ?? RUN_BYTES;
    if (opts.rate !== undefined) {
      // Little credit for idle time: a burst of tens of ms at the cap reads, at the client, as
      // a path faster than the cap, and the requests it then sizes to that wait out their
      // deadlines in this bucket (in the simulator, 4 % re-requested with 50 ms of credit).
      const credit = opts.rate * (opts.creditMs ?? BUCKET_MS) / 1000;
      this.#limiter = new TokenBucket(opts.rate, Math.max(1500, credit), now);
      this.#runBytes = Math.min(runBytes, Math.max(1, (opts.rate * PACED_RUN_MS) / 1000));
      if (opts.maxBacklogMs !== undefined) {
        this.#backlogGate = new BacklogGate(
          opts.maxBacklogMs,
          undefined,
          opts.random ?? Math.random,
        );
      }
    } else this.#runBytes = runBytes;
  }

  /**
   * True when `p` from `host`:`port` is a copy of a request answered within the last two
   * seconds (a client's second copy on a lossy path, or the network's): ignore it. Otherwise
   * it is remembered, and false.
   */
  isDuplicate(
    now: number,
    p: RequestPacket,
    host: string,
    port: number,
  ) {
    if (!this.#filter.seen(p.requestId, requestKey(p), host, port, now)) return false;
    this.duplicates++;
    return true;
  }

  /**
   * A CHUNK_REQUEST from `peer` for `file` at `now`: pushes to `out` the runs that answer it,
   * or the ERROR that refuses it. `backlogMs`: data the shell still has queued (ms of `--rate`),
   * which decides whether a swarm fetcher gets a repeat (PROTOCOL.md §10.6).
   */
  onChunk(
    now: number,
    peer: Deno.NetAddr,
    p: ChunkRequest,
    file: ServedPieces,
    out: ServeAction[],
    backlogMs = 0,
  ): void {
    const refuse = (code: number, message: string, tooMany = false) =>
      void out.push({ kind: "refuse", requestId: p.requestId, code, message, tooMany });
    if (file.fileId === undefined) {
      return refuse(ErrorCode.Busy, file.busyMessage ?? "hashing the file");
    }
    const refusal = checkChunkRequest(p, file.fileId, file.size, file.changed);
    if (refusal) return refuse(refusal.code, refusal.message);
    if (file.holds && !file.holds(p.offset, p.length)) {
      return refuse(ErrorCode.NotHeld, "not held yet");
    }
    const ledger = this.#ledgerFor(now, p, file);
    const asker = p.swarm ? `${peer.hostname}|${peer.port}` : undefined;
    if (ledger && asker) {
      const a = ledger.check(now, asker, p.offset, p.length, backlogMs);
      if (a.kind === "given_out") return refuse(ErrorCode.GivenOut, formatGivenOut(a.unsent));
    }
    const wait = this.#backlogWait(now, p.length);
    if (wait > 0) {
      this.busy++;
      return refuse(ErrorCode.Busy, formatBusyRetry(wait));
    }
    const tooMany = this.#transfers?.record(peer, p.name, p.fileId, p.length, now, file.size);
    if (tooMany) return refuse(tooMany.code, tooMany.message, true);
    ledger?.record(now, asker, p.offset, p.length); // (served: now it counts)
    this.#runs(now, p, out);
  }

  /** Ms after which a request of `bytes` refused now may come back; 0 to admit it now. */
  #backlogWait(now: number, bytes: number): number {
    const gate = this.#backlogGate;
    const limiter = this.#limiter;
    if (!gate || !limiter) return 0;
    return gate.admit(now, limiter.debtMs(now), (1000 * bytes) / limiter.rate);
  }

  /**
   * A HASHES_REQUEST `p` from `peer` for `file` at `now`: 0 to answer it, or the retry time of
   * the BUSY that refuses it (flagged, and the list went out to enough swarm fetchers lately:
   * PROTOCOL.md §10.7). Plain requests are always answered.
   */
  hashesWait(now: number, peer: Deno.NetAddr, p: HashesRequest, file: ServedPieces): number {
    if (!p.swarm || !this.#firstCopies || !file.pieceSize || file.fileId === undefined) return 0;
    const ledger = this.#firstCopies.of(now, file.fileId, file.size, file.pieceSize);
    return ledger?.hashList(now, `${peer.hostname}|${peer.port}`) ?? 0;
  }

  /**
   * The first-copy ledger of `file` for request `p`: made by a swarm request; a plain one only
   * adds to a ledger that exists (what it is sent is sent, but plain traffic alone needs none).
   */
  #ledgerFor(now: number, p: ChunkRequest, file: ServedPieces) {
    if (!this.#firstCopies || !file.pieceSize || file.fileId === undefined) return undefined;
    return p.swarm
      ? this.#firstCopies.of(now, file.fileId, file.size, file.pieceSize)
      : this.#firstCopies.existing(now, file.fileId, file.pieceSize);
  }

  /**
   * Counts `bytes` the shell sent at `now` outside the runs (a reply to a proven address, a
   * request of its own) toward the rate: without it a burst of such replies (a crowd's hash
   * lists) rides on top of data paced at the full rate, and on a link of that capacity the
   * queue it leaves drains only as fast as the link's headroom over the cap, delaying every
   * reply and block behind it. Charged before a run is timed, they hold it back by
   * `MAX_CHARGED_DEBT_MS` at most, and so do those charged after ({@link sendTime}): a flood of
   * requests must not stop the data for as long as it lasts.
   */
  charge(now: number, bytes: number): void {
    const limiter = this.#limiter;
    if (!limiter) return;
    this.#chargedMs += (1000 * limiter.charge(bytes, now, MAX_CHARGED_DEBT_MS)) / limiter.rate;
  }

  /**
   * When run `a` may leave (ms): its time, later by what was charged since it was timed (at
   * most `MAX_CHARGED_DEBT_MS`, on top of at most as much charged before, in its time). A
   * request's runs are timed when it is taken — a 64 KiB piece is a second of a 64 KiB/s
   * server — so without this, replies charged meanwhile queued behind
   * them on the link (32 fetchers on such a server: their hash lists came seconds late and 5 of
   * them went on without). Bounded, so a flood of replies delays the data, never stops it.
   */
  sendTime(a: Pick<RunAction, "at" | "charged">): number {
    if (a.charged === undefined) return a.at;
    return a.at + Math.min(MAX_CHARGED_DEBT_MS, this.#chargedMs - a.charged);
  }

  /**
   * Ms by which bytes charged after the last run was timed hold back the next run (0: none):
   * what a request queued now waits for besides the runs already timed and the queue.
   */
  chargedAheadMs(now: number): number {
    if (!this.#limiter) return 0;
    const end = now + this.#limiter.debtMs(now);
    return Math.max(0, end - Math.max(now, this.#runsEnd));
  }

  /** Splits the range into runs; under `--rate` each gets the time the bucket lets it leave. */
  #runs(now: number, p: ChunkRequest, out: ServeAction[]): void {
    const bs = p.blockSize;
    const perRun = Math.max(1, Math.min(this.#runBlocks, Math.floor(this.#runBytes / bs)));
    const end = p.offset + p.length;
    for (let off = p.offset; off < end;) {
      const length = Math.min(perRun * bs, end - off);
      let at = now;
      if (this.#limiter) {
        const blocks = Math.ceil(length / bs);
        // what the wire carries: headers included
        const wire = length + blocks * CHUNK_REPLY_HEADER_SIZE;
        at = now + this.#limiter.take(wire, now);
        this.#runsEnd = Math.max(this.#runsEnd, at + (1000 * wire) / this.#limiter.rate);
      }
      out.push({
        kind: "run",
        requestId: p.requestId,
        fileId: p.fileId,
        offset: off,
        length,
        blockSize: bs,
        at,
        unfragmented: p.unfragmented === true,
        charged: this.#limiter ? this.#chargedMs : undefined,
      });
      off += length;
    }
  }
}
