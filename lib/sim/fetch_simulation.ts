/**
 * A deterministic, in-process network simulation of one fetch: the real engine against
 * simulated servers, each behind its own simulated path (rate, delay, queue with tail drop,
 * loss, reordering, outages, fragmentation). Simulated time only: a 256 MiB transfer over
 * 50 ms paths runs in a few seconds of CPU, and the same seed replays the same run.
 *
 * Two entry points: `simulateFetch` drives the transfer alone (`FetchSession`, the metadata
 * given), `simulateWholeFetch` the whole fetch from a file name (`FetchCoordinator`: discovery,
 * the block-size probe, the hash list, the transfer, the trust rules) against servers that
 * answer metadata, hash and chunk requests as `udpget serve` does.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import type { UdpgetError } from "../base/exit.ts";
import { FetchSession } from "../engine/fetch_session.ts";
import type { SourceStats } from "../engine/fetch_session.ts";
import type { CongestionController } from "../engine/congestion/controller.ts";
import type { FileMeta } from "../engine/consensus.ts";
import type { CoordinatorAction, FetchPhase, ServerOutcome } from "../engine/fetch_actions.ts";
import { FetchCoordinator } from "../engine/fetch_coordinator.ts";
import {
  type ChunkRequest,
  ErrorCode,
  fileIdOf,
  type HashesRequest,
  MAX_BLOCK_SIZE,
  META_REPLY_SIZE,
  type MetaRequest,
  type Packet,
  TOKEN_PROBE_NAME,
} from "../wire/packet.ts";
import { EventQueue, Wakeup } from "./event_queue.ts";
import { IP_UDP_HEADER, Link, type LinkSpec } from "./link.ts";
import {
  type RunAction,
  type ServeAction,
  ServeCore,
  type ServedPieces,
} from "../serving/serve_core.ts";
import { hashesReplyCount } from "../serving/serve_policy.ts";
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
  /** Seeds the file's bytes, the paths' losses and the request ids: the run replays. */
  seed: number;
  /** File size in bytes. */
  size: number;
  /** Piece size (the unit of verification). */
  pieceSize: number;
  /** Data bytes per datagram. */
  blockSize: number;
  /** The servers and their paths. */
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
  /** Every piece verified. */
  finished: boolean;
  /** Why the session failed, if it did. */
  failure?: string;
  /** Simulated time from start to the last piece verified (ms). */
  simMs: number;
  /** Every byte of the output equals the source. */
  correct: boolean;
  /** Bytes declared lost and asked for again. */
  rerequested: number;
  /** Per source (server) figures. */
  sources: SourceStats[];
  /** Events the simulation processed (a measure of its CPU cost). */
  events: number;
  /** Datagrams dropped by each server's downlink: random loss and queue overflow. */
  downLoss: number[];
  /** Of those, by queue overflow (tail drop). */
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

/**
 * The servers' side of a simulation: each server's two links and its serve core (duplicate
 * copies ignored, ranges checked, `--rate` paced); a chunk request is answered with the runs
 * the core decides, each entering the downlink block by block at the time it may leave.
 */
class SimServers {
  readonly downs: Link[];
  readonly ups: Link[];
  readonly cores: ServeCore[];
  #actions: ServeAction[] = [];
  #peer: Deno.NetAddr = { transport: "udp", hostname: "192.0.2.1", port: 9 };

  constructor(
    readonly servers: readonly SimServer[],
    readonly clock: EventQueue,
    readonly random: () => number,
    /** A datagram reaches the client. */
    readonly deliver: (server: number, p: Packet) => void,
  ) {
    this.downs = servers.map((s) => new Link(s.down, clock, random));
    this.ups = servers.map((s) => new Link(s.up, clock, random));
    this.cores = servers.map((s) =>
      new ServeCore({ rate: s.serverRateBps === undefined ? undefined : s.serverRateBps / 8 }, 0)
    );
  }

  /** Whether `p` is a copy of a request `server` answered lately (it is ignored then). */
  isDuplicate(server: number, p: MetaRequest | HashesRequest | ChunkRequest): boolean {
    return this.cores[server].isDuplicate(this.clock.now, p, this.#peer.hostname, this.#peer.port);
  }

  /** `server` sends `p` (of `bytes` on the wire) down its link. */
  reply(server: number, bytes: number, p: Packet): void {
    this.downs[server].send(bytes, () => this.deliver(server, p));
  }

  /** `server` answers the chunk request `p` for `served`, whose bytes are `file`. */
  chunk(server: number, p: ChunkRequest, served: ServedPieces, file: Uint8Array): void {
    const actions = this.#actions;
    actions.length = 0;
    this.cores[server].onChunk(this.clock.now, this.#peer, p, served, actions);
    for (const a of actions) {
      if (a.kind === "refuse") {
        this.#refuse(server, a.requestId, a.code, a.message);
        continue;
      }
      const send = () => this.#sendRun(server, a, file);
      if (a.at <= this.clock.now) send();
      else this.clock.at(a.at, send);
    }
  }

  /** An ERROR answering request `requestId`. */
  refuse(server: number, requestId: number, code: number, message: string): void {
    this.#refuse(server, requestId, code, message);
  }

  #refuse(server: number, requestId: number, code: number, message: string): void {
    const error: Packet = { type: "error", requestId, code, message };
    this.reply(server, REPLY_HEADER, error);
  }

  #sendRun(server: number, a: RunAction, file: Uint8Array): void {
    const spec = this.servers[server];
    for (let off = a.offset; off < a.offset + a.length; off += a.blockSize) {
      const n = Math.min(a.blockSize, a.offset + a.length - off);
      let data = file.subarray(off, off + n);
      if (spec.corrupt && this.random() < spec.corrupt) {
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
      this.reply(server, REPLY_HEADER + n, reply);
    }
  }
}

/** Runs one simulated transfer to its end (or `maxSimMs`), the metadata given. */
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
  let finishedAt = -1;
  let failure: string | undefined;
  const timer = new Wakeup(clock, () => {
    session.handleTimeout(clock.now);
    pump();
  });

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
  const net = new SimServers(sc.servers, clock, random, onReply);
  const served: ServedPieces = { fileId, size: sc.size, changed: false };
  const serve = (source: number, p: Packet) => {
    if (p.type !== "chunk_request") return;
    if (net.isDuplicate(source, p)) return;
    net.chunk(source, p, served, file);
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
        net.ups[source].send(REQUEST_BYTES, () => serve(source, packet));
      }
    }
    for (let e = session.poll(); e; e = session.poll()) {
      if (e.kind === "verify") verify(e.piece);
      else if (e.kind === "finished") finishedAt = clock.now;
      else if (e.kind === "failed") failure = e.reason;
    }
    timer.arm(session.pollTimeout(clock.now));
  };

  sc.servers.forEach((s, i) => session.addSource(i, 0, { rttMs: 2 * s.down.delayMs }));
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
    downLoss: net.downs.map((d) => d.stats.lost),
    downQueueDrops: net.downs.map((d) => d.stats.queueDrops),
  };
}

// ---------------------------------------------------------------------------------------
// The whole fetch

/** A server of a whole-fetch simulation: a path, and what it holds and how it answers. */
export interface WholeSimServer extends SimServer {
  /** It holds another version of the file: its bytes made from this seed. */
  versionSeed?: number;
  /** It does not have the file (NOT_FOUND). */
  missing?: boolean;
  /**
   * It validates addresses (PROTOCOL.md §7.1; default true): the token probe gets a RETRY, and
   * hash and chunk requests without its token get one too.
   */
  validates?: boolean;
  /** It refuses every hash request (INTERNAL), so no piece hashes can be had from it. */
  noHashes?: boolean;
  /** It is still hashing the file for this many ms from the start: until then, BUSY. */
  hashingMs?: number;
}

/** A whole fetch, from the file name to its verified bytes. */
export interface WholeFetchScenario {
  /** Seeds the file's bytes, the paths' losses and the request ids: the run replays. */
  seed: number;
  /** File size in bytes. */
  size: number;
  /** Piece size the servers hash with. */
  pieceSize: number;
  /** The servers, their paths, and what they hold. */
  servers: WholeSimServer[];
  /** `--block-size` (default `auto`: probed; the servers' paths are not loopback). */
  blockSize?: number | "auto";
  /** `--verify` (default `pieces`). */
  verify?: "pieces" | "full";
  /** `--checksum`: the trusted digest. */
  checksum?: Uint8Array;
  /** Receive sockets per server (default 1). */
  lanes?: number;
  /** What each receive socket buffers (default 8 MiB). */
  receiveBuffer?: number;
  /** Client-side cap (`--limit`), bytes per second. */
  limitBytesPerSec?: number;
  /** Give up after this much simulated time (ms). */
  maxSimMs?: number;
}

/** What became of a whole fetch. */
export interface WholeFetchOutcome {
  /** The file is complete and verified. */
  finished: boolean;
  /** The error that ended it (its exit code and one-line message). */
  error?: UdpgetError;
  /** Simulated time from the start to the end (ms). */
  simMs: number;
  /** Every byte of the output equals the version the scenario's seed makes. */
  correct: boolean;
  /** The block size chosen. */
  blockSize?: number;
  /** How the bytes were vouched for: each piece, or the whole file. */
  verification?: "pieces" | "full";
  /** The lines the user would have read. */
  notices: string[];
  /** What became of each server (`unknown`: not said), with its reason. */
  servers: { status: ServerOutcome | "unknown"; reason: string | null }[];
  /** Per source of the transfer: the server behind it and its figures. */
  sources: (SourceStats & { server: number })[];
  /** The phases the fetch went through, in order. */
  phases: FetchPhase[];
  /** Bytes asked for again after loss. */
  rerequested: number;
  /** Time spent waiting for servers to hash the file (they answered BUSY), ms. */
  hashWaitMs: number;
}

/** One version of a file as a server holds it: its bytes, digests and agreed metadata. */
export interface SimVersion {
  /** Its bytes. */
  file: Uint8Array;
  /** What a META_REPLY says about it. */
  meta: FileMeta;
  /** SHA-256 of each piece, concatenated (what HASHES_REPLY carries). */
  pieceHashes: Uint8Array;
  /** Its identity in requests. */
  fileId: bigint;
}

/** SHA-256 of some bytes. */
function sha256(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update(bytes).digest());
}

/** The version of a `size`-byte file made from `seed`, hashed as `udpget serve` hashes it. */
export function simVersion(size: number, pieceSize: number, seed: number): SimVersion {
  const file = simFile(size, seed);
  const pieces = Math.ceil(size / pieceSize);
  const pieceHashes = new Uint8Array(pieces * 32);
  for (let i = 0; i < pieces; i++) {
    pieceHashes.set(sha256(file.subarray(i * pieceSize, (i + 1) * pieceSize)), i * 32);
  }
  const digest = sha256(file);
  const meta: FileMeta = {
    size,
    pieceSize,
    maxBlock: MAX_BLOCK_SIZE,
    mtimeMs: 0,
    digest,
    piecesRoot: sha256(pieceHashes),
  };
  return { file, meta, pieceHashes, fileId: fileIdOf(digest) };
}

/** Name of the file every simulated server serves. */
const SIM_NAME = "sim.bin";
/** Bytes of a HASHES_REPLY besides its hashes. */
const HASHES_REPLY_HEADER = 24;

/**
 * Runs one whole fetch of "sim.bin" (or to `maxSimMs`) through the real `FetchCoordinator`:
 * nothing is known at the start but the servers; the client does what `client.ts` does with
 * the coordinator's actions (a `.part` in memory, pieces checked against the hashes it trusts).
 */
export function simulateWholeFetch(sc: WholeFetchScenario): WholeFetchOutcome {
  const clock = new EventQueue();
  const random = seededRandom(sc.seed);
  const pieceSize = sc.pieceSize;
  const versions = new Map<number, SimVersion>();
  const versionOf = (seed: number) => {
    let v = versions.get(seed);
    if (!v) versions.set(seed, v = simVersion(sc.size, pieceSize, seed));
    return v;
  };
  const held = sc.servers.map((s) => versionOf(s.versionSeed ?? sc.seed));
  const want = versionOf(sc.seed);
  const tokens = sc.servers.map((_, i) => new Uint8Array(16).fill(i + 1));
  const out = new Uint8Array(sc.size);
  const notices: string[] = [];
  const phases: FetchPhase[] = [];
  const statuses: WholeFetchOutcome["servers"] = sc.servers.map(() => ({
    status: "unknown",
    reason: null,
  }));
  const coordinator = new FetchCoordinator({
    servers: sc.servers.map((_, i) => ({
      label: `192.0.2.${i + 1}:9000`,
      hostname: `192.0.2.${i + 1}`,
      family: "ipv4",
    })),
    lanes: sc.lanes ?? 1,
    receiveBuffer: sc.receiveBuffer ?? 8 << 20,
    blockSize: sc.blockSize ?? "auto",
    limitBytesPerSec: sc.limitBytesPerSec,
    verify: sc.verify ?? "pieces",
    checksum: sc.checksum,
    keyed: false,
    nextRequestId: () => Math.floor(random() * 0x100000000),
    sha256,
  });
  let verifier: { hashes?: Uint8Array; whole: boolean } | undefined;
  let endedAt = -1;
  let error: UdpgetError | undefined;
  const timer = new Wakeup(clock, () => {
    coordinator.handleTimeout(clock.now);
    pump();
  });

  const net = new SimServers(sc.servers, clock, random, (server, p) => {
    const w = coordinator.handleDatagram(clock.now, server, p);
    if (w) out.set(w.data, w.offset);
    pump();
  });

  /** What `udpget serve` answers (the gate, then the file's state), down the server's link. */
  const serve = (server: number, p: Packet) => {
    if (p.type !== "meta_request" && p.type !== "hashes_request" && p.type !== "chunk_request") {
      return;
    }
    const spec = sc.servers[server];
    const v = held[server];
    const unproven = (spec.validates ?? true) && !sameBytes(p.token, tokens[server]);
    const probe = p.type === "meta_request" && p.name === TOKEN_PROBE_NAME;
    // a metadata request is answered before the address is proven (its answer is small)
    if (unproven && (p.type !== "meta_request" || probe)) {
      return net.reply(server, 26, {
        type: "retry",
        requestId: p.requestId,
        token: tokens[server],
      });
    }
    if (net.isDuplicate(server, p)) return;
    const missing = spec.missing || p.name !== SIM_NAME;
    if (missing) return net.refuse(server, p.requestId, ErrorCode.NotFound, "no such file");
    if (clock.now < (spec.hashingMs ?? 0)) {
      const done = Math.floor(sc.size * clock.now / spec.hashingMs!);
      return net.refuse(server, p.requestId, ErrorCode.Busy, `hashing ${done}/${sc.size}`);
    }
    if (p.type === "meta_request") {
      const m = v.meta;
      return net.reply(server, META_REPLY_SIZE, {
        type: "meta_reply",
        requestId: p.requestId,
        size: m.size,
        mtimeMs: m.mtimeMs,
        pieceSize: m.pieceSize,
        maxBlock: m.maxBlock,
        digest: m.digest,
        piecesRoot: m.piecesRoot,
      });
    }
    if (p.fileId !== v.fileId) return net.refuse(server, p.requestId, ErrorCode.Stale, "changed");
    if (p.type === "hashes_request") {
      if (spec.noHashes) return net.refuse(server, p.requestId, ErrorCode.Internal, "no hashes");
      const count = hashesReplyCount(p.firstPiece, p.count, v.pieceHashes.length / 32);
      if (count === 0) return net.refuse(server, p.requestId, ErrorCode.OutOfRange, "no piece");
      const hashes = v.pieceHashes.subarray(p.firstPiece * 32, (p.firstPiece + count) * 32);
      return net.reply(server, HASHES_REPLY_HEADER + hashes.length, {
        type: "hashes_reply",
        requestId: p.requestId,
        fileId: p.fileId,
        firstPiece: p.firstPiece,
        hashes,
      });
    }
    // an unfragmented probe larger than the server's link: TOO_BIG, as a server whose own
    // interface is that small answers it (PROTOCOL.md §7.4)
    if (p.unfragmented && p.blockSize + IP_UDP_HEADER > (spec.down.mtu ?? 1500)) {
      return net.refuse(server, p.requestId, ErrorCode.TooBig, "does not fit unfragmented");
    }
    net.chunk(server, p, { fileId: v.fileId, size: v.meta.size, changed: false }, v.file);
  };

  const verify = (piece: number): boolean => {
    const start = piece * pieceSize;
    const bytes = out.subarray(start, Math.min(sc.size, start + pieceSize));
    const hashes = verifier!.hashes;
    // without piece hashes every piece passes, and the whole-file digest judges (as the worker)
    if (hashes === undefined) return true;
    return sameBytes(sha256(bytes), hashes.subarray(piece * 32, piece * 32 + 32));
  };

  const act = (a: CoordinatorAction) => {
    switch (a.kind) {
      case "phase":
        return void phases.push(a.phase);
      case "notice":
        return void notices.push(a.line);
      case "server":
        statuses[a.server] = { status: a.status, reason: a.reason };
        return;
      case "check_output":
        return coordinator.handleOutputReady(clock.now);
      case "open_part":
        return coordinator.handlePartReady(clock.now, { claimed: [], ring: 0, output: SIM_NAME });
      case "open_verifier":
        verifier = { hashes: a.hashes, whole: a.whole };
        return;
      case "verify":
        return coordinator.handleVerified(a.piece, verify(a.piece));
      case "digest":
        return coordinator.handleDigest(verifier!.whole ? sha256(out) : undefined);
      case "finished":
        endedAt = clock.now;
        return;
      case "failed":
        endedAt = clock.now;
        error = a.error;
        return;
    }
  };

  const pump = () => {
    for (let busy = true; busy;) {
      busy = false;
      for (
        let t = coordinator.pollTransmit(clock.now);
        t;
        t = coordinator.pollTransmit(clock.now)
      ) {
        busy = true;
        const { server, packet } = t;
        for (let c = 0; c < t.copies; c++) {
          net.ups[server].send(REQUEST_BYTES, () => serve(server, packet));
        }
      }
      for (let a = coordinator.poll(); a; a = coordinator.poll()) {
        busy = true;
        act(a);
      }
    }
    timer.arm(coordinator.pollTimeout(clock.now));
  };

  coordinator.start(0, SIM_NAME);
  pump();
  clock.run(sc.maxSimMs ?? 3_600_000, () => endedAt >= 0);
  const finished = coordinator.phase === "finished";
  const session = coordinator.session;
  return {
    finished,
    error,
    simMs: endedAt >= 0 ? endedAt : clock.now,
    correct: finished && Buffer.compare(out, want.file) === 0,
    blockSize: coordinator.blockSize,
    verification: coordinator.verification,
    notices,
    servers: statuses,
    sources: (session?.stats() ?? []).map((st) => ({
      ...st,
      server: coordinator.serverOf(st.source),
    })),
    phases,
    rerequested: session?.rerequested ?? 0,
    hashWaitMs: coordinator.hashWaitMs,
  };
}

/** Whether two byte strings are equal. */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(a, b) === 0;
}
