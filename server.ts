/**
 * `udpget serve`: answers metadata, hash and chunk requests for the regular files under one
 * root directory, read-only. Moves bytes between the socket and files; what to answer is
 * decided by `lib/serve_policy.ts`.
 *
 * @module
 */

import {
  chunkRun,
  RUN_BLOCKS,
  RUN_BYTES,
  type RunAction,
  type ServeAction,
  ServeCore,
  type ServedPieces,
} from "./lib/serving/serve_core.ts";
import {
  CHUNK_REPLY_HEADER_SIZE,
  type ChunkRequest,
  encode,
  ErrorCode,
  type HashesRequest,
  type HaveRequest,
  metaReplyOf,
  type MetaRequest,
  type Packet,
  type PeersRequest,
  type RequestPacket,
} from "./lib/wire/packet.ts";
import {
  type FileRefusal,
  FileTable,
  type PrehashSummary,
  type ServedFile,
} from "./lib/serving/file_table.ts";
import { hashesReplyCount } from "./lib/serving/serve_policy.ts";
import { TransferLog } from "./lib/serving/transfer_log.ts";
import type { RefusalLimits } from "./lib/serving/refusal_limiter.ts";
import { RefusalLog } from "./lib/serving/refusal_log.ts";
import { info, lineSink, type LogEvent, type LogSink } from "./lib/serving/log_event.ts";
import { defaultCacheDir, DigestCache } from "./lib/serving/digest_cache.ts";
import { listRoot } from "./lib/serving/root_walk.ts";
import type { DigestFn } from "./lib/io/file_digest.ts";
import { formatServer } from "./lib/base/format.ts";
import { describeTftpStats, startTftpForServe, tftpListeningLine } from "./tftp_server.ts";
import { parseServeArgs } from "./lib/cli/cli_args.ts";
import { ExitCode, ioMessage, UdpgetError } from "./lib/base/exit.ts";
import { resolve } from "node:path";
import { lookup } from "node:dns/promises";
import type { ServerSpec } from "./lib/cli/servers.ts";
import { sleep } from "./lib/io/timer.ts";
import {
  batchedUnavailable,
  describeSocket,
  type IoChoice,
  openSocket,
} from "./lib/io/udp/open_socket.ts";
import {
  type DatagramSocket,
  type ReceivedBatch,
  SEND_TOO_BIG,
  single,
} from "./lib/io/udp/datagram_socket.ts";
import { PeerAddress } from "./lib/io/udp/peer_address.ts";
import { CookieJar } from "./lib/wire/cookie.ts";
import { RequestGate } from "./lib/serving/request_gate.ts";
import { FirstCopyLedgers } from "./lib/serving/first_copy_ledger.ts";
import { type PacedEntry, PacedQueue } from "./lib/serving/paced_queue.ts";
import { DrainLoop } from "./lib/io/drain_loop.ts";
import { formatBusyRetry } from "./lib/wire/busy_retry.ts";
import { completeHaveReply } from "./lib/swarm/have_log.ts";
import { swarmId } from "./lib/swarm/swarm_id.ts";
import { MAX_SEEDED_FILES, SeedAnnouncer } from "./lib/tracker/seed_announcer.ts";
import { readKeyFile, RequestAuthenticator } from "./lib/wire/auth.ts";

/** What `serve` needs to run. */
export interface ServeOptions {
  /** UDP port to bind; 0 picks a free one (printed on the first line). */
  port: number;
  /** Address to bind: `0.0.0.0` (default), `127.0.0.1`, `::`... */
  host: string;
  /** Directory whose regular files are served. */
  root: string;
  /** Piece size used for piece hashes; undefined: each file's own (`autoPieceSize`). */
  pieceSize: number | undefined;
  /** Bytes per second to send at most (all clients together); undefined: no cap. */
  rate?: number;
  /** Shared key: when set, only requests authenticated with it are answered. */
  key?: Uint8Array;
  /** Where log events go. */
  log: LogSink;
  /** Stops the server when aborted. */
  signal: AbortSignal;
  /** Called once with the bound address, before the first datagram is read. */
  onListening?: (addr: Deno.NetAddr) => void;
  /** Persistent digest cache directory; undefined: none (digests live as long as the process). */
  cacheDir?: string;
  /** Hash the files under the root in the background from the start (default true). */
  prehash?: boolean;
  /** Called when the background pass over the root has finished. */
  onPrehashed?: (summary: PrehashSummary) => void;
  /** Computes digests (default `digestFile`); tests inject slow or counting ones. */
  digestFn?: DigestFn;
  /** Limits on refusal log lines (default `DEFAULT_REFUSAL_LIMITS`). */
  refusalLimits?: RefusalLimits;
  /** Datagram layer (`--io`; default auto: batched where FFI is allowed). */
  io?: IoChoice;
  /** Called once with the socket, before the first datagram is read (to describe its layer). */
  onSocket?: (sock: DatagramSocket) => void;
  /**
   * `--tracker`: announce the files hashed at start (at most `MAX_SEEDED_FILES`) as a seed of
   * each file's swarm to this tracker (a numeric address), from the serving socket.
   */
  tracker?: { hostname: string; port: number; label: string };
}

/** Counters a server keeps about its traffic. */
export interface ServeStats {
  datagrams: number;
  malformed: number;
  requests: number;
  /** Requests answered with RETRY because their address was not validated yet. */
  retries: number;
  bytesSent: number;
  sendErrors: number;
  /** Chunk requests refused by the per-client and server-wide transfer limits. */
  refused: number;
  /** Most transfers tracked at once (bounded by MAX_OPEN_TRANSFERS). */
  peakTransfers: number;
  /** Datagrams refused by `--secret-file` authentication. */
  authFailed: number;
  /** Copies of a request already answered (a client's second copy, or the network's). */
  duplicates: number;
  /** Swarm requests answered GIVEN_OUT: the piece went to another swarm fetcher (§10.6). */
  givenOut: number;
  /**
   * Under `--rate`, requests not queued because one still waiting from the same client covers
   * their bytes (asked again after a deadline: answering both would send the bytes twice).
   */
  coalesced: number;
  /** Swarm requests answered BUSY with a retry time: the paced queue was full (§4.2). */
  busy: number;
}

/** Runs a server until `opts.signal` aborts; resolves with its counters. */
export async function serve(opts: ServeOptions): Promise<ServeStats> {
  const realRoot = await Deno.realPath(opts.root);
  if (!(await Deno.stat(realRoot)).isDirectory) throw new Error(`${opts.root} is not a directory`);
  const sock = openSocket(opts.io ?? "auto", {
    hostname: opts.host,
    port: opts.port,
    maxDatagram: MAX_REQUEST_DATAGRAM,
  });
  opts.onSocket?.(sock);
  const auth = opts.key ? new RequestAuthenticator(opts.key) : undefined;
  let cache: DigestCache | undefined;
  if (opts.cacheDir !== undefined) {
    const c = await DigestCache.open(opts.cacheDir, realRoot);
    if (typeof c === "string") {
      opts.log({ level: "warn", event: "cache_disabled", msg: `digest cache disabled: ${c}` });
    } else cache = c;
  }
  const files = new FileTable(realRoot, opts.pieceSize, {
    digestFn: opts.digestFn,
    cache,
    log: opts.log,
  });
  const server = new UdpServer(sock, files, opts.log, opts.rate, auth, opts.refusalLimits);
  opts.onListening?.(sock.localAddr);
  // a seeding server says `stopped` to its tracker before its socket goes
  const stop = () => void server.leave().catch(() => {}).finally(() => sock.close());
  opts.signal.addEventListener("abort", stop, { once: true });
  const background = opts.prehash === false
    ? undefined
    : prehashRoot(files, realRoot, opts.log, opts.signal).then(async (s) => {
      opts.onPrehashed?.(s.summary);
      if (opts.tracker) await server.seed(opts.tracker, s.names, opts.key);
    });
  try {
    await server.run();
  } finally {
    opts.signal.removeEventListener("abort", stop);
    server.close();
    // digest jobs stop at their next read once the table is closed: this waits milliseconds
    await background;
    await files.drain();
  }
  return server.stats;
}

/**
 * Hashes the servable files under the root ahead of their first request, one at a time,
 * after loading whatever the persistent cache holds. Never throws.
 */
async function prehashRoot(
  files: FileTable,
  realRoot: string,
  log: LogSink,
  signal: AbortSignal,
): Promise<{ summary: PrehashSummary; names: string[] }> {
  const listing = await listRoot(realRoot, undefined, signal);
  log({
    level: "info",
    event: "prehash_start",
    msg: `background hashing: ${listing.names.length} files` +
      (listing.truncated ? " (the walk stopped there; others are hashed on request)" : ""),
    fields: { files: listing.names.length, truncated: listing.truncated },
  });
  const s = await files.prehash(listing.names, signal);
  const secs = (s.ms / 1000).toFixed(3);
  const left = s.files - s.fromCache - s.hashed - s.failed - s.onRequest;
  log({
    level: "info",
    event: s.stopped ? "prehash_stopped" : "prehash_done",
    msg: `background hashing ${s.stopped ? "stopped after" : "done in"} ${secs} s: ` +
      `${s.fromCache} from cache, ${s.hashed} hashed` +
      (s.onRequest > 0 ? `, ${s.onRequest} already on request` : "") +
      `, ${s.failed} skipped` + (s.stopped ? `, ${left} not reached` : ""),
    fields: {
      files: s.files,
      from_cache: s.fromCache,
      hashed: s.hashed,
      on_request: s.onRequest,
      skipped: s.failed,
      not_reached: s.stopped ? left : 0,
      seconds: Number(secs),
    },
  });
  return { summary: s, names: listing.names };
}

type Request = RequestPacket;

/** Largest request datagram: header, token, fields, a 1024-byte name and an HMAC trailer. */
const MAX_REQUEST_DATAGRAM = 2048;

class UdpServer {
  readonly stats: ServeStats = {
    datagrams: 0,
    malformed: 0,
    requests: 0,
    retries: 0,
    bytesSent: 0,
    sendErrors: 0,
    refused: 0,
    peakTransfers: 0,
    authFailed: 0,
    duplicates: 0,
    givenOut: 0,
    coalesced: 0,
    busy: 0,
  };
  #sock: DatagramSocket;
  #files: FileTable;
  #transfers: TransferLog;
  /** One file read per run of blocks, and the run's headers beside it (see `#sendRange`). */
  #runBuf = new Uint8Array(RUN_BYTES);
  #headers = new Uint8Array(CHUNK_REPLY_HEADER_SIZE * RUN_BLOCKS);
  #sweep: ReturnType<typeof setInterval>;
  #core: ServeCore;
  #actions: ServeAction[] = [];
  #gate: RequestGate;
  #refusals: RefusalLog;
  /**
   * Under `--rate`, chunk requests wait here for the pacing, in arrival order, while the receive
   * loop goes on: a metadata or hash request must not wait seconds behind paced data (a fetcher
   * would give up on the hash list, and a swarm needs it). Undefined without a rate.
   */
  #paced: PacedQueue<PeerAddress> | undefined;
  /** Answers the queued chunk requests one after the other (started by each one queued). */
  #pacing: DrainLoop<PacedEntry<PeerAddress>> | undefined;
  /** `--rate`, bytes per second; undefined: no cap. */
  #rate: number | undefined;
  /** `--tracker`: the announces, the tracker, and the files announced by file id. */
  #seeds: SeedAnnouncer | undefined;
  #tracker: PeerAddress | undefined;
  #seeded = new Map<bigint, string>();
  #seedTimer: ReturnType<typeof setInterval> | undefined;
  #closed = false;
  #log: LogSink;

  constructor(
    sock: DatagramSocket,
    files: FileTable,
    log: LogSink,
    rate: number | undefined,
    auth: RequestAuthenticator | undefined,
    refusalLimits: RefusalLimits | undefined,
  ) {
    this.#sock = sock;
    const cookies = new CookieJar(crypto.getRandomValues(new Uint8Array(32)));
    this.#gate = new RequestGate(cookies, auth, sock.unfragmented);
    this.#files = files;
    this.#transfers = new TransferLog(log);
    this.#log = log;
    // one ledger per file swarm fetchers ask for: as many as a server seeds (MAX_SEEDED_FILES)
    const firstCopies = new FirstCopyLedgers(MAX_SEEDED_FILES, Math.random);
    this.#core = new ServeCore(
      { rate, transfers: this.#transfers, firstCopies },
      performance.now(),
    );
    if (rate !== undefined) {
      const paced = new PacedQueue<PeerAddress>(rate);
      this.#paced = paced;
      this.#pacing = new DrainLoop(
        () => paced.shift(),
        (next) => this.#onChunk(next.p, next.extra),
        (next, e) => this.#internal(next.extra, next.p, e), // (fails quietly once closed)
      );
    }
    this.#rate = rate;
    this.#refusals = new RefusalLog(log, refusalLimits);
    this.#sweep = setInterval(() => {
      // (the clock the core records transfers with: with the epoch's, every transfer looked
      // idle and was ended, and counted anew, once a second)
      this.#transfers.sweep(performance.now());
      this.#refusals.tick(Date.now());
    }, 1000);
  }

  /** Serves batches of requests until the socket is closed (a socket failure throws). */
  async run(): Promise<void> {
    for await (const b of this.#sock.batches()) {
      if (b.softError !== undefined) this.stats.sendErrors++; // an ICMP error about a client
      this.stats.malformed += b.dropped; // larger than any request: cut short by the layer
      for (let i = 0; i < b.count; i++) await this.#onBatchItem(b, i);
    }
  }

  #onBatchItem(b: ReceivedBatch, i: number): Promise<void> {
    this.stats.datagrams++;
    const peer = b.peer(i);
    if (!peer) return Promise.resolve(void this.stats.malformed++);
    const at = b.offsets[i];
    return this.#onDatagram(b.data.subarray(at, at + b.lengths[i]), peer);
  }

  close(): void {
    this.#closed = true;
    this.#paced?.clear(); // (the one being sent finishes or fails quietly)
    clearInterval(this.#sweep);
    clearInterval(this.#seedTimer);
    this.#transfers.flush();
    this.#refusals.flush(Date.now());
    this.#files.close();
  }

  /**
   * `--tracker`: announces `names` (those with a digest, up to the cap) as a seed of each one's
   * swarm, and answers requests that name an announced file by its id alone (a peer reached
   * through the swarm knows no name: PROTOCOL.md §10.2).
   */
  async seed(
    tracker: { hostname: string; port: number; label: string },
    names: string[],
    key: Uint8Array | undefined,
  ): Promise<void> {
    if (this.#closed) return;
    const family = tracker.hostname.includes(":") ? "ipv6" : "ipv4";
    const seeds = new SeedAnnouncer(this.#sock.localAddr.port, family, key);
    for (const name of names) {
      if (seeds.size >= MAX_SEEDED_FILES) break;
      const f = await this.#files.open(name);
      if ("code" in f) continue;
      const d = await this.#files.digest(f, 0);
      if (!d || f.fileId === undefined) continue;
      const meta = {
        size: f.size,
        pieceSize: d.pieceSize,
        digest: d.digest,
        piecesRoot: d.piecesRoot,
      };
      if (seeds.add(swarmId(meta), performance.now())) this.#seeded.set(f.fileId, name);
    }
    this.#tracker = PeerAddress.of(tracker.hostname, tracker.port);
    this.#seeds = seeds;
    this.#log(info(
      "seeding",
      `announcing ${seeds.size} file(s) as a seed to tracker ${tracker.label}` +
        (names.length > seeds.size ? ` (at most ${MAX_SEEDED_FILES})` : ""),
      { files: seeds.size, tracker: tracker.label },
    ));
    if (this.#closed) return;
    this.#seedTimer = setInterval(() => this.#seedTurn(tracker.label), 200);
  }

  /**
   * Before the socket closes: the seeds announce `stopped` (best effort: one datagram each, if
   * their connection id is fresh; the tracker forgets the others when they stop announcing).
   */
  async leave(): Promise<void> {
    const seeds = this.#seeds;
    if (!seeds || !this.#tracker) return;
    const now = performance.now();
    seeds.stop(now);
    seeds.handleTimeout(now);
    await Promise.all(seeds.pollTransmit().map((b) => this.#sock.send(this.#tracker!, single(b))));
  }

  #seedTurn(label: string): void {
    const seeds = this.#seeds!;
    seeds.handleTimeout(performance.now());
    for (const b of seeds.pollTransmit()) void this.#sock.send(this.#tracker!, single(b));
    for (const e of seeds.poll()) {
      if (e.kind === "refused") {
        this.#log(info("tracker", `tracker ${label} refused: ${e.message}`));
      }
      if (e.kind === "unreachable") this.#log(info("tracker", `tracker ${label} does not answer`));
      if (e.kind === "reachable") this.#log(info("tracker", `tracker ${label} answers again`));
    }
  }

  /** The file a request is about: its name, or (through a swarm) an announced file's id. */
  async #openFor(p: { name: string; fileId: bigint }): Promise<ServedFile | FileRefusal> {
    const seeded = this.#seeded.get(p.fileId);
    const f = await this.#files.open(p.name);
    // a seeded file's id wins over a name that means something else here (or nothing)
    if (seeded === undefined || (!("code" in f) && f.fileId === p.fileId)) return f;
    return await this.#files.open(seeded);
  }

  async #onDatagram(data: Uint8Array, peer: PeerAddress): Promise<void> {
    const addr = peer.netAddr;
    const t = this.#tracker;
    if (t && addr.port === t.port && addr.hostname === t.hostname) {
      this.#seeds!.handleDatagram(performance.now(), data);
      return this.#seedTurn(addr.hostname);
    }
    const d = this.#gate.admit(data, addr.hostname, Date.now());
    if (d.kind !== "serve") {
      if (d.why === "auth") this.stats.authFailed++;
      else if (d.why === "retry") (this.stats.requests++, this.stats.retries++);
      else this.stats.malformed++;
      this.#refusals.gate(addr, d, Date.now());
      // (uncharged: an answer to an unproven address is small, and anyone can ask for it)
      if (d.kind === "answer") await this.#send(d.bytes, peer, false);
      return;
    }
    const p = d.request;
    if (this.#core.isDuplicate(performance.now(), p, addr.hostname, addr.port)) {
      this.stats.duplicates++; // answered (or being answered) already
      return;
    }
    this.stats.requests++;
    try {
      switch (p.type) {
        case "meta_request":
          this.#transfers.noteMeta(addr.hostname, p.name);
          // not awaited: hashing a large file must not stall chunk traffic
          this.#onMeta(p, peer).catch((e) => this.#internal(peer, p, e));
          return;
        case "hashes_request":
          return await this.#onHashes(p, peer);
        case "chunk_request":
          if (this.#paced) return this.#queueChunk(p, peer);
          return await this.#onChunk(p, peer);
        case "have_request":
          return await this.#onHave(p, peer);
        case "peers_request":
          return await this.#onPeers(p, peer);
      }
    } catch (e) {
      await this.#internal(peer, p, e);
    }
  }

  /**
   * A chunk request under `--rate`: queued behind the ones being paced out (`PacedQueue`: at
   * most `MAX_PACED` waiting, beyond which a request is dropped and its client asks again; one
   * whose bytes a waiting request of the same client covers is left to that one).
   */
  #queueChunk(p: ChunkRequest, peer: PeerAddress): void {
    const queue = this.#paced!;
    const now = performance.now();
    const asker = `${peer.hostname}|${peer.port}`;
    const refused = queue.push(p, asker, peer, now, this.#core.chargedAheadMs(now));
    // every arrival, refused or not, makes sure the queue is being answered: with waiting
    // requests and nothing draining them, flagged ones would only ever hear BUSY
    if (queue.length > 0) this.#pacing!.kick();
    if (refused === "full") return void this.stats.refused++;
    if (refused === "covered") return void this.stats.coalesced++;
    if (refused) {
      this.stats.busy++;
      const message = formatBusyRetry(refused.busyMs);
      return void this.#refuse(peer, p, ErrorCode.Busy, message).catch(() => {}); // (closed)
    }
  }

  async #onMeta(p: MetaRequest, peer: PeerAddress): Promise<void> {
    const f = await this.#files.open(p.name, true);
    if ("code" in f) return this.#refuse(peer, p, f.code, f.message);
    const d = await this.#files.digest(f, 100);
    if (!d) return this.#refuse(peer, p, ErrorCode.Busy, this.#files.busyMessage(f));
    await this.#send(
      encode(metaReplyOf(p.requestId, { ...d, size: f.size, mtimeMs: f.mtimeMs })),
      peer,
    );
  }

  async #onHashes(p: HashesRequest, peer: PeerAddress): Promise<void> {
    const f = await this.#openFor(p);
    if ("code" in f) return this.#refuse(peer, p, f.code, f.message);
    const d = await this.#files.digest(f, 0);
    if (!d) return this.#refuse(peer, p, ErrorCode.Busy, this.#files.busyMessage(f));
    if (f.fileId !== p.fileId) return this.#refuse(peer, p, ErrorCode.Stale, "file changed");
    const count = hashesReplyCount(p.firstPiece, p.count, d.pieceHashes.length / 32);
    if (count === 0) return this.#refuse(peer, p, ErrorCode.OutOfRange, "no such piece");
    // a crowd's swarm fetchers take the list from each other (PROTOCOL.md §10.7)
    const pieceSize = this.#files.pieceSizeFor(f.size); // (as #onChunk: one ledger per file)
    const served = { fileId: f.fileId, size: f.size, changed: false, pieceSize };
    const wait = this.#core.hashesWait(performance.now(), peer.netAddr, p, served);
    if (wait > 0) return this.#refuse(peer, p, ErrorCode.Busy, formatBusyRetry(wait));
    const hashes = d.pieceHashes.subarray(p.firstPiece * 32, (p.firstPiece + count) * 32);
    await this.#send(
      encode({
        type: "hashes_reply",
        requestId: p.requestId,
        fileId: p.fileId,
        firstPiece: p.firstPiece,
        hashes,
      }),
      peer,
    );
  }

  /** A server holds every piece of what it serves: the short "all of them" answer. */
  async #onHave(p: HaveRequest, peer: PeerAddress): Promise<void> {
    const f = await this.#openFor(p);
    if ("code" in f) return this.#refuse(peer, p, f.code, f.message);
    const d = await this.#files.digest(f, 0);
    if (!d) return this.#refuse(peer, p, ErrorCode.Busy, this.#files.busyMessage(f));
    if (f.fileId !== p.fileId) return this.#refuse(peer, p, ErrorCode.Stale, "file changed");
    await this.#send(encode(completeHaveReply(p, d.pieceHashes.length / 32)), peer);
  }

  /** A plain server knows no peers: an empty list (PROTOCOL.md §10.4). */
  async #onPeers(p: PeersRequest, peer: PeerAddress): Promise<void> {
    const family = peer.netAddr.hostname.includes(":") ? 6 : 4;
    const entries = new Uint8Array(0);
    await this.#send(
      encode({ type: "peers_reply", requestId: p.requestId, fileId: p.fileId, family, entries }),
      peer,
    );
  }

  async #onChunk(p: ChunkRequest, peer: PeerAddress): Promise<void> {
    const f = await this.#openFor(p);
    if ("code" in f) return this.#refuse(peer, p, f.code, f.message);
    if (f.fileId === undefined) this.#files.digest(f, 0); // start it: no metadata request came
    const pieces: ServedPieces = {
      fileId: f.fileId,
      // (marks it changed if it moved since hashed)
      size: f.fileId === undefined ? f.size : this.#files.currentSize(f),
      changed: f.changed,
      busyMessage: f.fileId === undefined ? this.#files.busyMessage(f) : undefined,
      pieceSize: this.#files.pieceSizeFor(f.size),
    };
    const actions = this.#actions;
    actions.length = 0;
    // what still waits for the rate decides whether a swarm fetcher gets a repeat (§10.6)
    const backlogMs = this.#paced?.backlogMs ?? 0;
    this.#core.onChunk(performance.now(), peer.netAddr, p, pieces, actions, backlogMs);
    this.stats.peakTransfers = Math.max(this.stats.peakTransfers, this.#transfers.size);
    for (const a of actions.splice(0)) {
      if (a.kind === "refuse") {
        if (a.tooMany) this.stats.refused++;
        if (a.code === ErrorCode.GivenOut) this.stats.givenOut++;
        await this.#refuse(peer, p, a.code, a.message);
        return;
      }
      const sent = await this.#sendRun(f, a, peer);
      if (sent === "shrank") return this.#refuse(peer, p, ErrorCode.Stale, "file shrank");
      if (sent === "too big") {
        const message = `a ${a.blockSize}-byte block does not fit the path unfragmented`;
        return this.#refuse(peer, p, ErrorCode.TooBig, message);
      }
    }
  }

  /**
   * Sends one run: one file read straight into the run buffer, the run's headers beside it, and
   * one send call (one GSO message per 64 KiB on the batched layer), once its time has come.
   * "shrank" if the file ended first, "too big" if an unfragmented run does not fit the path;
   * a failed send (the client's port is gone) is only counted.
   */
  async #sendRun(
    f: ServedFile,
    a: RunAction,
    peer: PeerAddress,
  ): Promise<"sent" | "shrank" | "too big"> {
    // (replies charged while it waits move its time on: wait again, a bounded while)
    for (let wait = this.#core.sendTime(a) - performance.now(); wait >= 1;) {
      await sleep(wait); // sub-ms debts are carried by the bucket
      if (this.#closed) return "sent"; // (stopping: the file may be closed; nothing to send)
      wait = this.#core.sendTime(a) - performance.now();
    }
    const data = this.#runBuf.subarray(0, a.length);
    if (!this.#files.readAt(f, data, a.offset)) return "shrank";
    const run = chunkRun(a, this.#headers, data);
    const err = await this.#sock.send(peer, run);
    if (err === SEND_TOO_BIG && a.unfragmented) return "too big";
    if (err !== undefined) this.stats.sendErrors++;
    else this.stats.bytesSent += a.length + run.count * CHUNK_REPLY_HEADER_SIZE;
    return "sent";
  }

  async #internal(peer: PeerAddress, p: Request, e: unknown): Promise<void> {
    const msg = e instanceof Error ? e.message : String(e);
    await this.#sendError(peer, p.requestId, ErrorCode.Internal, "server I/O error");
    // the log gets the real error, the client only that there was one
    this.#refusals.request(peer.netAddr, p, ErrorCode.Internal, msg, Date.now());
  }

  /** Sends ERROR `code` for request `p` and logs it (rate-limited per class). */
  #refuse(peer: PeerAddress, p: Request, code: number, message: string): Promise<void> {
    this.#refusals.request(peer.netAddr, p, code, message, Date.now());
    return this.#sendError(peer, p.requestId, code, message);
  }

  #sendError(peer: PeerAddress, requestId: number, code: number, message: string): Promise<void> {
    return this.#send(encode({ type: "error", requestId, code, message } as Packet), peer);
  }

  /** Sends `bytes`; `charged`: they count toward `--rate` (replies to proven addresses). */
  async #send(bytes: Uint8Array, peer: PeerAddress, charged = true): Promise<void> {
    if (charged) this.#core.charge(performance.now(), bytes.length);
    const err = await this.#sock.send(peer, single(bytes));
    if (err === undefined) this.stats.bytesSent += bytes.length;
    else this.stats.sendErrors++; // e.g. the client's port is gone: nothing to do about it
  }
}

/** The tracker's numeric address; a name that does not resolve is a warning: serving goes on. */
async function resolveTracker(
  t: ServerSpec,
  log: LogSink,
): Promise<{ hostname: string; port: number; label: string } | undefined> {
  const label = formatServer(t.host, t.port);
  try {
    const { address } = await lookup(t.host);
    return { hostname: address, port: t.port, label };
  } catch (e) {
    const why = (e as { code?: string }).code ?? ioMessage(e);
    log({ level: "warn", event: "tracker", msg: `tracker ${label}: cannot resolve (${why})` });
    return undefined;
  }
}

/** `udpget serve <port> [--root DIR] [--host ADDR]`: serves until SIGINT/SIGTERM. */
export async function runServe(args: string[]): Promise<number> {
  const a = parseServeArgs(args);
  try {
    const info = await Deno.stat(a.root);
    if (!info.isDirectory) {
      throw new UdpgetError(ExitCode.Usage, `--root ${a.root}: not a directory`);
    }
  } catch (e) {
    if (e instanceof UdpgetError) throw e;
    throw new UdpgetError(ExitCode.Usage, `--root ${a.root}: ${ioMessage(e)}`);
  }
  const key = a.secretFile === undefined ? undefined : await readKeyFile(a.secretFile);
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  for (const s of signals) Deno.addSignalListener(s, onSignal);
  const sink = lineSink(a.logFormat, (line) => console.log(line));
  // the listening line comes first (the README promises it): what is said before it waits
  const early: LogEvent[] = [];
  let listening = false;
  const log: LogSink = (e) => listening ? sink(e) : early.push(e);
  const cacheDir = serveCacheDir(a, log);
  const tracker = a.tracker && await resolveTracker(a.tracker, log);
  try {
    const tftp = await startTftpForServe(a, (line) => log(info("tftp", line)), stop.signal);
    let layer = "";
    const stats = await serve({
      ...a,
      tracker,
      key,
      log,
      cacheDir,
      signal: stop.signal,
      onSocket: (sock) => layer = describeSocket(sock, batchedUnavailable(a.io)),
      onListening: (addr) => {
        const line = `udpget: serving ${resolve(a.root)} on udp ` +
          formatServer(addr.hostname, addr.port) + (key ? " (authenticated requests only)" : "") +
          ` (datagram I/O: ${layer})`;
        // the text format keeps its historical first line, without a timestamp
        if (a.logFormat === "text") console.log(line);
        else {
          sink(info("listening", line, {
            root: resolve(a.root),
            host: addr.hostname,
            port: addr.port,
            authenticated: key !== undefined,
            io: layer,
          }));
        }
        if (tftp) console.log(tftpListeningLine(tftp));
        listening = true;
        for (const e of early.splice(0)) sink(e);
      },
    }).catch((e) => {
      // a batched layer demanded where it cannot be had is a usage error, like a bad flag
      const code = a.io === "ffi" && /--io ffi/.test(e.message) ? ExitCode.Usage : ExitCode.LocalIo;
      throw new UdpgetError(code, `cannot listen on ${a.host}:${a.port}: ${ioMessage(e)}`);
    });
    log(info(
      "stopped",
      `stopped: ${stats.requests} requests, ${stats.bytesSent} bytes sent, ` +
        `${stats.malformed} malformed datagrams dropped`,
      {
        requests: stats.requests,
        bytes_sent: stats.bytesSent,
        malformed: stats.malformed,
        given_out: stats.givenOut,
        coalesced: stats.coalesced,
        busy: stats.busy,
      },
    ));
    if (tftp) log(info("tftp_stopped", describeTftpStats(await tftp.done)));
    return ExitCode.Ok;
  } finally {
    for (const e of early.splice(0)) sink(e); // never listened: still said, before the error
    stop.abort(); // stops the TFTP side too when serve() failed
    for (const s of signals) Deno.removeSignalListener(s, onSignal);
  }
}

/**
 * The digest cache directory for `serve`: `--cache-dir`, else the default under
 * $XDG_CACHE_HOME or $HOME; undefined with `--no-cache`, or (after one warning) when the
 * environment cannot be read or names no home.
 */
function serveCacheDir(
  a: { cacheDir?: string; noCache: boolean },
  log: LogSink,
): string | undefined {
  if (a.noCache) return undefined;
  if (a.cacheDir !== undefined) return a.cacheDir;
  let dir: string | undefined;
  try {
    dir = defaultCacheDir((name) => Deno.env.get(name));
  } catch {
    log({
      level: "warn",
      event: "cache_disabled",
      msg: "digest cache disabled: cannot read HOME or XDG_CACHE_HOME " +
        "(run with --allow-env, or give --cache-dir)",
    });
    return undefined;
  }
  if (dir === undefined) {
    log({
      level: "warn",
      event: "cache_disabled",
      msg: "digest cache disabled: neither XDG_CACHE_HOME nor HOME is set (give --cache-dir)",
    });
  }
  return dir;
}
