/**
 * A deterministic swarm simulation with the product's REAL swarm code in the loop (unlike
 * `swarm_sim.ts`, which drives the policy modules): N fetchers and one server exchange encoded
 * datagrams over simulated links, in simulated time, replayable by seed.
 *
 * Real (the product's own classes, unchanged):
 * - each fetcher: a `FetchCoordinator` (with its `FetchSession`: discovery, hash list, transfer,
 *   congestion control, trust rules), a `SwarmNode` (its `Announcer`, `PeerLink`s, have-maps, the
 *   server filter and GIVEN_OUT handling), its `PeerShare` with `HaveLog`, `RequestGate`,
 *   `CookieJar`, `TransferLog` and a `ServeCore` paced at the share rate;
 * - the server: `RequestGate` (address-validation cookies), `ServeCore` with `--rate`, a
 *   `TransferLog` and `FirstCopyLedgers` (GIVEN_OUT, PROTOCOL.md §10.6);
 * - the tracker: the real BEP 15 `TrackerCore` (connection ids, swarm table, peer choice);
 * - every request, control message, error, RETRY and tracker message is encoded and decoded with
 *   the real wire code; data blocks are handed over as the receive hot path reads them (a
 *   `ChunkReplyHeader` plus the bytes).
 *
 * Modelled (the shells' glue, re-done here because the real shells own sockets, files and clocks):
 * - the client's drive loop (`client.ts` `FetchDrive.#drive`/`#act`/`#swarmTurn`) and the
 *   swarm's wiring (`lib/io/swarm_drive.ts`: `SwarmDrive.start`, `service`, `listen`,
 *   `sendToPeer`, the queue of runs): a turn runs the coordinator's timers, the node's service,
 *   sends and actions, then sleeps until the next timer (at most 1 s) or a wake-up (a datagram);
 * - the server shell (`server.ts`): requests answered at once except chunk requests under
 *   `--rate`, which wait in the real `PacedQueue` (copies covered by a waiting request are left
 *   to it) and are served one after the other, each run sent when its time comes;
 * - verification is instantaneous (SHA-256 of the piece against the trusted hashes), and so are
 *   the `.part` (an in-memory buffer per fetcher) and the digest step;
 * - the network: each node has one uplink (`Link`: a rate, a FIFO queue, a one-way delay drawn
 *   per node), no loss unless `loss` is set; downlinks are unlimited. The share rate and the
 *   server's `--rate` are the
 *   caps the lower bound uses; the links carry 5 % more, for headers;
 * - randomness (request ids, peer ids, cookie secrets, piece orders, tracker choices, the
 *   ledger's hints) comes from seeded generators, and the wall clock from the simulated one.
 *
 * A fetcher that leaves (`leaveMs`) vanishes as a killed process does: no `stopped` announce,
 * datagrams to it are lost.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { FetchCoordinator, PEER_SOURCE_BASE } from "../../engine/fetch_coordinator.ts";
import type { CoordinatorAction } from "../../engine/fetch_actions.ts";
import type { FileMeta } from "../../engine/consensus.ts";
import {
  CHUNK_REPLY_HEADER_SIZE,
  type ChunkReplyHeader,
  decode,
  encode,
  ErrorCode,
  fileIdOf,
  metaReplyOf,
  type Packet,
} from "../../wire/packet.ts";
import { CookieJar } from "../../wire/cookie.ts";
import { RequestGate } from "../../serving/request_gate.ts";
import { type RunAction, ServeCore, type ServedPieces } from "../../serving/serve_core.ts";
import { TransferLog } from "../../serving/transfer_log.ts";
import { FirstCopyLedgers } from "../../serving/first_copy_ledger.ts";
import { PacedQueue } from "../../serving/paced_queue.ts";
import { formatBusyRetry } from "../../wire/busy_retry.ts";
import { hashesReplyCount } from "../../serving/serve_policy.ts";
import { completeHaveReply, HaveLog } from "../../swarm/have_log.ts";
import { PeerShare, shareCoreOptions } from "../../swarm/peer_share.ts";
import { ShareOutbox } from "../../swarm/share_outbox.ts";
import { type PeerAddr, SwarmNode } from "../../swarm/swarm_node.ts";
import { swarmId } from "../../swarm/swarm_id.ts";
import { TrackerCore } from "../../tracker/tracker_core.ts";
import { EventQueue, Wakeup } from "../event_queue.ts";
import { IP_UDP_HEADER, Link } from "../link.ts";
import { seededRandom } from "../prng.ts";
import { type SimVersion, simVersion } from "../fetch_simulation.ts";

/** One fetcher of a {@link RealSwarmScenario}. */
export interface RealSwarmFetcher {
  /** Starts fetching at this simulated time, ms (default 0). */
  arriveMs?: number;
  /** Vanishes at this time, ms, done or not (a killed process); default: stays and seeds. */
  leaveMs?: number;
  /** Its upload (`--share-rate`), bytes per second (default the scenario's `peerUpBytesPerSec`). */
  upBytesPerSec?: number;
  /**
   * A liar: every block it sends a peer has its bytes inverted (the headers are right, so the
   * bytes land and only the piece hash can tell). It fetches honestly itself.
   */
  lies?: boolean;
}

/** A swarm of real fetchers around one real server and a real tracker. */
export interface RealSwarmScenario {
  /** Seeds the file, every node's randomness and the delays: the same seed replays the run. */
  seed: number;
  /** File size, bytes. */
  fileBytes: number;
  /** Piece size the server hashes with, bytes. */
  pieceBytes: number;
  /** `--block-size` of every fetcher (default 32 KiB); `auto` runs the real probe. */
  blockSize?: number | "auto";
  /** The server's `--rate`, bytes per second. */
  serverUpBytesPerSec: number;
  /** Default upload of a fetcher (`--share-rate`), bytes per second. */
  peerUpBytesPerSec: number;
  /** The fetchers. */
  fetchers: RealSwarmFetcher[];
  /** Each node's one-way delay is drawn uniformly in [minDelayMs, maxDelayMs] (default 1–5). */
  minDelayMs?: number;
  /** See `minDelayMs`. */
  maxDelayMs?: number;
  /** Fraction of IP packets every uplink loses (a datagram is lost with any of its fragments). */
  loss?: number;
  /** Gives up at this simulated time, ms (default 120 000). */
  maxSimMs?: number;
  /** Called as the run goes (`bench/swarm_trace.ts` draws timelines from it); none by default. */
  trace?: RealSwarmTrace;
}

/** Hooks into a run, for timelines: they see the run and change nothing in it. */
export interface RealSwarmTrace {
  /** Fetcher `index` verified `piece` at `ms`. */
  verified?(index: number, piece: number, ms: number): void;
  /**
   * Every `sampleMs` of simulated time: the bytes each fetcher's uplink (then the server's, last)
   * has carried so far.
   */
  sample?(ms: number, uplinkBytes: number[]): void;
  /** Fetcher `index` reached a step of its start at `ms`: its metadata, its piece hashes. */
  milestone?(index: number, step: "meta" | "hashes", ms: number): void;
  /** Fetcher `index` sent a datagram other than a block (its bytes, as encoded). */
  datagram?(index: number, bytes: Uint8Array, ms: number): void;
  /** The sampling period of `sample`, ms (default 10). */
  sampleMs?: number;
}

/** What became of one fetcher. */
export interface RealFetcherOutcome {
  /** When it started, ms. */
  arriveMs: number;
  /** When its file was complete and verified (simulated ms since time 0); NaN if never. */
  doneMs: number;
  /** When it vanished, ms; NaN if it stayed. */
  leftMs: number;
  /** New data bytes it took from the server. */
  fromServer: number;
  /** New data bytes it took from peers. */
  fromPeers: number;
  /** Data bytes it sent to peers. */
  uploaded: number;
  /** Data bytes that reached it from the server but were not new (copies, late answers). */
  serverWaste: number;
  /** Data bytes that reached it from peers but were not new. */
  peerWaste: number;
  /** Bytes its transfer declared lost and asked for again. */
  rerequested: number;
  /** Of those, bytes declared lost on the server's path. */
  lostFromServer: number;
  /** Of those, bytes declared lost on peers' paths. */
  lostFromPeers: number;
  /** Its output equals the file (false while unfinished). */
  correct: boolean;
  /** Pieces that failed their hash when it verified them (a liar's bytes among them). */
  badPieces: number;
  /** Peers its node met. */
  peersMet: number;
  /** The error that ended its fetch, if one did. */
  error?: string;
  /** The lines its user would have read (coordinator and node notices). */
  notices: string[];
}

/** What happened in a {@link simulateRealSwarm} run. */
export interface RealSwarmOutcome {
  /** Per fetcher, in the scenario's order. */
  fetchers: RealFetcherOutcome[];
  /** Every fetcher that did not leave first finished. */
  finished: boolean;
  /** Every fetcher that finished holds exactly the file's bytes. */
  allCorrect: boolean;
  /** The last finish among fetchers that did not leave (ms); NaN if one did not finish. */
  lastDoneMs: number;
  /** The lower bound of the last finish ({@link realSwarmBoundMs}), ms. */
  boundMs: number;
  /** lastDoneMs ÷ boundMs. */
  ratio: number;
  /** Data bytes the server sent (its upload, headers excluded). */
  serverUploaded: number;
  /** serverUploaded ÷ file size. */
  serverShare: number;
  /** GIVEN_OUT answers the server sent. */
  serverGivenOut: number;
  /** Chunk requests the server's paced queue left to a waiting one that covered them. */
  serverCoalesced: number;
  /** Swarm chunk requests the server answered BUSY with a retry time (its queue was full). */
  serverBusy: number;
  /** HASHES_REPLYs the server sent (a list of several ranges counts each). */
  serverHashReplies: number;
  /** Swarm HASHES_REQUESTs the server answered BUSY: the list had gone to enough fetchers. */
  serverHashesBusy: number;
  /** Of `serverUploaded`, bytes answering requests without the swarm flag (no ledger). */
  serverPlainBytes: number;
  /** Of `serverUploaded`, bytes the server had sent before (to anyone). */
  serverRepeatBytes: number;
  /** Everything the server's uplink carried (data, headers, replies, refusals), bytes. */
  serverLinkBytes: number;
  /** When the server last sent a byte it had never sent before (its first pass's end), ms. */
  serverFirstPassEndMs: number;
  /** Simulated time at the end, ms. */
  simMs: number;
  /** Events processed (a measure of the run's CPU cost). */
  events: number;
  /** Turns a fetcher's loop took with a timer already due (a real loop would spin on them). */
  dueTurns: number;
}

/** Bytes in a mebibyte. */
export const MiB = 1 << 20;

/**
 * The IPv4 address of fetcher `index`: 10.0.1.1 to 10.0.1.254, then 10.0.2.1 and on (the server
 * and the tracker are 10.0.0.1 and 10.0.0.2). Until session 8 it was 10.0.1.(index + 1): past
 * 255 the octet wrapped in the tracker's 4-byte addresses, so fetchers 255 and on were listed at
 * other fetchers' addresses, and the runs of 500 and 1000 fetchers measured that.
 */
export function simFetcherHost(index: number): string {
  return `10.0.${1 + Math.floor(index / 254)}.${(index % 254) + 1}`;
}

/**
 * The lower bound of the last finish when every fetcher starts at 0 (ms): the server must send
 * the file once, and all fetchers together must receive N copies with the server's and their own
 * upload: max(F / u_s, N·F / (u_s + Σ u_i)).
 */
export function realSwarmBoundMs(sc: RealSwarmScenario): number {
  const f = sc.fileBytes;
  const ups = sc.fetchers.reduce((t, p) => t + (p.upBytesPerSec ?? sc.peerUpBytesPerSec), 0);
  const n = sc.fetchers.length;
  return 1000 * Math.max(f / sc.serverUpBytesPerSec, (n * f) / (sc.serverUpBytesPerSec + ups));
}

/** A flash crowd: `peers` fetchers (default 8) all starting at 0, 8 MiB/s uploads everywhere. */
export function realFlashCrowd(
  o: Partial<RealSwarmScenario> & { peers?: number } = {},
): RealSwarmScenario {
  const { peers = 8, ...rest } = o;
  return {
    seed: 1,
    fileBytes: 16 * MiB,
    pieceBytes: 256 << 10,
    serverUpBytesPerSec: 8 * MiB,
    peerUpBytesPerSec: 8 * MiB,
    fetchers: Array.from({ length: peers }, () => ({})),
    ...rest,
  };
}

// ---------------------------------------------------------------------------------------------

/** The file's name on the server. */
const SIM_NAME = "swarm.bin";
/** Simulated wall clock (cookies, request authentication): this plus the simulated time. */
const EPOCH_MS = 1_750_000_000_000;
/** Headroom of every link over the cap it carries (IP/UDP and fragment headers). */
const LINK_HEADROOM = 1.05;
/** Queue of each uplink, bytes (tail drop beyond; generous: the caps pace the senders). */
const LINK_QUEUE_BYTES = 4 * MiB;
/** The IP MTU of every path. */
const MTU = 1500;
/** `server.ts`'s bound on ledgers (MAX_SEEDED_FILES). */
const MAX_LEDGER_FILES = 64;
/** `client.ts`: the drive loop sleeps at most this long with no timer set (ms). */
const IDLE_TURN_MS = 1000;
/** A turn with a timer already due runs this long after the last (a real turn's own cost, ms). */
const DUE_TURN_MS = 0.01;
/** The swarm's port on every fetcher, and the port its requests to the server leave from. */
const SWARM_PORT = 6881;
const LANE_PORT = 40000;

/** A datagram in flight: encoded bytes, or a CHUNK_REPLY as the hot path reads it. */
type Datagram =
  | { kind: "bytes"; from: PeerAddr; bytes: Uint8Array }
  | { kind: "block"; from: PeerAddr; h: ChunkReplyHeader; data: Uint8Array };

/** Where datagrams go: every simulated socket by address. */
class Net {
  #sockets = new Map<string, (d: Datagram) => void>();

  constructor(readonly clock: EventQueue) {}

  /** Binds `addr` to `receive`. */
  bind(addr: PeerAddr, receive: (d: Datagram) => void): void {
    this.#sockets.set(keyOf(addr), receive);
  }

  /** Closes `addr`: what arrives there is lost. */
  unbind(addr: PeerAddr): void {
    this.#sockets.delete(keyOf(addr));
  }

  /** Sends `d` (of `payload` bytes above IP/UDP) over `link` to `to`. */
  send(link: Link, to: PeerAddr, d: Datagram, payload: number): void {
    const key = keyOf(to);
    link.send(payload, () => this.#sockets.get(key)?.(d));
  }
}

function keyOf(a: PeerAddr): string {
  return `${a.hostname}|${a.port}`;
}

/** One node's path into the network: its one-way delay (ms) and the IP packets it loses. */
interface NodePath {
  delayMs: number;
  loss: number;
}

/** A link capped at `bytesPerSec` (plus headroom) along `path`. */
function uplink(bytesPerSec: number, path: NodePath, clock: EventQueue, random: () => number) {
  const { delayMs, loss } = path;
  return new Link(
    { rateBps: bytesPerSec * 8 * LINK_HEADROOM, delayMs, queueBytes: LINK_QUEUE_BYTES, loss },
    clock,
    random,
  );
}

/** `n` bytes from `random`. */
function randomBytes(n: number, random: () => number): Uint8Array {
  return Uint8Array.from({ length: n }, () => Math.floor(random() * 256));
}

/** SHA-256 of some bytes. */
function sha256(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update(bytes).digest());
}

/** A CHUNK_REPLY header for `a`'s block at `offset` of `length` bytes. */
function blockHeader(requestId: number, fileId: bigint, offset: number, length: number) {
  return {
    requestId,
    fileIdHigh: Number(fileId >> 32n),
    fileIdLow: Number(fileId & 0xffff_ffffn),
    offset,
    dataAt: 0,
    dataLen: length,
  };
}

/** The server's shell (`server.ts`) around the real gate and serve core. */
class SimServer {
  readonly addr: PeerAddr = { hostname: "10.0.0.1", port: 9000 };
  readonly link: Link;
  /** Data bytes sent. */
  uploaded = 0;
  givenOut = 0;
  /** Data bytes sent for requests without the swarm flag. */
  plainBytes = 0;
  /** When the server last sent a byte nobody had been sent before (ms). */
  firstPassEndMs = 0;
  /** Data bytes sent again (their range had gone out before). */
  repeatBytes = 0;
  /** Which KiB of the file went out already (see `#sent`). */
  #sentUnits: Uint8Array | undefined;
  #gate: RequestGate;
  #core: ServeCore;
  #transfers = new TransferLog(() => {});
  #paced: PacedQueue<PeerAddr>;
  /** Swarm requests answered BUSY with a retry time (the paced queue was full). */
  busy = 0;
  /** HASHES_REPLYs sent, and swarm HASHES_REQUESTs answered BUSY (PROTOCOL.md §10.7). */
  hashLists = 0;
  hashesBusy = 0;
  /** Chunk requests not queued because a waiting one of the same client covered them. */
  coalesced = 0;
  /** Runs of the request being served, waiting for their time. */
  #runs: { a: RunAction; to: PeerAddr; swarm: boolean }[] = [];
  #draining = false;

  constructor(
    readonly clock: EventQueue,
    readonly net: Net,
    readonly version: SimVersion,
    readonly rate: number,
    path: NodePath,
    random: () => number,
  ) {
    this.link = uplink(rate, path, clock, random);
    this.#paced = new PacedQueue(rate, undefined, random);
    this.#gate = new RequestGate(new CookieJar(randomBytes(32, random)), undefined, true);
    const firstCopies = new FirstCopyLedgers(MAX_LEDGER_FILES, random);
    this.#core = new ServeCore({ rate, transfers: this.#transfers, firstCopies }, 0);
    net.bind(this.addr, (d) => this.#receive(d));
  }

  #reply(to: PeerAddr, p: Packet): void {
    this.#send(to, encode(p));
  }

  #send(to: PeerAddr, bytes: Uint8Array, charged = true): void {
    if (charged) this.#core.charge(this.clock.now, bytes.length); // (as server.ts)
    this.net.send(this.link, to, { kind: "bytes", from: this.addr, bytes }, bytes.length);
  }

  #refuse(to: PeerAddr, requestId: number, code: number, message: string): void {
    this.#reply(to, { type: "error", requestId, code, message });
  }

  #receive(d: Datagram): void {
    if (d.kind !== "bytes") return;
    const now = this.clock.now;
    const from = d.from;
    const g = this.#gate.admit(d.bytes, from.hostname, EPOCH_MS + now);
    if (g.kind === "drop") return;
    if (g.kind === "answer") return this.#send(from, g.bytes, false);
    const p = g.request;
    if (this.#core.isDuplicate(now, p, from.hostname, from.port)) return;
    const v = this.version;
    switch (p.type) {
      case "meta_request": {
        this.#transfers.noteMeta(from.hostname, p.name);
        if (p.name !== SIM_NAME) return this.#refuse(from, p.requestId, ErrorCode.NotFound, "no");
        return this.#reply(from, metaReplyOf(p.requestId, v.meta));
      }
      case "hashes_request": {
        if (p.fileId !== v.fileId) return this.#refuse(from, p.requestId, ErrorCode.Stale, "?");
        const count = hashesReplyCount(p.firstPiece, p.count, v.pieceHashes.length / 32);
        if (count === 0) return this.#refuse(from, p.requestId, ErrorCode.OutOfRange, "none");
        const served = {
          fileId: v.fileId,
          size: v.meta.size,
          changed: false,
          pieceSize: v.meta.pieceSize,
        };
        const wait = this.#core.hashesWait(now, { transport: "udp", ...from }, p, served);
        if (wait > 0) {
          this.hashesBusy++;
          return this.#refuse(from, p.requestId, ErrorCode.Busy, formatBusyRetry(wait));
        }
        this.hashLists++;
        const hashes = v.pieceHashes.subarray(p.firstPiece * 32, (p.firstPiece + count) * 32);
        return this.#reply(from, {
          type: "hashes_reply",
          requestId: p.requestId,
          fileId: p.fileId,
          firstPiece: p.firstPiece,
          hashes,
        });
      }
      case "have_request":
        return this.#reply(from, completeHaveReply(p, v.pieceHashes.length / 32));
      case "peers_request":
        return this.#reply(from, {
          type: "peers_reply",
          requestId: p.requestId,
          fileId: p.fileId,
          family: 4,
          entries: new Uint8Array(0),
        });
      case "chunk_request": {
        const ahead = this.#core.chargedAheadMs(now); // (as server.ts)
        const refused = this.#paced.push(p, keyOf(from), from, now, ahead);
        if (refused === "covered") this.coalesced++;
        else if (typeof refused === "object") {
          this.busy++;
          return this.#refuse(from, p.requestId, ErrorCode.Busy, formatBusyRetry(refused.busyMs));
        }
        if (refused === undefined && !this.#draining) this.#drain();
        return;
      }
    }
  }

  /** `server.ts`'s paced `DrainLoop`: one request after the other, each run at its time. */
  #drain(): void {
    this.#draining = true;
    for (;;) {
      const now = this.clock.now;
      const next = this.#runs[0];
      if (next) {
        const at = this.#core.sendTime(next.a); // (as server.ts)
        if (at - now >= 1) return void this.clock.at(at, () => this.#drain());
        this.#runs.shift();
        this.#sendRun(next.a, next.to, next.swarm);
        continue;
      }
      const e = this.#paced.shift();
      if (!e) break;
      const q = { p: e.p, from: e.extra };
      const v = this.version;
      const pieces: ServedPieces = {
        fileId: v.fileId,
        size: v.meta.size,
        changed: false,
        pieceSize: v.meta.pieceSize,
      };
      const actions: Parameters<ServeCore["onChunk"]>[4] = [];
      const backlogMs = this.#paced.backlogMs; // (as server.ts)
      this.#core.onChunk(now, { transport: "udp", ...q.from }, q.p, pieces, actions, backlogMs);
      for (const a of actions) {
        if (a.kind === "refuse") {
          if (a.code === ErrorCode.GivenOut) this.givenOut++;
          this.#refuse(q.from, a.requestId, a.code, a.message);
          break;
        }
        this.#runs.push({ a, to: q.from, swarm: q.p.swarm === true });
      }
    }
    this.#draining = false;
  }

  #sendRun(a: RunAction, to: PeerAddr, swarm: boolean): void {
    if (a.unfragmented && a.blockSize + CHUNK_REPLY_HEADER_SIZE + IP_UDP_HEADER > MTU) {
      const message = `a ${a.blockSize}-byte block does not fit the path unfragmented`;
      return this.#refuse(to, a.requestId, ErrorCode.TooBig, message);
    }
    const file = this.version.file;
    for (let off = a.offset; off < a.offset + a.length; off += a.blockSize) {
      const n = Math.min(a.blockSize, a.offset + a.length - off);
      const h = blockHeader(a.requestId, a.fileId, off, n);
      const d: Datagram = { kind: "block", from: this.addr, h, data: file.subarray(off, off + n) };
      this.net.send(this.link, to, d, CHUNK_REPLY_HEADER_SIZE + n);
    }
    this.uploaded += a.length;
    if (!swarm) this.plainBytes += a.length;
    const again = this.#sent(a.offset, a.length);
    this.repeatBytes += again;
    if (again < a.length) this.firstPassEndMs = this.clock.now; // (some of it went out first)
  }

  /** Records `[offset, offset + length)` as sent (in 1 KiB units); the bytes sent before. */
  #sent(offset: number, length: number): number {
    const units = this.#sentUnits ??= new Uint8Array(Math.ceil(this.version.meta.size / 1024));
    let again = 0;
    for (let u = offset >> 10; u < Math.ceil((offset + length) / 1024); u++) {
      if (units[u]) again += Math.min(offset + length, (u + 1) * 1024) - Math.max(offset, u * 1024);
      units[u] = 1;
    }
    return again;
  }
}

/** The tracker's shell (`tracker.ts`) around the real core. */
class SimTracker {
  readonly addr: PeerAddr = { hostname: "10.0.0.2", port: 6969 };
  readonly link: Link;
  #core: TrackerCore;

  constructor(readonly clock: EventQueue, readonly net: Net, random: () => number) {
    this.link = new Link(
      { rateBps: 1e9, delayMs: 1, queueBytes: LINK_QUEUE_BYTES, loss: 0 },
      clock,
      random,
    );
    this.#core = new TrackerCore({ idKey: randomBytes(16, random), random });
    net.bind(this.addr, (d) => {
      if (d.kind !== "bytes") return;
      const address = Uint8Array.from(d.from.hostname.split(".").map(Number));
      const reply = this.#core.handle(d.bytes, { address, port: d.from.port }, clock.now);
      if (!reply) return;
      const bytes = reply.slice(); // (a view the next call reuses)
      net.send(this.link, d.from, { kind: "bytes", from: this.addr, bytes }, bytes.length);
    });
  }
}

/** One fetcher: `client.ts`'s drive loop and `SwarmDrive`'s wiring around the real machines. */
class SimFetcher {
  readonly swarmAddr: PeerAddr;
  readonly laneAddr: PeerAddr;
  readonly link: Link;
  readonly coordinator: FetchCoordinator;
  readonly out: Uint8Array;
  node: SwarmNode | undefined;
  #random: () => number;
  #hashes: Uint8Array | undefined;
  /** Runs waiting for the share rate (the shell's own queue), once the swarm started. */
  #outbox: ShareOutbox<PeerAddr> | undefined;
  /** The loop's next turn (a datagram or a timer). */
  #turns: Wakeup;
  finished = false;
  failed: string | undefined;
  left = false;
  doneMs = NaN;
  leftMs = NaN;
  fromServer = 0;
  fromPeers = 0;
  serverWaste = 0;
  peerWaste = 0;
  uploaded = 0;
  dueTurns = 0;
  badPieces = 0;
  readonly notices: string[] = [];

  constructor(
    readonly index: number,
    readonly clock: EventQueue,
    readonly net: Net,
    readonly server: SimServer,
    readonly tracker: SimTracker,
    readonly version: SimVersion,
    readonly shareRate: number,
    path: NodePath,
    blockSize: number | "auto",
    random: () => number,
    readonly lies = false,
    readonly trace?: RealSwarmTrace,
  ) {
    this.#random = random;
    const host = simFetcherHost(index);
    this.swarmAddr = { hostname: host, port: SWARM_PORT };
    this.laneAddr = { hostname: host, port: LANE_PORT };
    this.#turns = new Wakeup(clock, () => this.#turn());
    this.link = uplink(shareRate, path, clock, random);
    this.out = new Uint8Array(version.meta.size);
    const s = server.addr;
    this.coordinator = new FetchCoordinator({
      servers: [{ label: `${s.hostname}:${s.port}`, hostname: s.hostname, family: "ipv4" }],
      lanes: 1,
      receiveBuffer: 8 * MiB,
      blockSize,
      verify: "pieces",
      keyed: false,
      nextRequestId: () => this.#random32(),
      sha256,
      pieceOrder: (n) => this.#shuffled(n),
    });
  }

  #random32(): number {
    return Math.floor(this.#random() * 0x1_0000_0000);
  }

  /** `client.ts`'s `shuffled`, with seeded numbers. */
  #shuffled(n: number): number[] {
    const order = Array.from({ length: n }, (_, i) => i);
    for (let i = n - 1; i > 0; i--) {
      const j = this.#random32() % (i + 1);
      [order[i], order[j]] = [order[j], order[i]];
    }
    return order;
  }

  /** The fetch starts now. */
  start(): void {
    this.net.bind(this.laneAddr, (d) => this.#fromServer(d));
    this.net.bind(this.swarmAddr, (d) => this.#onSwarmSocket(d));
    this.coordinator.askServersAsSwarm(true); // (as client.ts: flagged from the first request)
    this.coordinator.start(this.clock.now, SIM_NAME);
    this.#turn();
  }

  /** The process is killed now. */
  leave(): void {
    if (this.left) return;
    this.left = true;
    this.leftMs = this.clock.now;
    this.#vanish();
  }

  /** Its sockets close and its loop stops. */
  #vanish(): void {
    this.#turns.cancel();
    this.net.unbind(this.laneAddr);
    this.net.unbind(this.swarmAddr);
  }

  /** Whether it needs nothing more of the simulation. */
  get settled(): boolean {
    return this.finished || this.failed !== undefined || this.left;
  }

  // --- receiving ---------------------------------------------------------------------------

  /** The endpoint's routes: the hot path for blocks, `routeOthers` for the rest. */
  #fromServer(d: Datagram): void {
    const now = this.clock.now;
    const c = this.coordinator;
    if (d.kind === "block") {
      if (c.handleBlock(now, 0, d.h)) {
        this.out.set(d.data, d.h.offset);
        this.fromServer += d.h.dataLen;
      } else this.serverWaste += d.h.dataLen;
    } else {
      const r = decode(d.bytes);
      if (!r.ok) return;
      const w = c.handleDatagram(now, 0, r.packet);
      if (w) {
        this.out.set(w.data, w.offset);
        this.fromServer += w.data.length;
      }
    }
    if (c.wantsService(now)) this.#wake();
  }

  /** `SwarmDrive.listen`: peers' data to the transfer, anything else to the node. */
  #onSwarmSocket(d: Datagram): void {
    const node = this.node;
    if (!node) return; // (not listening yet)
    const now = this.clock.now;
    if (d.kind === "block") {
      const peer = node.peerAt(d.from.hostname, d.from.port);
      if (peer === undefined) return;
      node.heard(peer, now);
      if (this.coordinator.handlePeerBlock(now, peer, d.h)) {
        this.out.set(d.data, d.h.offset);
        this.fromPeers += d.h.dataLen;
      } else this.peerWaste += d.h.dataLen;
      if (this.coordinator.wantsService(now)) this.#wake();
      return;
    }
    node.handleDatagram(now, EPOCH_MS + now, d.bytes, d.from);
    this.#wake();
  }

  // --- the loop ----------------------------------------------------------------------------

  /** A datagram came: the loop turns now. */
  #wake(): void {
    this.#schedule(this.clock.now);
  }

  #schedule(at: number): void {
    if (this.left || this.failed !== undefined) return;
    this.#turns.arm(at);
  }

  /** One turn of `FetchDrive.#drive` (then of `#swarmTurn` once the file is complete). */
  #turn(): void {
    if (this.left || this.failed !== undefined) return;
    const c = this.coordinator;
    let now = this.clock.now;
    if (!this.finished) {
      for (;;) {
        c.handleTimeout(now);
        this.#service(now);
        for (let t = c.pollTransmit(now); t; t = c.pollTransmit(now)) {
          const bytes = encode(t.packet);
          if (t.peer !== undefined) {
            this.#sendToPeer(t.peer, bytes, t.copies);
            continue;
          }
          for (let i = 0; i < t.copies; i++) this.#send(this.laneAddr, this.server.addr, bytes);
        }
        this.#notices();
        let answered = false;
        for (let a = c.poll(); a; a = c.poll()) answered = this.#act(a) || answered;
        if (this.failed !== undefined) return;
        if (!answered || this.finished) break;
      }
    }
    if (this.finished) {
      this.#service(now);
      this.#notices();
    }
    now = this.clock.now;
    const next = Math.min(
      this.finished ? Infinity : c.pollTimeout(now) ?? Infinity,
      this.#pollTimeout() ?? Infinity,
    );
    let wait = next === Infinity ? IDLE_TURN_MS : Math.max(0, next - now);
    if (wait <= 0) {
      this.dueTurns++;
      wait = DUE_TURN_MS;
    }
    this.#schedule(now + wait);
  }

  #notices(): void {
    for (let n = this.node?.poll(); n; n = this.node?.poll()) this.notices.push(n.line);
  }

  /** `FetchDrive.#act`; true when it answered the coordinator (the loop goes on at once). */
  #act(a: CoordinatorAction): boolean {
    const c = this.coordinator;
    const now = this.clock.now;
    switch (a.kind) {
      case "phase":
      case "server":
        return false;
      case "notice":
        this.notices.push(a.line);
        return false;
      case "check_output":
        c.handleOutputReady(now);
        return true;
      case "open_part":
        c.handlePartReady(now, { claimed: [], ring: 0, output: SIM_NAME });
        this.trace?.milestone?.(this.index, "meta", now);
        this.#startSwarm(); // (as client.ts: before the hash list, which peers may give)
        return true;
      case "open_verifier":
        this.#hashes = a.hashes;
        this.trace?.milestone?.(this.index, "hashes", now);
        if (a.hashes && !a.whole) this.node?.hashesTrusted(a.hashes, now);
        else {
          c.askServersAsSwarm(false); // (as client.ts: no swarm, so no swarm flag)
          this.node?.stop(now);
          this.notices.push("sim: no piece hashes: fetching without the swarm");
        }
        return false;
      case "verify": {
        const ok = this.#verify(a.piece);
        if (!ok) this.badPieces++;
        c.handleVerified(a.piece, ok);
        if (ok) {
          this.node?.pieceVerified(a.piece, now);
          this.trace?.verified?.(this.index, a.piece, now);
        }
        return false;
      }
      case "digest":
        c.handleDigest(this.#hashes === undefined ? sha256(this.out) : undefined);
        return true;
      case "finished":
        this.finished = true;
        this.doneMs = now;
        this.node?.completed(now);
        return false;
      case "peer_dropped":
        this.node?.peerDropped(a.peer, a.reason, now);
        return false;
      case "failed":
        this.failed = a.error.message;
        this.#vanish(); // (the process exits)
        return false;
    }
  }

  /** The piece as written, against its trusted hash. */
  #verify(piece: number): boolean {
    const size = this.version.meta.pieceSize;
    const start = piece * size;
    const bytes = this.out.subarray(start, Math.min(this.out.length, start + size));
    const hashes = this.#hashes;
    if (hashes === undefined) return true; // (the digest judges)
    return Buffer.compare(sha256(bytes), hashes.subarray(piece * 32, piece * 32 + 32)) === 0;
  }

  // --- the swarm (SwarmDrive) --------------------------------------------------------------

  /** `SwarmDrive.start`, with seeded randomness instead of `crypto`. */
  #startSwarm(): void {
    if (this.node) return;
    const now = this.clock.now;
    const c = this.coordinator;
    const meta: FileMeta = c.meta!;
    const pieces = Math.ceil(meta.size / meta.pieceSize);
    const fileId = fileIdOf(meta.digest);
    const have = new HaveLog(pieces);
    const random = () => this.#random32();
    const cookies = new CookieJar(randomBytes(32, this.#random));
    const core = new ServeCore(shareCoreOptions(this.shareRate, this.#random), now);
    this.#outbox = new ShareOutbox(core);
    const ref: { node?: SwarmNode } = {};
    const share = new PeerShare(
      { ...meta, fileId, pieceHashes: new Uint8Array(0) },
      have,
      new RequestGate(cookies, undefined),
      core,
      (asker) => ref.node!.peerList(asker),
      () => c.serverPieces(),
    );
    const t = this.tracker.addr;
    const node = new SwarmNode(
      {
        pieces,
        fileId,
        tracker: t,
        trackerLabel: `${t.hostname}:${t.port}`,
        nextRequestId: random,
        servers: [this.server.addr],
        announce: {
          infoHash: swarmId(meta),
          peerId: randomBytes(20, this.#random),
          key: random(),
          port: SWARM_PORT,
          family: "ipv4",
          numWant: 50,
          random,
        },
      },
      c,
      share,
      have,
      now,
    );
    ref.node = node;
    c.setServerFilter(node.serverMayServe);
    this.node = node;
  }

  /** `SwarmDrive.service`. */
  #service(now: number): void {
    const node = this.node;
    if (!node) return;
    const c = this.coordinator;
    const session = c.session;
    if (session) {
      const left = Math.max(0, (c.meta?.size ?? 0) - session.received - c.resumed);
      node.setProgress({ downloaded: session.received, left, uploaded: this.uploaded });
    }
    node.handleTimeout(now);
    for (let s = node.pollSend(now); s; s = node.pollSend(now)) {
      if (s.kind === "datagram") this.#sendFromSwarm(now, s.to, s.bytes);
      else this.#outbox!.push(s.to, s.run);
    }
    this.#sendRuns(now);
  }

  /** `SwarmDrive.sendToPeer`. */
  #sendToPeer(peer: number, bytes: Uint8Array, copies: number): void {
    const addr = this.node?.addressOf(peer);
    if (!addr) return;
    const now = this.clock.now;
    for (let i = 0; i < copies; i++) this.#sendFromSwarm(now, addr, bytes);
  }

  /** `SwarmDrive.#send`: this node's requests count toward the share rate (replies: the share). */
  #sendFromSwarm(now: number, to: PeerAddr, bytes: Uint8Array): void {
    this.#outbox?.sent(now, bytes);
    this.#send(this.swarmAddr, to, bytes);
  }

  /** `SwarmDrive.pollTimeout`. */
  #pollTimeout(): number | undefined {
    if (!this.node) return undefined;
    const t = Math.min(this.node.pollTimeout() ?? Infinity, this.#outbox?.nextAt() ?? Infinity);
    return t === Infinity ? undefined : t;
  }

  /** `SwarmDrive.#sendRuns`: the runs whose time has come, in order (a send takes no time here). */
  #sendRuns(now: number): void {
    for (let next = this.#outbox?.takeDue(now); next; next = this.#outbox?.takeDue(now)) {
      const a = next.run;
      for (let off = a.offset; off < a.offset + a.length; off += a.blockSize) {
        const n = Math.min(a.blockSize, a.offset + a.length - off);
        const h = blockHeader(a.requestId, a.fileId, off, n);
        const data = this.lies
          ? this.out.slice(off, off + n).map((b) => b ^ 0xff)
          : this.out.subarray(off, off + n);
        const d: Datagram = { kind: "block", from: this.swarmAddr, h, data };
        this.net.send(this.link, next.to, d, CHUNK_REPLY_HEADER_SIZE + n);
      }
      this.uploaded += a.length;
    }
  }

  #send(from: PeerAddr, to: PeerAddr, bytes: Uint8Array): void {
    this.trace?.datagram?.(this.index, bytes, this.clock.now);
    this.net.send(this.link, to, { kind: "bytes", from, bytes }, bytes.length);
  }
}

/** Bytes a fetcher's transfer declared lost, on its server's path and on its peers'. */
function lostBySide(c: FetchCoordinator): { lostFromServer: number; lostFromPeers: number } {
  let lostFromServer = 0;
  let lostFromPeers = 0;
  for (const s of c.session?.stats() ?? []) {
    if (s.source >= PEER_SOURCE_BASE) lostFromPeers += s.lost;
    else lostFromServer += s.lost;
  }
  return { lostFromServer, lostFromPeers };
}

/** Derives the seed of one party's generator from the scenario's seed. */
function partySeed(seed: number, party: number): number {
  return (Math.imul(seed ^ 0x5bd1e995, 0x9e3779b1) + Math.imul(party + 1, 0x85ebca6b)) >>> 0;
}

/**
 * Runs `sc` until every fetcher finished, failed or left (or `maxSimMs`), all in simulated time:
 * the same scenario gives the same outcome.
 */
export function simulateRealSwarm(sc: RealSwarmScenario): RealSwarmOutcome {
  const clock = new EventQueue();
  const net = new Net(clock);
  const delays = seededRandom(partySeed(sc.seed, 1_000_000));
  const lo = sc.minDelayMs ?? 1;
  const hi = sc.maxDelayMs ?? 5;
  const loss = sc.loss ?? 0;
  const path = (): NodePath => ({ delayMs: lo + (hi - lo) * delays(), loss });
  const version = simVersion(sc.fileBytes, sc.pieceBytes, sc.seed);
  const server = new SimServer(
    clock,
    net,
    version,
    sc.serverUpBytesPerSec,
    path(),
    seededRandom(partySeed(sc.seed, 1_000_001)),
  );
  const tracker = new SimTracker(clock, net, seededRandom(partySeed(sc.seed, 1_000_002)));
  const fetchers = sc.fetchers.map((f, i) =>
    new SimFetcher(
      i,
      clock,
      net,
      server,
      tracker,
      version,
      f.upBytesPerSec ?? sc.peerUpBytesPerSec,
      path(),
      sc.blockSize ?? 32 << 10,
      seededRandom(partySeed(sc.seed, i)),
      f.lies,
      sc.trace,
    )
  );
  sc.fetchers.forEach((f, i) => {
    clock.at(f.arriveMs ?? 0, () => fetchers[i].start());
    if (f.leaveMs !== undefined) clock.at(f.leaveMs, () => fetchers[i].leave());
  });
  const allSettled = () => fetchers.every((f) => f.settled);
  const sample = sc.trace?.sample;
  if (sample) {
    const every = sc.trace?.sampleMs ?? 10;
    const tick = () => {
      sample(clock.now, [...fetchers.map((f) => f.link.stats.bytes), server.link.stats.bytes]);
      if (!allSettled()) clock.at(clock.now + every, tick);
    };
    clock.at(0, tick);
  }
  clock.run(sc.maxSimMs ?? 120_000, allSettled);

  const outcomes: RealFetcherOutcome[] = fetchers.map((f, i) => ({
    arriveMs: sc.fetchers[i].arriveMs ?? 0,
    doneMs: f.doneMs,
    leftMs: f.leftMs,
    fromServer: f.fromServer,
    fromPeers: f.fromPeers,
    uploaded: f.uploaded,
    serverWaste: f.serverWaste,
    peerWaste: f.peerWaste,
    rerequested: f.coordinator.session?.rerequested ?? 0,
    ...lostBySide(f.coordinator),
    correct: f.finished && Buffer.compare(f.out, version.file) === 0,
    badPieces: f.badPieces,
    peersMet: f.node?.peers.length ?? 0,
    error: f.failed,
    notices: f.notices,
  }));
  const stayed = outcomes.filter((o) => Number.isNaN(o.leftMs) || o.leftMs > o.doneMs);
  const finished = stayed.every((o) => !Number.isNaN(o.doneMs));
  const lastDoneMs = finished ? Math.max(...stayed.map((o) => o.doneMs)) : NaN;
  const boundMs = realSwarmBoundMs(sc);
  return {
    fetchers: outcomes,
    finished,
    allCorrect: outcomes.every((o) => Number.isNaN(o.doneMs) || o.correct),
    lastDoneMs,
    boundMs,
    ratio: lastDoneMs / boundMs,
    serverUploaded: server.uploaded,
    serverShare: server.uploaded / sc.fileBytes,
    serverGivenOut: server.givenOut,
    serverCoalesced: server.coalesced,
    serverBusy: server.busy,
    serverHashReplies: server.hashLists,
    serverHashesBusy: server.hashesBusy,
    serverPlainBytes: server.plainBytes,
    serverRepeatBytes: server.repeatBytes,
    serverLinkBytes: server.link.stats.bytes,
    serverFirstPassEndMs: server.firstPassEndMs,
    simMs: clock.now,
    events: clock.processed,
    dueTurns: fetchers.reduce((t, f) => t + f.dueTurns, 0),
  };
}
