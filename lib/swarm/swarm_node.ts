/**
 * One fetcher's life in a swarm, as a pure state machine beside the fetch coordinator: it
 * announces to the tracker, meets peers (from the tracker and by peer exchange), keeps a
 * {@link PeerLink} to each (have-maps, peer exchange, liveness), adds them to the transfer as
 * sources that hold what their have-maps say, answers their requests with the pieces verified so
 * far ({@link PeerShare}), and excludes those that lie. Every node sends and receives at once on
 * one socket: the port it announces.
 *
 * Events in: `handleDatagram` (anything on the shared socket but the data the shell routes to
 * the transfer directly), `handleTimeout`, `pieceVerified`, `peerDropped` (the transfer gave a
 * peer up), `completed`, `stop`. Actions out: datagrams and runs of blocks to send
 * (`pollSend`), lines for the user (`poll`). The transfer is reached through
 * {@link SwarmTransfer} (the coordinator implements it), so the simulator can drive a swarm of
 * these with the real code in the loop.
 *
 * Coordination with the servers: a server's upload is the swarm's floor, so a fetcher asks its
 * servers only for pieces that none of the peers it knows holds or fetches from a server
 * (`serverMayServe`), in an order of its own (random per fetcher): the servers' bytes then go to
 * different pieces, and the peers relay them. Peers' words lag and a node knows only tens of
 * peers, so the server has the last word: once this node has a peer, its requests carry the
 * swarm flag, and a server answers GIVEN_OUT for a piece it gave another swarm fetcher (with
 * pieces it never sent, which this node asks for next).
 *
 * Trust: nothing a peer or the tracker says is trusted. A peer's pieces are kept only when they
 * match the trusted piece hashes (the transfer checks every piece); a peer that sent a bad piece
 * is excluded for good, and so is one that keeps answering NOT_HELD for pieces it claimed.
 *
 * @module
 */

import {
  compactPeerSize,
  decode,
  encode,
  MAX_PEERS_PER_REPLY,
  type Packet,
  requestIdOfRequest,
} from "../wire/packet.ts";
import { formatIpv6, parseIpv4, parseIpv6 } from "../io/udp/peer_address.ts";
import type { PieceFilter } from "../engine/scheduler.ts";
import type { RunAction } from "../serving/serve_core.ts";
import { type AnnounceProgress, Announcer, type AnnouncerOptions } from "../tracker/announcer.ts";
import { splitCompactPeer } from "../tracker/bep15_packet.ts";
import { HaveLog } from "./have_log.ts";
import { DEFAULT_PEER_TIMING, PeerLink, type PeerLinkTiming } from "./peer_link.ts";
import { type HeldReply, type PeerShare, RARE_HOLDERS } from "./peer_share.ts";

/** What the swarm needs of the transfer (the fetch coordinator implements it). */
export interface SwarmTransfer {
  /** Peer `peer` joins as a source of the pieces `has` accepts; false if it cannot now. */
  addPeer(
    now: number,
    peer: number,
    has: PieceFilter,
    forget: (piece: number) => void,
    token: Uint8Array,
  ): boolean;
  /** Peer `peer` leaves the transfer. */
  removePeer(peer: number, reason: string): void;
  /** Peer `peer` is asked nothing while `paused` (it went quiet: maybe gone, maybe slow). */
  pausePeer(peer: number, paused: boolean): void;
  /**
   * Peer `peer` answers (with `token` our address is proven by): it may be asked for the piece
   * hashes while they are not trusted yet (PROTOCOL.md §10.7), before it holds any piece.
   */
  peerAnswers(peer: number, token: Uint8Array): void;
  /** Peer `peer` holds more pieces than before: `piece`, or (without it) some. */
  peerHas(peer: number, piece?: number): void;
  /** Peer `peer`'s answer to a data request (RETRY, ERROR). */
  handlePeerDatagram(now: number, peer: number, p: Packet): void;
  /** What the servers may be asked for changed (a peer stopped fetching a piece from them). */
  serversMayHaveWork(): void;
  /** Whether requests to servers carry the swarm flag (PROTOCOL.md §10.6). */
  askServersAsSwarm(on: boolean): void;
  /** `piece` is fresh in the swarm (one peer holds it): fetch it before older pieces. */
  preferPiece(piece: number): void;
  /** Whether `addPeer` can take peers now (not before the transfer runs with trusted hashes). */
  acceptsPeers(): boolean;
}

/** A peer's address. */
export interface PeerAddr {
  hostname: string;
  port: number;
}

/** What the node asks the shell to send. */
export type SwarmSend =
  /** One datagram to `to` (the tracker or a peer). */
  | { kind: "datagram"; to: PeerAddr; bytes: Uint8Array }
  /** Blocks of the file to read and send to peer `to`, not before `run.at`. */
  | { kind: "run"; to: PeerAddr; run: RunAction };

/** A line for the user. */
export interface SwarmNotice {
  kind: "notice";
  line: string;
}

/** Settings of a node. */
export interface SwarmNodeOptions {
  /** Pieces of the file. */
  pieces: number;
  fileId: bigint;
  /** The tracker's address (numeric). */
  tracker: PeerAddr;
  /** The tracker as the user wrote it, for messages. */
  trackerLabel: string;
  /** Announce settings (info-hash, peer id, port, family...). */
  announce: AnnouncerOptions;
  /** Peers taken into the transfer at most (a bounded set: tens, not the swarm). */
  maxPeers?: number;
  /** Request ids (random in the shell, seeded in the simulator). */
  nextRequestId: () => number;
  timing?: PeerLinkTiming;
  /** This node's own address as peers list it, if known (to skip itself in peer lists). */
  self?: PeerAddr;
  /**
   * The servers of the servers file: a tracker lists a seeding server (`serve --tracker`) as a
   * peer, but it already is a source, and the swarm must not spend its upload twice.
   */
  servers?: PeerAddr[];
}

/** Default bound on peers in the transfer. */
export const MAX_PEERS = 30;
/**
 * Room beyond `maxPeers` for peers that ask this node for something (they found it; it did not
 * pick them). Without it, a fetcher that announced after the others had filled their sets was
 * nobody's peer: it uploaded nothing, and a piece the server gave it first stayed with it until
 * the server's first pass ended (the simulator, N = 32: everyone waited 0.8 s on one piece).
 * 40, not 20: in a crowd a node is asked by more peers than it picked, and a peer it serves
 * without polling it is a link whose pieces it does not hear of (the real-code simulator, 200
 * fetchers of 8 MiB: 1.39 × the bound against 1.45 at seed 1, 1.39 against 1.44 at seed 2; 100
 * fetchers 1.34 against 1.36). Held have polls (PROTOCOL.md §10.3) make the extra links cheap;
 * before them, 40 cost the 100-fetcher crowd more than it gained (1.48 against 1.46).
 */
export const ASKING_PEERS_ROOM = 40;
/** A dead peer may be tried again after this long (ms), if it is listed again. */
const RETRY_DEAD_MS = 20_000;
/**
 * How long pieces held by peers keep this node from asking its servers for them (ms): normally
 * a peer relays a piece long before; a peer that holds pieces and serves them too slowly (or not
 * at all, while answering just enough to stay) cannot keep a fetch from completing.
 */
const PEER_HOLD_MS = 20_000;

/** Peers met at most in one run (each keeps a little state, and a source in the transfer). */
const MAX_MET = 4096;

/** Addresses banned at most (the oldest are forgotten first). */
const MAX_BANNED = 4096;

/**
 * How long a peer's word that it is fetching a piece from a server keeps this node from asking
 * its servers for it (ms): long enough for a piece to cross a capped server, short enough that a
 * peer claiming everything and delivering nothing only delays the swarm, never stalls it.
 */
const CLAIM_HOLD_MS = 4000;

/**
 * How long a node keeps the swarm flag on its server requests without any peer answering (ms):
 * peers meet within a second or two; past this, a server's GIVEN_OUT would only make it wait.
 */
const FLAG_GRACE_MS = 5000;

/** NOT_HELD answers for claimed pieces before a peer counts as lying about what it holds. */
const MAX_FALSE_CLAIMS = 4;

interface Peer {
  id: number;
  addr: PeerAddr;
  key: string;
  link: PeerLink;
  /** Whether the transfer took it as a source. */
  inTransfer: boolean;
  /** NOT_HELD answers for pieces its have-map claimed. */
  falseClaims: number;
  /** The pieces it last said it fetches from a server. */
  fetching: number[];
  /** Silent a while (its link said `quiet`): its pieces are not counted as available. */
  quiet: boolean;
  /** The claims it had when it went quiet, and since when they counted (see `#quiet`). */
  claimsBefore?: Map<number, number>;
}

/** Per-peer figures, for the report. */
export interface PeerFigures {
  address: string;
  /** Whether it still takes part. */
  alive: boolean;
  reason?: string;
}

/** One node of a swarm (see the module comment). */
export class SwarmNode {
  /** Pieces this node holds, verified: what it shares. */
  readonly have: HaveLog;
  /**
   * How many peers in the transfer hold each piece (a peer that cannot serve us yet must not
   * hold the servers back).
   */
  readonly availability: Uint16Array;
  /** Since when each piece has been held by a peer in the transfer (ms). */
  #availableSince: Float64Array;
  /** Pieces already put first once (see `#held`): at most once each, whatever peers claim. */
  #preferred: Uint8Array;
  /** How many known peers are fetching each piece from a server now (their latest word). */
  readonly claimed: Uint16Array;
  /** Since when each claimed piece has been claimed (ms): a claim holds the servers back only so long. */
  #claimedSince: Float64Array;
  /** Whether requests to the servers carry the swarm flag now (the shell sets it at start). */
  #swarmRequests = true;
  /** The tracker is silent (its "unreachable") or refused us, and has not answered since. */
  #trackerDown = false;
  /** When the node started (ms): its grace for a first peer to answer. */
  #startedAt: number;
  /** NOT_HELD answers counted against an address that then started over (see "restarted"). */
  #claimsBefore = new Map<string, number>();
  #o: SwarmNodeOptions;
  #transfer: SwarmTransfer;
  #share: PeerShare;
  #announcer: Announcer;
  #peers = new Map<string, Peer>();
  #byId: (Peer | undefined)[] = [];
  /** Addresses of peers excluded for good (a bad piece, false claims, another file). */
  #banned = new Set<string>();
  /** Addresses of dead peers and when they died. */
  #dead = new Map<string, number>();
  /** Peers learnt of and not tried yet (bounded). */
  #candidates: PeerAddr[] = [];
  #sends: SwarmSend[] = [];
  #notices: SwarmNotice[] = [];
  #complete = false;
  #stopped = false;
  #nextPeerId = 0;
  /** Figures of every peer met, by id. */
  readonly peers: PeerFigures[] = [];

  constructor(
    o: SwarmNodeOptions,
    transfer: SwarmTransfer,
    share: PeerShare,
    have: HaveLog,
    now: number,
  ) {
    this.#o = o;
    this.#transfer = transfer;
    this.#share = share;
    this.have = have;
    this.availability = new Uint16Array(o.pieces);
    this.claimed = new Uint16Array(o.pieces);
    this.#claimedSince = new Float64Array(o.pieces);
    this.#availableSince = new Float64Array(o.pieces);
    this.#preferred = new Uint8Array(o.pieces);
    this.#announcer = new Announcer(o.announce, now);
    this.#startedAt = now;
    // a peer that asks us is in the swarm: meet it too (the first to announce learns of the
    // others this way, not at its next announce)
    share.holders = (piece) => this.availability[piece];
    share.onPeerRequest = (from) => {
      if (!this.#peers.has(keyOf(from.hostname, from.port))) this.#learn([from], this.#now, true);
    };
  }

  /** Time of the latest event (for what a callback learns). */
  #now = 0;
  #lastServerNudge = 0;

  /**
   * Whether the servers should be asked for `piece`: no known live peer holds it or is fetching
   * it from a server (the servers' upload is the swarm's floor: each piece should leave a server
   * about once, and peers relay it).
   */
  serverMayServe: PieceFilter = (piece) =>
    (this.availability[piece] === 0 ||
      this.#now - this.#availableSince[piece] > PEER_HOLD_MS) &&
    (this.claimed[piece] === 0 || this.#now - this.#claimedSince[piece] > CLAIM_HOLD_MS);

  /** The address of peer `peer` (for the shell's data requests). */
  addressOf(peer: number): PeerAddr | undefined {
    return this.#byId[peer]?.addr;
  }

  /** The peer at `hostname`:`port`, if it is in the swarm's table (for the data hot path). */
  peerAt(hostname: string, port: number): number | undefined {
    return this.#peers.get(keyOf(hostname, port))?.id;
  }

  /** Data arrived from peer `peer`: it is alive. */
  heard(peer: number, now: number): void {
    const p = this.#byId[peer];
    if (!p) return;
    p.link.heard(now);
    if (p.quiet) this.#drainLink(p, now); // (it is back: counted again at once)
  }

  /** Live peers in the transfer. */
  get livePeers(): number {
    let n = 0;
    for (const p of this.#peers.values()) if (p.inTransfer) n++;
    return n;
  }

  /** Progress to report in announces. */
  setProgress(p: AnnounceProgress): void {
    this.#announcer.setProgress(p);
  }

  /**
   * A piece was verified here at `now`: it is shared from now on, and the have polls held for
   * news are answered — at once if the piece is rare among this node's peers ({@link isRare}),
   * else with the next batch (`HAVE_BATCH_MS`).
   */
  pieceVerified(piece: number, now: number): void {
    this.#now = now;
    this.have.add(piece);
    this.#releaseHeld(now, this.isRare(piece));
  }

  /**
   * Whether fewer than {@link RARE_HOLDERS} peers in the transfer hold `piece`, as far as this
   * node knows: its news is told at once and requests for it go first (`PeerShare`).
   */
  isRare(piece: number): boolean {
    return this.availability[piece] < RARE_HOLDERS;
  }

  /** Answers the held have polls that are due (news, or their hold is over). */
  #releaseHeld(now: number, rare = false): void {
    if (!this.#share.heldDue(now)) return; // (every turn: nothing allocated when nothing is due)
    const out: HeldReply[] = [];
    this.#share.releaseHeld(now, out, rare);
    for (const r of out) {
      this.#sends.push({
        kind: "datagram",
        to: { hostname: r.to.hostname, port: r.to.port },
        bytes: r.bytes,
      });
    }
  }

  /** The file is complete: announce it; have-polls stop (nothing more is needed). */
  completed(now: number): void {
    this.#complete = true;
    this.#announcer.complete(now);
    for (const p of this.#peers.values()) p.link.seeding = true;
  }

  /** Leaving: announce `stopped` (the shell waits for {@link stopped} a moment). */
  stop(now: number): void {
    this.#stopped = true;
    this.#announcer.stop(now);
  }

  /**
   * The piece hashes are trusted now (PROTOCOL.md §10.7): the share gets them, and the peers
   * met before join the transfer at once (a complete peer's have-map does not grow: it would
   * wait for the once-a-second retry otherwise, and the servers send what it holds).
   */
  hashesTrusted(hashes: Uint8Array, now: number): void {
    this.#now = now;
    this.#share.trustHashes(hashes);
    this.#joinWaiting(now);
  }

  /** The peers met that hold pieces and are not in the transfer yet join it. */
  #joinWaiting(now: number): void {
    for (const p of this.#peers.values()) {
      if (!p.inTransfer && p.link.have.count > 0) this.#join(p, now);
    }
  }

  /** Whether the transfer took peers when last asked (see `handleTimeout`). */
  #accepting = false;

  /** Whether the tracker heard `stopped` (or gave up): the shell may close. */
  get stopped(): boolean {
    return this.#announcer.done;
  }

  /** The transfer gave peer `peer` up (`reason`): a bad piece bans it. */
  peerDropped(peer: number, reason: string, now: number): void {
    const p = this.#byId[peer];
    if (!p) return;
    if (/failed the hash/.test(reason)) this.#ban(p, `sent a piece that failed its hash`);
    else if (/^excluded: /.test(reason)) this.#ban(p, reason.slice("excluded: ".length));
    else this.#forgetPeer(p, now, reason);
  }

  /** A datagram on the shared socket from `from` (data for the transfer excepted). */
  handleDatagram(now: number, epochMs: number, data: Uint8Array, from: PeerAddr): void {
    this.#now = now;
    if (sameAddr(from, this.#o.tracker)) {
      if (this.#announcer.handleDatagram(now, data)) return this.#drainAnnouncer(now);
    }
    const requestId = requestIdOfRequest(data); // (also of a sealed request: a private swarm)
    if (requestId === undefined) {
      const r = decode(data);
      if (r.ok) this.#onReply(now, r.packet, from);
      return;
    }
    if (this.#isFromSelf(requestId, from)) return;
    const out: Parameters<PeerShare["onDatagram"]>[4] = [];
    const netAddr: Deno.NetAddr = { transport: "udp", hostname: from.hostname, port: from.port };
    this.#share.onDatagram(now, epochMs, data, netAddr, out);
    for (const a of out) {
      if (a.kind === "reply") this.#sends.push({ kind: "datagram", to: from, bytes: a.bytes });
      else this.#sends.push({ kind: "run", to: from, run: a });
    }
  }

  /** Timers: announces, peer links, new peers to meet. */
  handleTimeout(now: number): void {
    this.#now = now;
    if (now - this.#lastServerNudge >= 1000) {
      // claims that have held the servers back long enough let them go (see CLAIM_HOLD_MS)
      this.#lastServerNudge = now;
      this.#transfer.serversMayHaveWork();
      this.#joinWaiting(now);
      for (const [key, died] of this.#dead) if (now - died >= RETRY_DEAD_MS) this.#dead.delete(key);
    }
    this.#releaseHeld(now);
    if (!this.#accepting && this.#transfer.acceptsPeers()) {
      // a resume's re-check ran after the list was trusted: the peers met meanwhile (a seed's
      // have-map never grows to call them again) join now, not at the next once-a-second pass
      this.#accepting = true;
      this.#joinWaiting(now);
    }
    this.#announcer.handleTimeout(now);
    this.#drainAnnouncer(now);
    this.#flagServerRequests();
    if (this.#stopped) return;
    if (now >= this.#nextLinkDue()) {
      for (const p of [...this.#peers.values()]) {
        p.link.handleTimeout(now);
        this.#drainLink(p, now);
      }
      this.#linksChanged();
    }
    this.#meet(now);
  }

  /** The next thing to send. */
  pollSend(now: number): SwarmSend | undefined {
    const queued = this.#sends.shift();
    if (queued) return queued;
    if (this.#stopped || now < this.#nextLinkDue()) return undefined;
    for (const p of this.#peers.values()) {
      const q = p.link.pollTransmit(now);
      if (!q) continue;
      this.#linksChanged();
      return { kind: "datagram", to: p.addr, bytes: encode(q) };
    }
    return undefined;
  }

  /**
   * When some peer link next needs a turn (ms): kept, so that the loop's every turn (one per
   * datagram, often) does not visit seventy links that have nothing due. Anything that can make a
   * link due sooner — a reply, a send, a new link, a pass over them all — forgets it.
   */
  #linksDue = -Infinity;

  #linksChanged(): void {
    this.#linksDue = -Infinity;
  }

  #nextLinkDue(): number {
    if (this.#linksDue === -Infinity) {
      let t = Infinity;
      for (const p of this.#peers.values()) t = Math.min(t, p.link.pollTimeout() ?? Infinity);
      this.#linksDue = t;
    }
    return this.#linksDue;
  }

  /**
   * Peer exchange: up to 50 live peers of `asker`'s address family, not `asker` itself, as
   * compact entries (PROTOCOL.md §10.4).
   */
  peerList(asker: PeerAddr): { family: 4 | 6; entries: Uint8Array } {
    const family = asker.hostname.includes(":") ? 6 : 4;
    const size = compactPeerSize(family);
    const out = new Uint8Array(MAX_PEERS_PER_REPLY * size);
    let n = 0;
    for (const p of this.#peers.values()) {
      if (n === MAX_PEERS_PER_REPLY) break;
      if (sameAddr(p.addr, asker) || !p.link.answered) continue; // (only peers that answered)
      const ip = family === 4 ? parseIpv4(p.addr.hostname) : parseIpv6(p.addr.hostname);
      if (!ip || ip.length + 2 !== size) continue;
      out.set(ip, n * size);
      out[n * size + size - 2] = p.addr.port >> 8;
      out[n * size + size - 1] = p.addr.port & 0xff;
      n++;
    }
    return { family, entries: out.subarray(0, n * size) };
  }

  /** The next line for the user. */
  poll(): SwarmNotice | undefined {
    return this.#notices.shift();
  }

  /** When the node next needs `handleTimeout` (ms). */
  pollTimeout(): number | undefined {
    let t = this.#announcer.pollTimeout() ?? Infinity;
    t = Math.min(t, this.#share.heldUntil() ?? Infinity);
    if (this.#sends.length > 0) t = Math.min(t, this.#now); // (answers to send: a turn now)
    if (!this.#stopped) t = Math.min(t, this.#nextLinkDue());
    return t === Infinity ? undefined : t;
  }

  #drainAnnouncer(now: number): void {
    for (let e = this.#announcer.poll(); e; e = this.#announcer.poll()) {
      const label = this.#o.trackerLabel;
      if (e.kind === "peers") this.#learn(e.peers.map((c) => fromCompact(c)), now);
      else if (e.kind === "refused") {
        this.#trackerDown = true;
        this.#say(`udpget: tracker ${label} refused: ${e.message}`);
      } else if (e.kind === "unreachable") {
        this.#trackerDown = true;
        this.#say(`udpget: tracker ${label} does not answer; fetching without the swarm's help`);
      } else if (e.kind === "reachable") {
        this.#trackerDown = false;
        this.#say(`udpget: tracker ${label} answers again`);
      }
    }
    for (let b = this.#announcer.pollTransmit(); b; b = this.#announcer.pollTransmit()) {
      this.#sends.push({ kind: "datagram", to: this.#o.tracker, bytes: b });
    }
  }

  #onReply(now: number, p: Packet, from: PeerAddr): void {
    const peer = this.#peers.get(keyOf(from.hostname, from.port));
    if (!peer) return; // not a peer we asked anything
    peer.link.heard(now);
    if (peer.link.handleReply(now, p)) {
      this.#linksChanged();
      if (!peer.inTransfer) this.#transfer.peerAnswers(peer.id, peer.link.token);
      return this.#drainLink(peer, now);
    }
    // (also before it joins the transfer: the answer to a request for the piece hashes)
    this.#transfer.handlePeerDatagram(now, peer.id, p);
  }

  #drainLink(p: Peer, now: number): void {
    let grew = false;
    for (let e = p.link.poll(); e; e = p.link.poll()) {
      switch (e.kind) {
        case "has":
          if (p.inTransfer && !p.quiet) {
            this.#held(e.piece, true);
            this.#transfer.peerHas(p.id, e.piece);
          }
          grew = true;
          break;
        case "complete":
          grew = true;
          break;
        case "peers":
          this.#learn(compactList(e.family, e.entries), now);
          break;
        case "fetching":
          this.#setFetching(p, e.pieces);
          break;
        case "unusable":
          this.#ban(p, e.reason);
          return;
        case "quiet":
          this.#quiet(p, true);
          break;
        case "back":
          this.#quiet(p, false);
          break;
        case "dead":
          this.#forgetPeer(p, now, "silent");
          return;
        case "restarted":
          // it holds less than its old have-map says: meet it anew, with an empty one, but not
          // with a clean record (starting over must not wipe out its false claims)
          this.#removePeer(p, "started over with fewer pieces");
          if (this.#claimsBefore.size < MAX_BANNED) this.#claimsBefore.set(p.key, p.falseClaims);
          this.#learn([p.addr], now);
          return;
      }
    }
    if (grew) this.#join(p, now);
  }

  /**
   * Requests to the servers carry the swarm flag while this node has pieces to fetch and can get
   * from peers what a server gave another fetcher: a peer answers, or, for its first
   * `FLAG_GRACE_MS`, peers may still come (the tracker has not been found silent or refusing).
   * A node alone (firewalled, a refusing tracker, peers gone) asks as a plain fetcher.
   */
  #flagServerRequests(): void {
    let on = false;
    if (!this.#complete && !this.#stopped) {
      on = !this.#trackerDown && this.#now - this.#startedAt < FLAG_GRACE_MS;
      for (const p of this.#peers.values()) {
        if (on) break;
        on = p.link.answered;
      }
    }
    if (on === this.#swarmRequests) return;
    this.#swarmRequests = on;
    this.#transfer.askServersAsSwarm(on);
  }

  /** A peer with pieces is taken into the transfer (once), or told it has more. */
  #join(p: Peer, now: number): void {
    if (p.inTransfer) return this.#transfer.peerHas(p.id);
    if (this.#complete || p.quiet) return; // (a quiet peer joins once heard again)
    const has: PieceFilter = (piece) => p.link.have.has(piece);
    const forget = (piece: number) => this.#falseClaim(p, piece);
    p.inTransfer = this.#transfer.addPeer(now, p.id, has, forget, p.link.token);
    if (!p.inTransfer) return; // (not yet: a resume's re-check; tried again on the next tick)
    for (let piece = 0; piece < this.#o.pieces; piece++) {
      if (p.link.have.has(piece)) this.#held(piece);
    }
  }

  /**
   * A peer in the transfer holds `piece`; `fresh`: it just said so (not a have-map read when it
   * joined). A piece fresh in the swarm goes first, once (rarest first, as the peers see it):
   * when a capped server feeds a crowd, every piece must reach everyone, and the peers' upload
   * has to keep pace with the server (97 % of it at N = 32), so the pieces the server sent last
   * set the finish; taken in random order instead, they waited behind older ones at every hop.
   */
  #held(piece: number, fresh = false): void {
    if (this.availability[piece]++ !== 0) return;
    this.#availableSince[piece] = this.#now;
    if (!fresh || this.#complete || this.#preferred[piece]) return;
    this.#preferred[piece] = 1;
    this.#transfer.preferPiece(piece);
  }

  /** Peer `p`'s latest word on what it fetches from a server replaces its last. */
  #setFetching(p: Peer, pieces: number[]): void {
    let freed = false;
    const now = new Set(pieces);
    const before = new Set(p.fetching);
    // a claim repeated keeps its start: a peer naming a piece in every answer cannot hold the
    // servers back longer than CLAIM_HOLD_MS
    for (const piece of before) if (!now.has(piece)) freed = --this.claimed[piece] === 0 || freed;
    for (const piece of now) {
      if (before.has(piece) || this.claimed[piece]++ !== 0) continue;
      this.#claimedSince[piece] = p.claimsBefore?.get(piece) ?? this.#now;
    }
    p.fetching = [...now];
    p.claimsBefore = undefined;
    if (freed) this.#transfer.serversMayHaveWork();
  }

  /**
   * Peer `p` went quiet (`on`) or was heard again. A quiet peer's pieces and claims do not keep
   * the servers from being asked for them, and it is asked for nothing: a piece only a leaver
   * had would wait for its death. It stays in the transfer: a peer only slow is heard again,
   * counted and asked again.
   */
  #quiet(p: Peer, on: boolean): void {
    if (p.quiet === on) return;
    p.quiet = on;
    if (!p.inTransfer) return;
    for (let piece = 0; piece < this.#o.pieces; piece++) {
      if (!p.link.have.has(piece)) continue;
      if (on) this.availability[piece]--;
      else this.#held(piece);
    }
    this.#transfer.pausePeer(p.id, on);
    if (!on) return;
    // its claims go too (a leaver's would hold the servers back CLAIM_HOLD_MS), but keep their
    // start: made anew at each return, a peer going quiet and back would never see them expire
    const since = new Map(p.fetching.map((piece) => [piece, this.#claimedSince[piece]]));
    this.#setFetching(p, []);
    p.claimsBefore = since;
    this.#transfer.serversMayHaveWork();
  }

  #falseClaim(p: Peer, piece: number): void {
    if (p.link.have.forget(piece) && p.inTransfer && !p.quiet) this.availability[piece]--;
    this.#linksChanged(); // (a complete peer that is one no more is polled again)
    if (++p.falseClaims >= MAX_FALSE_CLAIMS) {
      this.#ban(p, `claims pieces it does not hold (${p.falseClaims} NOT_HELD answers)`);
    }
  }

  /**
   * Addresses learnt (tracker or peer exchange): new ones become candidates. One that `asked`
   * this node is met at once while the set has room for asking peers too.
   */
  #learn(addrs: PeerAddr[], now: number, asked = false): void {
    for (const a of addrs) {
      const key = keyOf(a.hostname, a.port);
      if (a.port === 0 || this.#peers.has(key) || this.#banned.has(key)) continue;
      if (this.#o.self && sameAddr(a, this.#o.self)) continue;
      if (this.#o.servers?.some((s) => sameAddr(a, s))) continue;
      const died = this.#dead.get(key);
      if (died !== undefined && now - died < RETRY_DEAD_MS) continue;
      const max = this.#o.maxPeers ?? MAX_PEERS;
      const room = this.#peers.size < max + ASKING_PEERS_ROOM && this.#nextPeerId < MAX_MET;
      // (one per address: a host asking from many ports would take the room for others)
      if (asked && room && !this.#hasPeerAt(a.hostname)) {
        this.#meetOne(a, key, now);
        continue;
      }
      if (this.#candidates.some((c) => keyOf(c.hostname, c.port) === key)) continue;
      if (this.#candidates.length < 4 * (this.#o.maxPeers ?? MAX_PEERS)) this.#candidates.push(a);
    }
    this.#meet(now);
  }

  /** Whether a peer at `hostname` (any port) is in the set. */
  #hasPeerAt(hostname: string): boolean {
    for (const p of this.#peers.values()) if (p.addr.hostname === hostname) return true;
    return false;
  }

  /** Takes candidates while the peer set has room. */
  #meet(now: number): void {
    const max = this.#o.maxPeers ?? MAX_PEERS;
    while (this.#peers.size < max && this.#candidates.length > 0 && this.#nextPeerId < MAX_MET) {
      const a = this.#candidates.shift()!;
      const key = keyOf(a.hostname, a.port);
      if (this.#peers.has(key) || this.#banned.has(key)) continue;
      this.#meetOne(a, key, now);
    }
  }

  /** Takes peer `a` (whose key is `key`) into the set now. */
  #meetOne(a: PeerAddr, key: string, now: number): void {
    const id = this.#nextPeerId++;
    const link = new PeerLink(
      this.#o.pieces,
      this.#o.fileId,
      now,
      this.#o.nextRequestId,
      this.#o.timing ?? DEFAULT_PEER_TIMING,
    );
    link.seeding = this.#complete;
    const falseClaims = this.#claimsBefore.get(key) ?? 0;
    this.#claimsBefore.delete(key);
    const p: Peer = {
      id,
      addr: a,
      key,
      link,
      inTransfer: false,
      falseClaims,
      fetching: [],
      quiet: false,
    };
    this.#peers.set(key, p);
    this.#linksChanged();
    this.#byId[id] = p;
    this.peers[id] = { address: formatAddr(a), alive: true };
  }

  /** Our own request coming back (a peer list named this node): forget that "peer". */
  #isFromSelf(requestId: number, from: PeerAddr): boolean {
    const peer = this.#peers.get(keyOf(from.hostname, from.port));
    if (!peer || !peer.link.issued(requestId)) return false;
    this.#o.self = from;
    this.#removePeer(peer, "this node itself");
    this.#banned.add(peer.key);
    return true;
  }

  #ban(p: Peer, reason: string): void {
    if (this.#banned.size >= MAX_BANNED) this.#banned.delete(this.#banned.values().next().value!);
    this.#banned.add(p.key);
    this.#removePeer(p, `excluded: ${reason}`);
    this.#say(`udpget: peer ${formatAddr(p.addr)} excluded: ${reason}`);
  }

  #forgetPeer(p: Peer, now: number, reason: string): void {
    this.#dead.set(p.key, now);
    this.#removePeer(p, reason);
  }

  #removePeer(p: Peer, reason: string): void {
    if (!this.#peers.delete(p.key)) return;
    this.#byId[p.id] = undefined;
    if (p.inTransfer && !p.quiet) {
      for (let piece = 0; piece < this.#o.pieces; piece++) {
        if (p.link.have.has(piece)) this.availability[piece]--;
      }
    }
    this.#setFetching(p, []);
    // (also one not in the transfer yet: it may be asked for the piece hashes until then)
    this.#transfer.removePeer(p.id, reason);
    p.inTransfer = false;
    const f = this.peers[p.id];
    if (f) Object.assign(f, { alive: false, reason });
  }

  #say(line: string): void {
    this.#notices.push({ kind: "notice", line });
  }
}

function keyOf(hostname: string, port: number): string {
  return `${hostname}|${port}`;
}

function sameAddr(a: PeerAddr, b: PeerAddr): boolean {
  return a.port === b.port && a.hostname === b.hostname;
}

/** `1.2.3.4:5` or `[::1]:5`. */
export function formatAddr(a: PeerAddr): string {
  return a.hostname.includes(":") ? `[${a.hostname}]:${a.port}` : `${a.hostname}:${a.port}`;
}

/** A compact peer (6 or 18 bytes) as an address. */
export function fromCompact(c: Uint8Array): PeerAddr {
  const { address, port } = splitCompactPeer(c);
  return { hostname: address.length === 4 ? address.join(".") : formatIpv6(address), port };
}

/** The compact entries of a PEERS_REPLY as addresses. */
function compactList(family: number, entries: Uint8Array): PeerAddr[] {
  const size = compactPeerSize(family);
  const out: PeerAddr[] = [];
  for (let at = 0; at + size <= entries.length; at += size) {
    out.push(fromCompact(entries.subarray(at, at + size)));
  }
  return out;
}
