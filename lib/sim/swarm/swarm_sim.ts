/**
 * A deterministic discrete-event swarm simulator at piece level: one seed server, N fetchers
 * that share what they verified, a tracker, churn and liars. It drives the real policy code
 * (`lib/swarm/`) — the fetchers' {@link SwarmPlanner} and the server's {@link SeedLedger} — so
 * what it measures is the policy the engine will run.
 *
 * Model, and why:
 * - Upload: each node has one uplink that serves the piece requests it accepted one at a time,
 *   first come first served, at the node's rate. That is what the real serve core does (one
 *   token bucket per node, runs sent in request order), and it costs O(1) per piece where fair
 *   sharing would re-time every flow on each change. Throughput is the same; only the order of
 *   completions differs.
 * - Download: an optional per-node cap, as a second first-come-first-served stage: a piece
 *   completes at max(sent + delay, downlink free + size / rate). Unlimited by default.
 * - Delay: one one-way delay between any two nodes, for requests, data, have-maps, "have" and
 *   "fetching" updates and refusals alike.
 * - Pieces are verified on arrival (hashing time is not modelled); a piece is requested whole
 *   from one source, so the piece is the unit of relay: relaying verified sub-ranges is the same
 *   as a smaller piece here.
 * - Peers learn of each other from the tracker (≤ 50 random, announces every `announceMs` while
 *   downloading) and when contacted (the contacted peer may connect back, as peer exchange
 *   would). A connection is one-way: the fetcher asks for the source's have-map (it arrives one
 *   delay later) and is then sent each "have".
 * - Churn: peers arrive and leave at given times; those using a leaver notice after
 *   `detectMs` (keepalive), and its in-flight requests are then given up.
 * - Liars: `corrupt` serves bad bytes for the pieces it holds; `phantom` claims every piece and
 *   serves bad bytes; `silent` claims every piece and never answers.
 * - Randomness: one seeded generator per node, derived from the scenario seed: a run replays
 *   exactly.
 *
 * @module
 */

import { EventQueue } from "../event_queue.ts";
import { seededRandom } from "../prng.ts";
import { type PieceRequest, type SeedMode, SwarmPlanner } from "../../swarm/swarm_planner.ts";
import { SeedLedger, type SeedLedgerOptions } from "../../swarm/seed_ledger.ts";
import { type PeerFacts, rankPeers } from "../../swarm/peer_ranking.ts";
import { BacklogGate, busyFor } from "../../serving/backlog_gate.ts";
import { TrackerModel } from "./tracker_model.ts";

/** How a lying peer lies. */
export type LiarKind = "corrupt" | "phantom" | "silent";

/** One fetcher. */
export interface PeerSpec {
  /** Upload cap, bytes per second. */
  upBytesPerSec: number;
  /** Download cap, bytes per second (default unlimited). */
  downBytesPerSec?: number;
  /** Joins at this time, ms (default 0). */
  arriveMs?: number;
  /** Leaves at this time, ms, done or not (default: stays). */
  leaveMs?: number;
  /** Leaves as soon as it is done (default: stays and seeds). */
  leaveWhenDone?: boolean;
  /** Lies (default: honest). */
  liar?: LiarKind;
}

/** A simulated swarm. */
export interface SwarmScenario {
  /** Seed of every random choice. */
  seed: number;
  /** File size, bytes. */
  fileBytes: number;
  /** Piece size, bytes. */
  pieceBytes: number;
  /** The seed server's upload, bytes per second. */
  serverUpBytesPerSec: number;
  /** The fetchers. */
  peers: PeerSpec[];
  /** One-way delay between any two nodes, ms (default 20). */
  delayMs?: number;
  /** Fetchers' seed coordination (default "server"). */
  seedMode?: SeedMode;
  /** The server's ledger (default: coordinating when seedMode is "server", plain otherwise). */
  ledger?: SeedLedgerOptions;
  /** Fetchers' pipeline, ms of data at the measured rate (default 600). */
  pipelineMs?: number;
  /** A peer answers BUSY above this much queued upload, ms (default 300). */
  peerMaxBacklogMs?: number;
  /** How far past its busy time a peer staggers retry turns, ms (default 500). */
  retryHorizonMs?: number;
  /** Most sources in a fetcher's peer set, the server aside (default 40). */
  maxPeers?: number;
  /** Most fetchers one peer serves have updates to (default 80). */
  maxSubscribers?: number;
  /** Most peers in one tracker answer (default 50). */
  trackerPeers?: number;
  /** Announce interval while downloading, ms (default 5000). */
  announceMs?: number;
  /**
   * A fetcher plans at the end of event-loop turns of this many ms, not on every event
   * (default 10; 0: on every event).
   */
  turnMs?: number;
  /** Slow timer period of each fetcher (timeouts, reconsidering every source), ms (default 500). */
  tickMs?: number;
  /** Time for a fetcher to notice that a source left, ms (default 1000). */
  detectMs?: number;
  /** Peers answer a have-map request with peers they know (peer exchange; default true). */
  peerExchange?: boolean;
  /**
   * Sources put "busy for N ms" on every have and data message, and fetchers hold requests to
   * them until then (default false: a small saving in BUSY round trips, not worth a wire field).
   */
  loadHints?: boolean;
  /** Extra latency of "have" updates beyond the one-way delay, ms (polling; default 0). */
  haveExtraMs?: number;
  /** Give up at this simulated time, ms (default 600 000). */
  maxSimMs?: number;
  /** Called every `everyMs` of simulated time with a snapshot (for benches and tuning). */
  probe?: { everyMs: number; report: (s: SwarmSample) => void };
}

/** A snapshot of the swarm (see `SwarmScenario.probe`). */
export interface SwarmSample {
  /** Simulated time, ms. */
  t: number;
  /** Fetchers present and downloading. */
  downloading: number;
  /** Mean share of the file verified among them. */
  meanDone: number;
  /** Share of present peers (liars aside) whose uplink is idle. */
  idleUplinks: number;
  /** Mean queued upload per present peer, ms. */
  meanBacklogMs: number;
  /** The server's queued upload, ms. */
  serverBacklogMs: number;
  /** Mean requests outstanding per downloading fetcher, and mean window. */
  meanOutstanding: number;
  meanWindow: number;
  /** Mean sources per downloading fetcher. */
  meanSources: number;
}

/** What happened to one fetcher. */
export interface PeerOutcome {
  /** Joined at, ms. */
  arriveMs: number;
  /** Verified its last piece at, ms (NaN: never). */
  doneMs: number;
  /** Left at, ms (NaN: stayed). */
  leftMs: number;
  /** Bytes it uploaded. */
  uploaded: number;
  /** Bad pieces it received (all rejected). */
  badReceived: number;
  /** Pieces it verified that came from the server. */
  fromServer: number;
  /** Longest time between two verified pieces (or arrival and the first) while downloading, ms. */
  longestStallMs: number;
  /** How it lied, if it did. */
  liar?: LiarKind;
}

/** What happened in a run. */
export interface SwarmOutcome {
  /** Every honest fetcher that did not leave early finished. */
  finished: boolean;
  /** Last finish among honest fetchers, ms. */
  lastDoneMs: number;
  /** The distribution lower bound for the scenario, ms (see {@link boundMs}). */
  boundMs: number;
  /** lastDoneMs ÷ boundMs. */
  ratio: number;
  /** Bytes the server sent. */
  serverBytes: number;
  /** serverBytes ÷ file size. */
  serverShare: number;
  /** Bad pieces accepted as good by anyone (must be 0). */
  badAccepted: number;
  /** Bad pieces received in all (each one rejected). */
  badReceived: number;
  /** Good bytes delivered to a fetcher that already had the piece (end game, late copies). */
  duplicateBytes: number;
  /** Per fetcher, in scenario order. */
  peers: PeerOutcome[];
  /** Requests peers answered BUSY. */
  busyAnswers: number;
  /** When the server had sent every piece once, ms (NaN: never). */
  firstCopiesDoneMs: number;
  /** Events processed (the run's CPU cost). */
  events: number;
}

/**
 * The lower bound on the last finish (Kumar & Ross 2006), ms, for the honest fetchers all
 * present from the start: max(F/u_s, F/d_min, N·F/(u_s + Σu_i)).
 */
export function boundMs(sc: SwarmScenario): number {
  const honest = sc.peers.filter((p) => !p.liar);
  const F = sc.fileBytes;
  const dMin = Math.min(...honest.map((p) => p.downBytesPerSec ?? Infinity));
  const sumUp = honest.reduce((t, p) => t + p.upBytesPerSec, 0);
  const s = Math.max(
    F / sc.serverUpBytesPerSec,
    F / dMin,
    honest.length * F / (sc.serverUpBytesPerSec + sumUp),
  );
  return s * 1000;
}

interface Job {
  to: number;
  piece: number;
  good: boolean;
}

interface Node {
  readonly id: number;
  readonly spec: PeerSpec | undefined;
  readonly upPerMs: number;
  readonly downPerMs: number;
  readonly random: () => number;
  readonly planner: SwarmPlanner | undefined;
  readonly ledger: SeedLedger | undefined;
  readonly have: Uint8Array;
  alive: boolean;
  doneAt: number;
  leftAt: number;
  /** Peer sources used (the server aside). */
  readonly sources: Set<number>;
  /** Fetchers it sends "have"s to. */
  readonly subscribers: Set<number>;
  /** Connections asked for and not answered yet. */
  readonly connecting: Set<number>;
  /** When each source joined its set. */
  readonly joinedAt: Map<number, number>;
  /** When its planner's wake-up is scheduled (Infinity: none). */
  wakeAt: number;
  /** When its current event-loop turn ends (Infinity: no turn pending). */
  turnAt: number;
  /** Admission of requests at its uplink (BUSY above a short backlog). */
  readonly gate: BacklogGate;
  readonly queue: Job[];
  queueHead: number;
  busy: boolean;
  backlogBytes: number;
  downFreeAt: number;
  uploaded: number;
  badReceived: number;
  fromServer: number;
  lastProgressAt: number;
  longestStall: number;
}

const SERVER = 0;

/** Runs a scenario to its end (every honest fetcher done or gone) or `maxSimMs`. */
export function simulateSwarm(sc: SwarmScenario): SwarmOutcome {
  return new Simulation(sc).run();
}

class Simulation {
  readonly clock = new EventQueue();
  readonly tracker: TrackerModel;
  readonly nodes: Node[] = [];
  readonly pieceCount: number;
  readonly delay: number;
  readonly seedMode: SeedMode;
  badAccepted = 0;
  duplicateBytes = 0;
  /** Requests answered BUSY by peers (round trips that moved no data). */
  busyAnswers = 0;
  firstCopiesDoneMs = NaN;
  #serverSent: Uint8Array;
  #serverUnsent: number;
  /** Honest fetchers still to finish (and not gone). */
  pending = 0;

  constructor(readonly sc: SwarmScenario) {
    this.pieceCount = Math.ceil(sc.fileBytes / sc.pieceBytes);
    this.delay = sc.delayMs ?? 20;
    this.seedMode = sc.seedMode ?? "server";
    this.tracker = new TrackerModel(sc.trackerPeers ?? 50);
    this.#serverSent = new Uint8Array(this.pieceCount);
    this.#serverUnsent = this.pieceCount;
    this.nodes.push(this.#makeNode(SERVER, undefined));
    this.nodes[SERVER].alive = true;
    sc.peers.forEach((p, i) => this.nodes.push(this.#makeNode(i + 1, p)));
  }

  run(): SwarmOutcome {
    for (const n of this.nodes) {
      if (!n.spec) continue;
      if (!n.spec.liar) this.pending++;
      this.clock.at(n.spec.arriveMs ?? 0, () => this.arrive(n));
      if (n.spec.leaveMs !== undefined) this.clock.at(n.spec.leaveMs, () => this.depart(n));
    }
    if (this.sc.probe) this.#sample(this.sc.probe.everyMs, this.sc.probe.report);
    this.clock.run(this.sc.maxSimMs ?? 600_000, () => this.pending === 0);
    return this.#outcome();
  }

  // --- membership ---------------------------------------------------------------------------

  arrive(n: Node): void {
    if (n.leftAt === n.leftAt) return; // (left before arriving)
    n.alive = true;
    n.lastProgressAt = this.clock.now;
    this.tracker.join(n.id);
    if (!n.planner) return; // (phantom and silent liars only pretend to serve)
    n.planner.addSource(SERVER, { server: true, complete: true });
    this.announce(n);
    this.soon(n);
    this.tick(n);
  }

  depart(n: Node): void {
    if (!n.alive && n.leftAt === n.leftAt) return;
    const wasPending = n.spec && !n.spec.liar && n.doneAt !== n.doneAt;
    n.alive = false;
    n.leftAt = this.clock.now;
    if (wasPending) this.pending--;
    this.tracker.leave(n.id);
    n.queue.length = 0;
    n.queueHead = 0;
    n.backlogBytes = 0;
    for (const x of n.sources) this.nodes[x].subscribers.delete(n.id);
    const detect = this.sc.detectMs ?? 1000;
    for (const s of n.subscribers) {
      this.clock.at(this.clock.now + detect, () => this.forget(this.nodes[s], n.id));
    }
  }

  /** `n` drops source `x` (gone, excluded or replaced). */
  forget(n: Node, x: number): void {
    n.sources.delete(x);
    this.nodes[x].subscribers.delete(n.id);
    if (!n.alive || !n.planner) return;
    n.planner.removeSource(x);
    this.soon(n);
  }

  announce(n: Node): void {
    if (!n.alive || !n.planner || n.planner.done) return;
    const candidates = this.tracker.announce(n.id, n.random);
    this.consider(n, candidates);
    this.clock.at(this.clock.now + (this.sc.announceMs ?? 5000), () => this.announce(n));
  }

  /** Peer ranking over `n`'s set and `candidates`: connect to some, drop some. */
  consider(n: Node, candidates: number[]): void {
    const p = n.planner!;
    const fresh = candidates.filter((c) => !n.sources.has(c) && !n.connecting.has(c));
    if (fresh.length === 0) return;
    const facts: PeerFacts[] = [...n.sources].map((id) => ({
      id,
      complete: p.availability.isComplete(id),
      useful: p.usefulFrom(id),
      rate: p.rateOf(id),
      ageMs: this.clock.now - (n.joinedAt.get(id) ?? 0),
    }));
    const max = Math.max(0, (this.sc.maxPeers ?? 40) - n.connecting.size);
    const change = rankPeers(facts, fresh, { max });
    for (const x of change.drop) this.forget(n, x);
    for (const x of change.connect) this.connect(n, this.nodes[x]);
  }

  /** `n` asks `x` for its have-map; `x` answers one delay later and sends "have"s from then. */
  connect(n: Node, x: Node): void {
    n.connecting.add(x.id);
    this.clock.at(this.clock.now + this.delay, () => {
      if (!x.alive || x.subscribers.size >= (this.sc.maxSubscribers ?? 80)) {
        this.clock.at(this.clock.now + this.delay, () => n.connecting.delete(x.id));
        return;
      }
      x.subscribers.add(n.id);
      const haves = this.#haveMapOf(x);
      const known = this.sc.peerExchange === false ? [] : this.#peersOf(x, n.id);
      this.clock.at(this.clock.now + this.delay, () => this.connected(n, x, haves, known));
      // (the asker is a peer too: peer exchange would tell x about it)
      if (x.planner && !x.planner.done && x.alive) this.consider(x, [n.id]);
    });
  }

  connected(n: Node, x: Node, haves: Uint8Array | "all", known: number[]): void {
    n.connecting.delete(x.id);
    if (!n.alive || !n.planner || n.planner.done || !x.subscribers.has(n.id)) return;
    const info = haves === "all"
      ? { server: false, complete: true }
      : { server: false, complete: false, haves };
    if (!n.planner.addSource(x.id, info)) return;
    n.sources.add(x.id);
    n.joinedAt.set(x.id, this.clock.now);
    this.soon(n, x.id);
    // (peer exchange: a fetcher short of sources tries the peers its new source knows)
    const max = this.sc.maxPeers ?? 40;
    if (known.length > 0 && n.sources.size + n.connecting.size < max) this.consider(n, known);
  }

  /** Up to `trackerPeers` peers `x` knows (its sources and subscribers), `asker` aside. */
  #peersOf(x: Node, asker: number): number[] {
    const all = [...x.sources, ...x.subscribers].filter((id) => id !== asker);
    const max = this.sc.trackerPeers ?? 50;
    for (let i = 0; i < Math.min(max, all.length); i++) {
      const j = i + Math.floor(x.random() * (all.length - i));
      [all[i], all[j]] = [all[j], all[i]];
    }
    return all.slice(0, max);
  }

  // --- fetcher ------------------------------------------------------------------------------

  /**
   * `n` has news (a have, a delivery, a refusal): with turns, its planner runs once at the end of
   * the current turn of its event loop, as a real client handles a batch of datagrams and then
   * decides; without, at once. The news itself is applied by the caller immediately.
   */
  soon(n: Node, first?: number): void {
    const turn = this.sc.turnMs ?? 10;
    if (turn <= 0) return this.pump(n, first);
    if (first !== undefined) n.planner!.nudge(first);
    if (n.turnAt !== Infinity) return;
    n.turnAt = this.clock.now + turn;
    this.clock.at(n.turnAt, () => {
      n.turnAt = Infinity;
      if (n.alive && n.planner && !n.planner.done) this.pump(n);
    });
  }

  /** Sends the requests `n`'s planner wants now (`first` asked first), and sets its wake-up. */
  pump(n: Node, first?: number): void {
    const p = n.planner!;
    for (const r of p.plan(this.clock.now, first)) this.request(n, r);
    if (this.seedMode === "fetcher") this.#sendNotices(n);
    const at = p.wakeAt;
    if (at < n.wakeAt && at !== Infinity && !p.done) {
      n.wakeAt = at;
      this.clock.at(at, () => this.#wake(n, at));
    }
  }

  #wake(n: Node, at: number): void {
    if (n.wakeAt !== at) return; // (superseded by an earlier one)
    n.wakeAt = Infinity;
    if (n.alive && n.planner && !n.planner.done) this.soon(n);
  }

  /** The slow timer: timeouts, and every source reconsidered (end game, missed events). */
  tick(n: Node): void {
    if (!n.alive || !n.planner || n.planner.done) return;
    for (const x of n.planner.onTimer(this.clock.now)) this.forget(n, x);
    this.soon(n);
    this.clock.at(this.clock.now + (this.sc.tickMs ?? 500), () => this.tick(n));
  }

  request(n: Node, r: PieceRequest): void {
    const x = this.nodes[r.source];
    this.clock.at(this.clock.now + this.delay, () => this.serve(x, n, r.piece));
  }

  /** `n` receives `piece` from `x` (`good`: it matches its hash). */
  deliver(n: Node, x: Node, piece: number, good: boolean, busy: number): void {
    if (!n.alive || !n.planner) return;
    const now = this.clock.now;
    const v = n.planner.onPiece(now, x.id, piece, good);
    if (this.sc.loadHints === true) n.planner.sourceBusyFor(now, x.id, busy);
    if (!good) n.badReceived++;
    for (const e of v.excluded) this.forget(n, e);
    if (v.accepted) {
      if (!good) this.badAccepted++;
      if (x.id === SERVER) n.fromServer++;
      this.verified(n, piece);
    } else if (good) {
      this.duplicateBytes += this.#bytes(piece);
    }
    if (v.excluded.length > 0) this.soon(n);
    else this.soon(n, x.id);
  }

  verified(n: Node, piece: number): void {
    const now = this.clock.now;
    n.have[piece] = 1;
    n.longestStall = Math.max(n.longestStall, now - n.lastProgressAt);
    n.lastProgressAt = now;
    const at = now + this.delay + (this.sc.haveExtraMs ?? 0);
    const busy = this.#busyHint(n);
    this.clock.at(at, () => this.#fanOutHave(n, piece, busy));
    if (n.planner!.done) {
      n.doneAt = now;
      if (!n.spec?.liar) this.pending--;
      if (n.spec?.leaveWhenDone) this.depart(n);
    }
  }

  // --- serving ------------------------------------------------------------------------------

  /** A request from `n` for `piece` reaches `x`. */
  serve(x: Node, n: Node, piece: number): void {
    if (!x.alive) return;
    if (x.ledger) return this.#serveAsSeed(x, n, piece);
    const liar = x.spec?.liar;
    if (liar === "silent") return;
    if (liar === "phantom") return this.enqueue(x, { to: n.id, piece, good: false });
    if (!x.have[piece]) {
      return this.#reply(
        n,
        x.id,
        () => n.planner!.onRefused(this.clock.now, x.id, piece, "missing"),
      );
    }
    const bytes = this.#bytes(piece);
    const busy = x.gate.admit(this.clock.now, x.backlogBytes / x.upPerMs, bytes / x.upPerMs);
    if (busy === 0) return this.enqueue(x, { to: n.id, piece, good: liar !== "corrupt" });
    this.busyAnswers++;
    this.#reply(n, x.id, () => n.planner!.onRefused(this.clock.now, x.id, piece, "busy", busy));
  }

  enqueue(x: Node, job: Job): void {
    x.queue.push(job);
    x.backlogBytes += this.#bytes(job.piece);
    if (!x.busy) this.#startNext(x);
  }

  #serveAsSeed(x: Node, n: Node, piece: number): void {
    const a = x.ledger!.answer(piece, x.backlogBytes / x.upPerMs);
    if (a.kind === "serve") return this.enqueue(x, { to: n.id, piece, good: true });
    if (a.kind === "substitute") {
      this.enqueue(x, { to: n.id, piece: a.piece, good: true });
      return this.#reply(n, x.id, () => {
        n.planner!.onSubstituted(this.clock.now, x.id, piece, a.piece);
        return [];
      });
    }
    const retry = a.retryAfterMs;
    this.#reply(n, x.id, () => n.planner!.onRefused(this.clock.now, x.id, piece, a.kind, retry));
  }

  /**
   * A small answer from `from` reaches `n` one delay later: `apply` it (it returns the sources
   * excluded), then pump.
   */
  #reply(n: Node, from: number, apply: () => number[]): void {
    this.clock.at(this.clock.now + this.delay, () => {
      if (!n.alive || !n.planner) return;
      for (const e of apply()) this.forget(n, e);
      this.soon(n, from);
    });
  }

  #startNext(x: Node): void {
    if (x.queueHead >= x.queue.length) {
      x.queue.length = 0;
      x.queueHead = 0;
      x.busy = false;
      return;
    }
    const job = x.queue[x.queueHead++];
    x.busy = true;
    const bytes = this.#bytes(job.piece);
    this.clock.at(this.clock.now + bytes / x.upPerMs, () => {
      if (!x.alive) return; // (left: its queue went with it)
      x.backlogBytes -= bytes;
      x.uploaded += bytes;
      if (x.id === SERVER) this.#countServerCopy(job.piece);
      this.#transmit(x, job, bytes);
      this.#startNext(x);
    });
  }

  /** The piece left `x`'s uplink now: it reaches the receiver through its downlink. */
  #transmit(x: Node, job: Job, bytes: number): void {
    const n = this.nodes[job.to];
    let at = this.clock.now + this.delay;
    if (n.downPerMs !== Infinity) {
      at = Math.max(at, n.downFreeAt + bytes / n.downPerMs);
      n.downFreeAt = at;
    }
    const busy = this.#busyHint(x);
    this.clock.at(at, () => this.deliver(n, x, job.piece, job.good, busy));
  }

  // --- helpers ------------------------------------------------------------------------------

  #sample(everyMs: number, report: (s: SwarmSample) => void): void {
    const present = this.nodes.filter((n) => n.alive && n.id !== SERVER && !n.spec?.liar);
    const dl = present.filter((n) => !n.planner!.done);
    const mean = (a: Node[], f: (n: Node) => number) =>
      a.length === 0 ? 0 : a.reduce((t, n) => t + f(n), 0) / a.length;
    report({
      t: this.clock.now,
      downloading: dl.length,
      meanDone: mean(dl, (n) => n.planner!.verified / this.pieceCount),
      idleUplinks: mean(present, (n) => n.busy ? 0 : 1),
      meanBacklogMs: mean(present, (n) => n.backlogBytes / n.upPerMs),
      serverBacklogMs: this.nodes[SERVER].backlogBytes / this.nodes[SERVER].upPerMs,
      meanOutstanding: mean(dl, (n) => n.planner!.outstandingTotal),
      meanWindow: mean(dl, (n) => n.planner!.windowCap),
      meanSources: mean(dl, (n) => n.sources.size),
    });
    if (this.pending > 0) {
      this.clock.at(this.clock.now + everyMs, () => this.#sample(everyMs, report));
    }
  }

  #countServerCopy(piece: number): void {
    if (this.#serverSent[piece]) return;
    this.#serverSent[piece] = 1;
    if (--this.#serverUnsent === 0) this.firstCopiesDoneMs = this.clock.now;
  }

  #makeNode(id: number, spec: PeerSpec | undefined): Node {
    const random = seededRandom(mix(this.sc.seed, id));
    const isServer = spec === undefined;
    const up = isServer ? this.sc.serverUpBytesPerSec : spec.upBytesPerSec;
    const have = new Uint8Array(this.pieceCount);
    if (isServer) have.fill(1);
    const ledgerOptions = this.sc.ledger ?? { coordinate: this.seedMode === "server" };
    return {
      id,
      spec,
      upPerMs: up / 1000,
      downPerMs: (spec?.downBytesPerSec ?? Infinity) / 1000,
      random,
      // (a corrupt liar downloads like anyone; phantoms and silent ones only pretend to serve)
      planner: isServer || (spec.liar && spec.liar !== "corrupt")
        ? undefined
        : this.#makePlanner(random),
      ledger: isServer ? new SeedLedger(this.pieceCount, random, ledgerOptions) : undefined,
      have,
      alive: false,
      doneAt: NaN,
      leftAt: NaN,
      sources: new Set(),
      subscribers: new Set(),
      connecting: new Set(),
      joinedAt: new Map(),
      wakeAt: Infinity,
      turnAt: Infinity,
      gate: new BacklogGate(this.sc.peerMaxBacklogMs ?? 300, this.sc.retryHorizonMs ?? 500),
      queue: [],
      queueHead: 0,
      busy: false,
      backlogBytes: 0,
      downFreeAt: 0,
      uploaded: 0,
      badReceived: 0,
      fromServer: 0,
      lastProgressAt: 0,
      longestStall: 0,
    };
  }

  #makePlanner(random: () => number): SwarmPlanner {
    const sc = this.sc;
    return new SwarmPlanner({
      pieceCount: this.pieceCount,
      pieceBytes: (p) => this.#bytes(p),
      random,
      seedMode: this.seedMode,
      rate: { pipelineMs: sc.pipelineMs ?? 600 },
    });
  }

  /** What `x` would answer a request now: BUSY for this many ms (0: it would queue it). */
  #busyHint(x: Node): number {
    if (x.id === SERVER) return 0; // (the ledger decides; its busy answers carry their own time)
    return busyFor(x.backlogBytes / x.upPerMs, this.sc.peerMaxBacklogMs ?? 300);
  }

  #bytes(piece: number): number {
    const start = piece * this.sc.pieceBytes;
    return Math.min(this.sc.fileBytes, start + this.sc.pieceBytes) - start;
  }

  #haveMapOf(x: Node): Uint8Array | "all" {
    const liar = x.spec?.liar;
    if (liar === "phantom" || liar === "silent") return "all";
    if (x.planner?.done) return "all";
    return x.have.slice();
  }

  #fanOutHave(x: Node, piece: number, busy: number): void {
    const now = this.clock.now;
    const complete = x.planner?.done ?? false;
    for (const s of x.subscribers) {
      const n = this.nodes[s];
      // (a "have" for a piece the fetcher holds changes nothing it would pick: skipped, which
      // halves the simulator's work; completeness is told separately)
      if (!n.alive || !n.planner || n.planner.done) continue;
      if (complete) n.planner.sourceComplete(x.id);
      if (n.have[piece] || !n.planner.hasSource(x.id)) continue;
      const wanted = n.planner.sourceHas(x.id, piece);
      if (this.sc.loadHints === true) n.planner.sourceBusyFor(now, x.id, busy);
      if (wanted) this.soon(n);
    }
  }

  #sendNotices(n: Node): void {
    const notices = n.planner!.takeNotices();
    if (notices.length === 0) return;
    this.clock.at(this.clock.now + this.delay, () => {
      for (const s of n.subscribers) {
        const m = this.nodes[s];
        if (!m.alive || !m.planner || !m.planner.hasSource(n.id)) continue;
        for (const t of notices) {
          if (t.fetching) m.planner.sourceFetching(n.id, t.piece, this.clock.now);
          else m.planner.sourceNotFetching(n.id, t.piece);
        }
      }
    });
  }

  #outcome(): SwarmOutcome {
    const peers = this.nodes.slice(1).map((n): PeerOutcome => ({
      arriveMs: n.spec!.arriveMs ?? 0,
      doneMs: n.doneAt,
      leftMs: n.leftAt,
      uploaded: n.uploaded,
      badReceived: n.badReceived,
      fromServer: n.fromServer,
      longestStallMs: n.longestStall,
      liar: n.spec!.liar,
    }));
    const honest = peers.filter((p) => !p.liar);
    const done = honest.filter((p) => p.doneMs === p.doneMs);
    const lastDoneMs = Math.max(0, ...done.map((p) => p.doneMs));
    const finished = honest.every((p) => p.doneMs === p.doneMs || p.leftMs === p.leftMs);
    const bound = boundMs(this.sc);
    const serverBytes = this.nodes[SERVER].uploaded;
    return {
      finished,
      lastDoneMs,
      boundMs: bound,
      ratio: lastDoneMs / bound,
      serverBytes,
      serverShare: serverBytes / this.sc.fileBytes,
      badAccepted: this.badAccepted,
      badReceived: peers.reduce((t, p) => t + p.badReceived, 0),
      duplicateBytes: this.duplicateBytes,
      peers,
      firstCopiesDoneMs: this.firstCopiesDoneMs,
      busyAnswers: this.busyAnswers,
      events: this.clock.processed,
    };
  }
}

/** A per-node seed from the scenario seed (so nodes' generators are unrelated). */
function mix(seed: number, id: number): number {
  let h = Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(id + 1, 0xc2b2ae35);
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  return (h ^ (h >>> 15)) >>> 0;
}
