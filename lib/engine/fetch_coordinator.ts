/**
 * The whole fetch as one pure state machine, in the shape of `FetchSession` (quinn-proto's
 * `Connection`): metadata discovery, the block-size probe, the piece-hash list and the transfer,
 * with servers that answer discovery late joining the transfer beside it, and the trust rules
 * (`trust.ts`) applied at each step. `client.ts` drives it over sockets and files, the simulator
 * (`lib/sim/fetch_simulation.ts`) over simulated paths, on simulated time.
 *
 * Events in: `start(now, name)`; `handleDatagram(now, server, packet)` for every reply, and
 * `handleBlock` for data read in place (the hot path); `handleUnreachable`; `handleTimeout(now)`
 * when the time `pollTimeout` gave has come; and the answers to what the shell was asked to do:
 * `handleOutputReady` (the output may be written), `handlePartReady` (the `.part` is open),
 * `handleVerified(piece, ok)`, `handleDigest(digest)`, `handleReleased` (a stream wrote pieces
 * out), `handleLocalFault(error)` (a write or read of ours failed).
 * Actions out: `pollTransmit(now)` the next datagram to send to which server, `pollTimeout` when
 * to call back, and `poll()` everything else (see {@link CoordinatorAction}): lines for the user,
 * what became of each server, the file chosen, open the `.part`, open the verifier, verify a
 * piece, compute the digest, finished or failed with the error that ends the run.
 *
 * Phases: discovery → (the shell checks the output) → probe → (the shell opens the `.part`) →
 * [hash list, then re-check of the pieces a `.part` claims, on a resume] → transfer (with the
 * hash list and late discovery beside it) → digest → finished. No I/O, no clock, no randomness
 * of its own: request ids and SHA-256 are injected. The types of this contract are in
 * `fetch_actions.ts`.
 *
 * @module
 */

import { ExitCode, UdpgetError } from "../base/exit.ts";
import { type ChunkReplyHeader, fileIdOf, NO_TOKEN, type Packet } from "../wire/packet.ts";
import { BlockProbe } from "./block_probe.ts";
import { type FileMeta, type MetaAnswer, sameVersion, settledMeta } from "./consensus.ts";
import type {
  CoordinatorAction,
  CoordinatorTransmit,
  FetchCoordinatorOptions,
  FetchPhase,
  PartReady,
  ServerOutcome,
} from "./fetch_actions.ts";
import { type BlockWrite, FetchSession, type SessionEvent } from "./fetch_session.ts";
import {
  leftOutLine,
  leftOutReason,
  refusalText,
  resumeLine,
  silenceText,
  unansweredLines,
} from "./fetch_notices.ts";
import { HashListFetch } from "./hash_list_fetch.ts";
import { MetaDiscovery } from "./meta_discovery.ts";
import type { PieceFilter } from "./scheduler.ts";
import { allLoopback, lanWindowBytes, loopbackLimits, probePlan } from "./transfer_sizing.ts";
import {
  digestFailure,
  judgeHashList,
  noVersion,
  piecewise,
  type VerificationPlan,
  verificationPlan,
} from "./trust.ts";

/**
 * Session source ids of swarm peers start here (servers take 0, 1, ... as they join), so a
 * source id alone says which kind it is.
 */
export const PEER_SOURCE_BASE = 1 << 24;

/**
 * How long a server's GIVEN_OUT keeps a piece off the servers (ms): the peers relay it; if none
 * got it, the server is asked again (and decides again, PROTOCOL.md §10.6).
 */
const GIVEN_OUT_HOLD_MS = 1000;

/** Drives one fetch from a file name to its verified bytes (see the module comment). */
export class FetchCoordinator {
  #o: FetchCoordinatorOptions;
  #labels: string[];
  #phase: FetchPhase = "idle";
  #actions: CoordinatorAction[] = [];
  /** A machine took an input since the shell last ran its loop (it may have sends or news). */
  #due = false;
  /** Time of the latest event handed in (for what follows from it, e.g. a joiner's start). */
  #now = 0;
  #name: string | undefined;
  #discovery: MetaDiscovery | undefined;
  /** Discovery still asking some servers when the version was settled: they may join. */
  #late: MetaDiscovery | undefined;
  /** Servers whose discovery answer has been taken in. */
  #answered = new Set<number>();
  #probe: BlockProbe | undefined;
  #hashFetch: HashListFetch | undefined;
  #session: FetchSession | undefined;
  /** The session while the transfer runs (the hot path asks this one field). */
  #live: FetchSession | undefined;
  /** Address-validation token of each server, as its last RETRY handed it out. */
  #tokens: Uint8Array[];
  /** Smallest round trip measured to each server by a request-reply exchange (ms). */
  #rtts: (number | undefined)[];
  /** Source index in the session → server index (shared with the hash list: joiners are asked too). */
  #servers: number[] = [];
  /** Server index → source index, −1 for none. */
  #sources: number[];
  /** The chosen servers when the version was settled (they decide loopback sizing). */
  #chosen: number[] = [];
  #ring = 0;
  /** Pieces a stream wrote out: the reorder buffer runs from here. */
  #released = 0;
  #output = "";
  #plan: VerificationPlan | undefined;
  /** Pieces complete before the verifier was opened (the hash list still coming). */
  #deferred: number[] = [];
  /** Claimed pieces whose re-check has not answered yet, and how many were claimed. */
  #rechecking = new Set<number>();
  #claimed = 0;

  /** The agreed metadata of the file, once chosen. */
  meta: FileMeta | undefined;
  /** Data bytes per datagram, once known. */
  blockSize: number | undefined;
  /** How the bytes are vouched for, once decided. */
  verification: "pieces" | "full" | undefined;
  /** Time spent waiting for servers to hash the file (they answered BUSY), ms. */
  hashWaitMs = 0;
  /** Bytes of pieces verified by an earlier run, not fetched again. */
  resumed = 0;

  /** A coordinator for `o.servers`; nothing happens before `start`. */
  constructor(o: FetchCoordinatorOptions) {
    this.#o = o;
    this.#labels = o.servers.map((s) => s.label);
    this.#tokens = o.servers.map(() => NO_TOKEN);
    this.#rtts = o.servers.map(() => undefined);
    this.#sources = o.servers.map(() => -1);
  }

  /** Where the fetch is. */
  get phase(): FetchPhase {
    return this.#phase;
  }

  /** Whether it has finished or failed. */
  get ended(): boolean {
    return this.#phase === "finished" || this.#phase === "failed";
  }

  /** The file name being fetched (or asked about). */
  get name(): string | undefined {
    return this.#name;
  }

  /** The transfer engine, once the `.part` is open (for figures: bytes, sources, pieces). */
  get session(): FetchSession | undefined {
    return this.#session;
  }

  /**
   * The server (index in the servers file) behind source `source` of the session; −1 for a
   * swarm peer's source.
   */
  serverOf(source: number): number {
    return source >= PEER_SOURCE_BASE ? -1 : this.#servers[source];
  }

  /** The swarm peer behind source `source`, or undefined for a server's. */
  peerOf(source: number): number | undefined {
    return source >= PEER_SOURCE_BASE ? source - PEER_SOURCE_BASE : undefined;
  }

  /**
   * Swarm peer `peer` (a handle the shell chooses, unique while the peer is in) joins the
   * transfer, holding the pieces `has` accepts; `forget` withdraws a piece it answered NOT_HELD
   * for. Only while the transfer runs and pieces are verified one by one (a peer's bytes are
   * never trusted before their piece hash says so); false otherwise.
   */
  addPeer(
    now: number,
    peer: number,
    has: PieceFilter,
    forget: (piece: number) => void,
    token: Uint8Array,
    rttMs?: number,
  ): boolean {
    const session = this.#live;
    const source = PEER_SOURCE_BASE + peer;
    // before the list is trusted, a peer may give it (PROTOCOL.md §10.7), not pieces
    this.#hashFetch?.addPeer(source, token);
    if (!session || !this.acceptsPeers()) return false;
    const inRing = this.#inRing;
    const filter = (piece: number) => inRing(piece) && has(piece);
    // (indexed unless a stream's ring moves under it: then pieces enter the filter unannounced)
    session.addSource(source, now, { has: filter, rttMs, forget, indexed: this.#ring === 0 });
    session.setToken(source, token);
    return true;
  }

  /** Whether `addPeer` can take peers now: the transfer runs, with piece hashes to check them. */
  acceptsPeers(): boolean {
    return this.#live !== undefined && this.#plan?.hashes !== undefined && !this.#plan.whole;
  }

  /** Pieces being fetched from servers right now (what a swarm node advertises). */
  serverPieces(): number[] {
    return this.#live?.sched.activePieces((source) => source < PEER_SOURCE_BASE) ?? [];
  }

  /** Peer `peer` answers: it may give the piece hashes while they are not trusted yet. */
  peerAnswers(peer: number, token: Uint8Array): void {
    this.#hashFetch?.addPeer(PEER_SOURCE_BASE + peer, token);
  }

  /** Peer `peer` leaves the transfer (gone, excluded by the shell); its work goes elsewhere. */
  removePeer(peer: number, reason: string): void {
    this.#hashFetch?.removePeer(PEER_SOURCE_BASE + peer);
    this.#session?.removeSource(PEER_SOURCE_BASE + peer, reason);
  }

  /** Peer `peer` is asked nothing while `paused` (silent a while: maybe gone, maybe slow). */
  pausePeer(peer: number, paused: boolean): void {
    this.#session?.pauseSource(PEER_SOURCE_BASE + peer, paused);
  }

  /** Peer `peer` holds pieces it did not before (`piece`, when one is named): work again. */
  peerHas(peer: number, piece?: number): void {
    this.#live?.sourceHas(PEER_SOURCE_BASE + peer, piece);
  }

  /** A peer's token changed (its RETRY): later requests carry it. */
  setPeerToken(peer: number, token: Uint8Array): void {
    this.#session?.setToken(PEER_SOURCE_BASE + peer, token);
  }

  /** A datagram from peer `peer` for the transfer (RETRY, ERROR; data by `handlePeerBlock`). */
  handlePeerDatagram(now: number, peer: number, p: Packet): BlockWrite | undefined {
    this.#now = now;
    const fetch = this.#hashFetch;
    if (fetch?.handleReply(now, PEER_SOURCE_BASE + peer, p)) {
      this.#hashesAnswered();
      return undefined;
    }
    return this.#live?.handleReply(now, PEER_SOURCE_BASE + peer, p);
  }

  /** The hash list fetch took an answer: the list settles if it is in. */
  #hashesAnswered(): void {
    if (this.#phase === "hashes") return this.#hashesFirst(true);
    this.#due = true;
    this.#settleSides();
  }

  /** Peers whose piece hashes did not match the agreed root leave the swarm for good. */
  #dropHashLiars(): void {
    for (const source of this.#hashFetch?.liars.splice(0) ?? []) {
      const peer = source - PEER_SOURCE_BASE;
      const reason = "excluded: sent piece hashes that do not match the agreed root";
      this.#actions.push({ kind: "peer_dropped", peer, reason });
    }
  }

  /** The hot path for a peer's data, as {@link handleBlock} for a server's. */
  handlePeerBlock(now: number, peer: number, h: Readonly<ChunkReplyHeader>): boolean {
    const session = this.#live;
    return session !== undefined && session.handleBlock(now, PEER_SOURCE_BASE + peer, h);
  }

  /**
   * The pieces a `.part` claims whose re-check has not passed or failed yet (all of them while
   * the hash list is fetched first): a run ending now has learnt nothing about them, so a kept
   * `.part` should go on claiming them. Empty once the transfer runs.
   */
  uncheckedClaims(): number[] {
    return [...this.#rechecking];
  }

  /** The BUSY messages of the servers still hashing the file while discovery asks. */
  busy(): string[] {
    return this.#phase === "discovery" ? this.#discovery!.busy() : [];
  }

  /** When a server first answered BUSY during this discovery, if one did. */
  get firstBusyAt(): number | undefined {
    return this.#discovery?.firstBusyAt;
  }

  /**
   * Asks every server about `name` at `now`. Also after a discovery that failed (the shell
   * prompts for another name when nobody has the first).
   */
  start(now: number, name: string): void {
    if (this.#phase !== "idle" && !(this.#phase === "failed" && this.meta === undefined)) {
      throw new Error(`start in phase ${this.#phase}`);
    }
    this.#now = now;
    this.#name = name;
    this.#answered.clear();
    this.#late = undefined;
    this.#discovery = new MetaDiscovery(name, this.#o.servers.length, now, this.#o.nextRequestId);
    this.#setPhase("discovery");
  }

  /**
   * A datagram from `server` (decoded). Returns the bytes to write now when it carries new data
   * for the transfer (a view into the shell's buffer, valid during the call only).
   */
  handleDatagram(now: number, server: number, p: Packet): BlockWrite | undefined {
    this.#now = now;
    switch (this.#phase) {
      case "discovery":
        if (this.#discovery!.handleReply(now, server, p)) this.#discovered(true);
        return undefined;
      case "transfer": {
        if (this.#late?.handleReply(now, server, p)) {
          this.#due = true;
          this.#takeLate();
          this.#settleSides();
          return undefined;
        }
        const fetch = this.#hashFetch;
        if (fetch?.handleReply(now, server, p)) return void this.#hashesAnswered();
        const source = this.#sources[server];
        return source < 0 ? undefined : this.#live!.handleReply(now, source, p);
      }
    }
    // between the choice and the transfer, a late server's answer is kept for the transfer's
    // start (it can join then); the probe's and the hash list's go to them
    if (this.#late?.handleReply(now, server, p)) return undefined;
    if (this.#phase === "probe" && this.#probe!.handleReply(now, server, p)) this.#probed(true);
    const fetch = this.#hashFetch;
    if (this.#phase === "hashes" && fetch!.handleReply(now, server, p)) {
      this.#hashesAnswered();
    }
    return undefined;
  }

  /**
   * The hot path: the CHUNK_REPLY `h` from `server`, read in place (`readChunkReplyHeader`).
   * True when its bytes are new and must be written now; no allocation.
   */
  handleBlock(now: number, server: number, h: Readonly<ChunkReplyHeader>): boolean {
    const session = this.#live;
    if (session === undefined) return false;
    const source = this.#sources[server];
    return source >= 0 && session.handleBlock(now, source, h);
  }

  /** The network says `server` cannot be reached (an ICMP error on its socket). */
  handleUnreachable(now: number, server: number, reason: string): void {
    this.#now = now;
    switch (this.#phase) {
      case "discovery":
        if (this.#discovery!.handleUnreachable(now, server, reason)) this.#discovered(true);
        return;
      case "transfer": {
        const source = this.#sources[server];
        if (source >= 0) this.#live!.handleUnreachable(now, source, reason);
        // (discovery still asking late servers: a refused one is answered at once there too)
        if (this.#late?.handleUnreachable(now, server, reason)) this.#takeLate();
        this.#due = true;
        return;
      }
    }
    // (before the transfer, kept with the late server's answers for its start)
    this.#late?.handleUnreachable(now, server, reason);
  }

  /** Timers: retries of the request machines, the transfer's deadlines. */
  handleTimeout(now: number): void {
    this.#now = now;
    this.#due = false;
    switch (this.#phase) {
      case "discovery":
        this.#discovery!.handleTimeout(now);
        return this.#discovered(false);
      case "probe":
        this.#probe!.handleTimeout(now);
        return this.#probed(false);
      case "hashes":
        this.#hashFetch!.handleTimeout(now);
        return this.#hashesFirst(false);
      case "transfer":
        if (this.#late) {
          this.#late.handleTimeout(now);
          this.#takeLate(); // (a timeout may have settled a server)
        }
        this.#hashFetch?.handleTimeout(now);
        this.#settleSides();
        if (this.#phase === "transfer") this.#live!.handleTimeout(now);
        return;
    }
  }

  /** The next datagram to send now, or undefined. */
  pollTransmit(now: number): CoordinatorTransmit | undefined {
    switch (this.#phase) {
      case "discovery":
        return single(this.#discovery!.pollTransmit(now));
      case "probe":
        return single(this.#probe!.pollTransmit(now));
      case "hashes":
        return single(this.#hashFetch!.pollTransmit(now));
      case "transfer": {
        const side = this.#late?.pollTransmit(now) ?? this.#hashFetch?.pollTransmit(now);
        if (side) return single(side);
        const t = this.#live!.pollTransmit(now);
        if (!t) return undefined;
        if (t.source >= PEER_SOURCE_BASE) {
          const peer = t.source - PEER_SOURCE_BASE;
          return { server: -1, peer, lane: 0, packet: t.packet, copies: t.copies };
        }
        return {
          server: this.#servers[t.source],
          lane: t.lane,
          packet: t.packet,
          copies: t.copies,
        };
      }
      default:
        return undefined;
    }
  }

  /** When `handleTimeout` (or `pollTransmit`) next has something to do, or undefined. */
  pollTimeout(now: number): number | undefined {
    switch (this.#phase) {
      case "discovery":
        return this.#discovery!.pollTimeout();
      case "probe":
        return this.#probe!.pollTimeout();
      case "hashes":
        return this.#hashFetch!.pollTimeout();
      case "transfer": {
        const t = Math.min(
          this.#live!.pollTimeout(now) ?? Infinity,
          this.#late?.pollTimeout() ?? Infinity,
          this.#hashFetch?.pollTimeout() ?? Infinity,
        );
        return t === Infinity ? undefined : t;
      }
      default:
        return undefined;
    }
  }

  /**
   * Whether the shell should run its loop now: an action waits, a machine took a reply, or the
   * transfer may send. Cheap: the shell asks after every batch of datagrams.
   */
  wantsService(now: number): boolean {
    return this.#due || this.#actions.length > 0 || (this.#live?.wantsService(now) ?? false);
  }

  /** The next action for the shell, or undefined. */
  poll(): CoordinatorAction | undefined {
    // (the transfer's end makes #live undefined: what the session says after it is not news)
    for (let e = this.#live?.poll(); e; e = this.#live?.poll()) this.#onSessionEvent(e);
    return this.#actions.shift();
  }

  /** The output may be written (the shell checked it after `check_output`). */
  handleOutputReady(now: number): void {
    this.#expect("output");
    this.#now = now;
    const meta = this.meta!;
    if (this.#o.blockSize !== "auto") {
      this.blockSize = Math.min(this.#o.blockSize, meta.maxBlock);
      return this.#openPart();
    }
    const using = this.#chosen.map((i) => this.#o.servers[i]);
    this.#probe = new BlockProbe({
      ...probePlan(using),
      fileId: fileIdOf(meta.digest),
      name: this.#name!,
      size: meta.size,
      maxBlock: meta.maxBlock,
      servers: this.#chosen,
      token: (server) => this.#tokens[server],
      rtt: (server) => this.#rtts[server],
      nextRequestId: this.#o.nextRequestId,
    });
    this.#setPhase("probe");
    this.#probed(false);
  }

  /** The `.part` is open (after `open_part`): the transfer can begin. */
  handlePartReady(now: number, part: PartReady): void {
    this.#expect("prepare");
    this.#now = now;
    const meta = this.meta!;
    const blockSize = this.blockSize!;
    const o = this.#o;
    this.#ring = part.ring;
    this.#output = part.output;
    const loopback = allLoopback(this.#chosen.map((i) => o.servers[i]))
      ? loopbackLimits(o.lanes, o.receiveBuffer, blockSize)
      : undefined;
    const session = new FetchSession({
      size: meta.size,
      pieceSize: meta.pieceSize,
      blockSize,
      fileId: fileIdOf(meta.digest),
      name: this.#name!,
      nextRequestId: o.nextRequestId,
      limitBytesPerSec: o.limitBytesPerSec,
      maxInflightPerSource: loopback?.maxInflightPerSource,
      maxRequestBytes: loopback?.maxRequestBytes,
      lanes: o.lanes,
      lanMinWindowBytes: lanWindowBytes(o.lanes, o.receiveBuffer, blockSize),
      makeController: o.makeController,
      pieceOrder: o.pieceOrder?.(Math.ceil(meta.size / meta.pieceSize)),
      untrusted: (source) => source >= PEER_SOURCE_BASE,
    }, now);
    this.#session = session;
    for (const server of this.#chosen) this.#addServer(server);
    // the hash list is only needed to verify pieces: the transfer starts while it is fetched
    this.#hashFetch = new HashListFetch({
      fileId: fileIdOf(meta.digest),
      name: this.#name!,
      pieceCount: session.sched.pieceCount,
      blockSize,
      servers: this.#servers,
      token: (server) => this.#tokens[server],
      rtt: (server) => this.#rtts[server],
      nextRequestId: o.nextRequestId,
      matchesRoot: (list) => judgeHashList(list, meta, o.sha256).hashes !== undefined,
    });
    this.#hashFetch.swarm = this.#swarmRequests;
    if (part.claimed.length === 0) return this.#startTransfer();
    // a resume waits for it, to re-check the pieces it claims before fetching the others
    this.#rechecking = new Set(part.claimed);
    this.#claimed = part.claimed.length;
    this.#setPhase("hashes");
    this.#hashesFirst(false);
  }

  /** The shell checked `piece` (after `verify`): good, or corrupt (fetch it again, blame). */
  handleVerified(piece: number, ok: boolean): void {
    const session = this.#session;
    if (!session) return;
    if (this.#phase === "recheck" && this.#rechecking.delete(piece)) {
      if (ok) {
        session.markVerified(piece);
        const [start, end] = session.sched.pieceRange(piece);
        this.resumed += end - start;
      }
      if (this.#rechecking.size > 0) return;
      const { verifiedPieces, pieceCount } = session.sched;
      this.#notice(
        resumeLine(this.#output, verifiedPieces, pieceCount, this.#claimed - verifiedPieces),
      );
      return this.#startTransfer();
    }
    // (also after the end: a failed run keeps the pieces verified in flight)
    session.handleVerified(piece, ok);
  }

  /** The whole-file digest (after `digest`; undefined when the verifier computed none). */
  handleDigest(digest: Uint8Array | undefined): void {
    this.#expect("digest");
    const failure = digestFailure(this.#plan!.whole, digest, this.meta!.digest);
    if (failure) return this.#fail(failure);
    this.#setPhase("finished");
    this.#actions.push({ kind: "finished" });
  }

  /** A stream wrote its first `pieces` pieces out: their ring slots are free again. */
  handleReleased(pieces: number): void {
    this.#released = pieces;
    this.#session?.sourcesMayHaveWork();
  }

  /** The piece hashes the transfer verifies against, once trusted (a swarm may start then). */
  get pieceHashes(): Uint8Array | undefined {
    return this.#plan?.whole === false ? this.#plan.hashes : undefined;
  }

  /**
   * A local fault (a write of the `.part` failed, the socket layer died, the reader of a stream
   * went away): the fetch ends with `error`, and no server is blamed for it.
   */
  handleLocalFault(error: UdpgetError): void {
    if (this.ended) return;
    // nothing more is checked: a piece whose blocks were not all written would fail its hash
    this.#actions = this.#actions.filter((a) => a.kind !== "verify");
    this.#fail(error);
  }

  #expect(phase: FetchPhase): void {
    if (this.#phase !== phase) throw new Error(`expected phase ${phase}, in ${this.#phase}`);
  }

  #setPhase(phase: FetchPhase): void {
    this.#phase = phase;
    this.#actions.push({ kind: "phase", phase });
  }

  #notice(line: string): void {
    this.#actions.push({ kind: "notice", line });
  }

  #server(server: number, status: ServerOutcome, reason: string | null): void {
    this.#actions.push({ kind: "server", server, status, reason });
  }

  #fail(error: UdpgetError): void {
    this.#live = undefined;
    this.#setPhase("failed");
    this.#actions.push({ kind: "failed", error });
  }

  /**
   * Discovery took an input: once the answers so far decide the version (a strict majority of
   * all servers, or every answer in), the fetch moves on; the servers still being asked (a lost
   * datagram costs a timeout) join the transfer when they answer.
   */
  #discovered(took: boolean): void {
    // (a reply taken in: the shell's loop runs, for the sends and news that follow from it)
    if (took) this.#due = true;
    const d = this.#discovery!;
    const partial = d.partial();
    const c = settledMeta(partial, this.#o.checksum, this.#o.keyed);
    if (c === undefined) return; // (every answer in always settles it)
    this.#setPhase("output"); // first: the shell clears the hashing line before the lines below
    if (d.firstBusyAt !== undefined) this.hashWaitMs += this.#now - d.firstBusyAt;
    partial.forEach((ans, i) => {
      if (!ans) return;
      this.#answered.add(i);
      this.#takeAnswer(d, i, ans, false);
    });
    for (const line of unansweredLines(this.#labels, partial)) this.#notice(line);
    const answers = d.answers();
    if (!c.ok) {
      const no = noVersion(c, this.#name!, answers, this.#labels, this.#o);
      for (const line of no.lines) this.#notice(line);
      this.#answered.clear();
      return this.#fail(no.error);
    }
    this.meta = c.meta;
    for (const i of c.disagreeing) this.#leaveOut(i, (answers[i] as { meta: FileMeta }).meta);
    this.#chosen = [...c.servers];
    this.#late = d.done ? undefined : d;
    this.#actions.push({ kind: "check_output", name: this.#name!, meta: c.meta });
  }

  /** The probe took an input: once it knows the block size, the `.part` can be opened. */
  #probed(took: boolean): void {
    if (took) this.#due = true;
    const probe = this.#probe!;
    if (!probe.done) return;
    this.blockSize = probe.result();
    this.#probe = undefined;
    this.#openPart();
  }

  #openPart(): void {
    this.#setPhase("prepare");
    this.#actions.push({
      kind: "open_part",
      blockSize: this.blockSize!,
      piecewise: piecewise(this.#o),
    });
  }

  /** The hash list before a resume's re-check: once in, the claimed pieces are checked. */
  #hashesFirst(took: boolean): void {
    if (took) this.#due = true;
    this.#dropHashLiars();
    const fetch = this.#hashFetch!;
    if (!fetch.done) return;
    this.#hashFetch = undefined;
    if (!this.#decideVerification(fetch.result())) return;
    if (this.#plan!.hashes === undefined) {
      // claims that cannot be checked piece by piece are not trusted: fetch everything again
      this.#notice(
        `udpget: ${this.#output}: no piece hashes to re-check the partial download; starting over`,
      );
      this.#rechecking.clear();
      return this.#startTransfer();
    }
    this.#setPhase("recheck");
    for (const piece of this.#rechecking) this.#actions.push({ kind: "verify", piece });
  }

  #startTransfer(): void {
    this.#setPhase("transfer");
    this.#live = this.#session;
    this.#takeLate(); // (answers that came while the probe or the hash list ran)
    this.#settleSides();
  }

  /** Ends the machines beside the transfer that are done. */
  #settleSides(): void {
    if (this.#late?.done) {
      this.#takeLate();
      this.#late = undefined;
    }
    this.#dropHashLiars();
    if (this.#hashFetch?.done) {
      const list = this.#hashFetch.result();
      this.#hashFetch = undefined;
      if (!list) {
        this.#notice("udpget: the servers did not send the piece hashes; checking the whole file");
      }
      this.#decideVerification(list);
    }
  }

  /**
   * The hash list is in (or could not be had): the trust rules decide how bytes are vouched
   * for, the shell opens its verifier, and the pieces waiting for it are checked. False when
   * that ends the fetch (a stream with nothing to check pieces against).
   */
  #decideVerification(list: Uint8Array | undefined): boolean {
    const verdict = judgeHashList(list, this.meta!, this.#o.sha256);
    if (verdict.notice) this.#notice(verdict.notice);
    const plan = verificationPlan(verdict.hashes, this.#o, this.#ring);
    if (plan instanceof UdpgetError) {
      this.#fail(plan);
      return false;
    }
    this.#plan = plan;
    this.verification = plan.whole ? "full" : "pieces";
    this.#actions.push({ kind: "open_verifier", hashes: plan.hashes, whole: plan.whole });
    for (const piece of this.#deferred.splice(0)) this.#actions.push({ kind: "verify", piece });
    return true;
  }

  #onSessionEvent(e: SessionEvent): void {
    switch (e.kind) {
      case "verify":
        if (this.#plan) this.#actions.push({ kind: "verify", piece: e.piece });
        else this.#deferred.push(e.piece);
        return;
      case "corrupt":
        return this.#notice(`udpget: piece ${e.piece} failed its SHA-256; fetching it again`);
      case "dropped": {
        if (e.source >= PEER_SOURCE_BASE) {
          const peer = e.source - PEER_SOURCE_BASE;
          return void this.#actions.push({ kind: "peer_dropped", peer, reason: e.reason });
        }
        const server = this.#servers[e.source];
        this.#server(server, "dropped", e.reason);
        return this.#notice(`udpget: ${this.#labels[server]}: dropped (${e.reason})`);
      }
      case "not_held":
        return; // (servers hold every piece: only a swarm's shell keeps have-maps to correct)
      case "given_out":
        // (the piece is already held off the servers: `#heldOff`) the unsent ones go first
        return this.preferForServers(e.unsent);
      case "finished":
      case "failed":
        return this.#endTransfer(e.kind === "finished");
    }
  }

  /** The session ended: the last answers are taken in, then the digest, or the failure. */
  #endTransfer(finished: boolean): void {
    // answers that came in with the last blocks still count (a late server's version is said)
    this.#takeLate();
    this.#settleSides();
    if (this.ended) return; // (the hash list settled into a failure)
    this.#live = undefined;
    // (every piece verified means the verifier was opened; an empty file needs none of them)
    if (finished && !this.#plan && !this.#decideVerification(undefined)) return;
    if (!finished) {
      const session = this.#session!;
      const why = session.stats().filter((s) => s.source < PEER_SOURCE_BASE).map((s) =>
        `${this.#labels[this.#servers[s.source]]}: ${s.dropReason ?? "?"}`
      );
      return this.#fail(
        new UdpgetError(ExitCode.Unreachable, `every server failed (${why.join("; ")})`),
      );
    }
    this.#setPhase("digest");
    this.#actions.push({ kind: "digest" });
  }

  /**
   * Late discovery answers: each server with the chosen version joins the transfer as a new
   * source, the others are reported.
   */
  #takeLate(): void {
    const d = this.#late;
    if (!d) return;
    d.partial().forEach((ans, i) => {
      if (!ans || this.#answered.has(i)) return;
      this.#answered.add(i);
      this.#takeAnswer(d, i, ans, true);
      if (ans.kind !== "meta") return;
      if (sameVersion(ans.meta, this.meta!)) this.#addServer(i);
      else this.#leaveOut(i, ans.meta);
    });
  }

  /** Takes in server `i`'s answer to discovery: its token, round trip and status. */
  #takeAnswer(d: MetaDiscovery, i: number, ans: MetaAnswer, saySilent: boolean): void {
    this.#tokens[i] = d.token(i);
    const rtt = d.rtt(i);
    const old = this.#rtts[i];
    if (rtt !== undefined) this.#rtts[i] = old === undefined ? rtt : Math.min(old, rtt);
    const label = this.#labels[i];
    if (ans.kind === "error") {
      const reason = refusalText(ans);
      this.#server(i, "refused", reason);
      this.#notice(`udpget: ${label}: ${reason}`);
    } else if (ans.kind === "silent") {
      this.#server(i, "silent", silenceText(ans));
      if (saySilent) this.#notice(`udpget: ${label}: ${silenceText(ans)}`);
    } else this.#server(i, "used", null);
  }

  #leaveOut(i: number, m: FileMeta): void {
    const reason = leftOutReason(m, this.meta);
    this.#server(i, "left_out", reason);
    this.#notice(leftOutLine(this.#labels[i], reason));
  }

  /** Server `server` becomes a source of the session (a chosen one, or a late joiner). */
  #addServer(server: number): void {
    const session = this.#session!;
    const source = this.#servers.length;
    this.#servers.push(server);
    this.#sources[server] = source;
    // GIVEN_OUT: the piece is held off every server a moment, before anything is sent again
    const gaveOut = (piece: number) => this.#heldOff.set(piece, this.#now + GIVEN_OUT_HOLD_MS);
    session.addSource(source, this.#now, {
      has: this.#serverHas,
      rttMs: this.#rtts[server],
      forget: gaveOut,
    });
    session.setToken(source, this.#tokens[server]);
    session.setSwarmRequests(source, this.#swarmRequests);
  }

  /**
   * Pieces that may be fetched now: all of them, or for a stream only those whose ring slot is
   * free (the reorder buffer: the write point plus `ring` pieces).
   */
  #inRing: PieceFilter = (piece) => this.#ring === 0 || piece < this.#released + this.#ring;

  /** Which pieces servers are asked for (a swarm narrows it: see `setServerFilter`). */
  #serverFilter: PieceFilter = () => true;
  #serverHas: PieceFilter = (piece) =>
    this.#inRing(piece) && this.#serverFilter(piece) && !this.#isHeldOff(piece);

  /**
   * Asks servers only for the pieces `filter` accepts (a swarm: those no known peer holds, so
   * that the servers' upload goes to pieces the peers then relay).
   */
  setServerFilter(filter: PieceFilter): void {
    this.#serverFilter = filter;
  }

  /**
   * Pieces a server answered GIVEN_OUT for (another swarm fetcher got them: peers relay them),
   * and until when they are not asked of the servers. Held here, not in the swarm's shell: the
   * first requests carry the swarm flag before the swarm has started.
   */
  #heldOff = new Map<number, number>();

  /** Whether `piece` is held off the servers now (an expired hold is forgotten). */
  #isHeldOff(piece: number): boolean {
    const until = this.#heldOff.get(piece);
    if (until === undefined) return false;
    if (this.#now < until) return true;
    this.#heldOff.delete(piece);
    return false;
  }

  /** Whether requests to servers carry the swarm flag (see `askServersAsSwarm`). */
  #swarmRequests = false;

  /**
   * Asks the servers as a swarm fetcher (`on`: this fetcher has peers to get pieces from), so a
   * server may answer GIVEN_OUT for a piece another swarm fetcher was given (PROTOCOL.md §10.6).
   */
  askServersAsSwarm(on: boolean): void {
    this.#swarmRequests = on;
    if (this.#hashFetch) this.#hashFetch.swarm = on;
    const session = this.#session;
    if (!session) return;
    for (let source = 0; source < this.#servers.length; source++) {
      session.setSwarmRequests(source, on);
    }
  }

  /** Servers should be asked for `pieces` next (a server named them as never sent). */
  preferForServers(pieces: readonly number[]): void {
    this.#live?.sched.promote(pieces);
    this.serversMayHaveWork();
  }

  /** `piece` goes to the front of the queue (fresh in a swarm: see `SwarmNode`). */
  preferPiece(piece: number): void {
    this.#live?.sched.promote([piece]);
  }

  /** Something changed what the servers may be asked for: they may have work again. */
  serversMayHaveWork(): void {
    const session = this.#live;
    if (!session) return;
    for (let source = 0; source < this.#servers.length; source++) session.sourceHas(source);
  }
}

/** A request machine's datagram, sent once from the first lane. */
function single(
  t: { server: number; packet: Packet } | undefined,
): CoordinatorTransmit | undefined {
  if (t && t.server >= PEER_SOURCE_BASE) {
    return { server: -1, peer: t.server - PEER_SOURCE_BASE, lane: 0, packet: t.packet, copies: 1 };
  }
  return t && { server: t.server, lane: 0, packet: t.packet, copies: 1 };
}
