/**
 * The swarm's I/O beside a fetch: moves bytes between the swarm socket, the `.part` and the pure
 * parts — the {@link SwarmNode} (tracker, peers, sharing) and the fetch coordinator (the
 * transfer, which takes peers as sources). The fetch's drive loop calls {@link SwarmDrive.service}
 * on every turn and sleeps no longer than {@link SwarmDrive.pollTimeout}; after the fetch,
 * {@link SwarmDrive.seed} keeps sharing for the seed time.
 *
 * Data from peers is written from the receive batch, as the servers' is; the runs peers ask for
 * are read from the `.part` (the same file once renamed: the handle stays valid) and sent when the
 * share rate lets them, never holding up the loop.
 *
 * @module
 */

import { RequestAuthenticator, seal } from "../wire/auth.ts";
import { CookieJar } from "../wire/cookie.ts";
import { fileIdOf, requestIdOfRequest } from "../wire/packet.ts";
import type { FetchCoordinator } from "../engine/fetch_coordinator.ts";
import type { FileMeta } from "../engine/consensus.ts";
import { RequestGate } from "../serving/request_gate.ts";
import { ServeCore } from "../serving/serve_core.ts";
import { HaveLog } from "../swarm/have_log.ts";
import { PeerShare, shareCoreOptions } from "../swarm/peer_share.ts";
import { ShareOutbox } from "../swarm/share_outbox.ts";
import { swarmId } from "../swarm/swarm_id.ts";
import { type PeerAddr, SwarmNode } from "../swarm/swarm_node.ts";
import type { BlockSink } from "./block_writer.ts";
import type { SwarmSocket } from "./swarm_socket.ts";
import type { PeerAddress } from "./udp/peer_address.ts";

/**
 * What a swarm starts from: the agreed metadata (its info-hash), before the piece hashes are
 * trusted, so that peers may give them (PROTOCOL.md §10.7); `trustHashes` follows.
 */
export interface SwarmStart {
  socket: SwarmSocket;
  /** The tracker's numeric address, and as the user wrote it. */
  tracker: PeerAddr;
  trackerLabel: string;
  /** `--share-rate`: bytes per second to peers at most. */
  shareRate?: number;
  /** `--secret-file`: a private swarm (peers and tracker need the key). */
  key?: Uint8Array;
  coordinator: FetchCoordinator;
  meta: FileMeta;
  /** The `.part`, read for the pieces peers ask for. */
  partPath: string;
  family: "ipv4" | "ipv6";
  /** This node's address as others see it, when known (bound to a specific address). */
  self?: PeerAddr;
  /** The servers of the servers file (never taken as peers). */
  servers: PeerAddr[];
  /** Wakes the fetch's loop. */
  wake: () => void;
}

/** The swarm's info-hash of `meta`. */
export function infoHashOf(meta: FileMeta): Uint8Array {
  return swarmId(meta);
}

/** The swarm's I/O (see the module comment). */
export class SwarmDrive {
  readonly node: SwarmNode;
  readonly socket: SwarmSocket;
  #c: FetchCoordinator;
  #file: Deno.FsFile;
  #key: Uint8Array | undefined;
  /** Runs waiting for the share rate, and its bookkeeping (pure: the simulator's too). */
  #outbox: ShareOutbox<PeerAddress>;
  /** Reading the `.part` for a peer failed (a local fault: the fetch ends with it). */
  readError: string | undefined;
  #sending = false;
  /** Wakes the fetch's loop (a datagram came, a run may go). */
  #wake: () => void;
  constructor(
    node: SwarmNode,
    socket: SwarmSocket,
    coordinator: FetchCoordinator,
    file: Deno.FsFile,
    key: Uint8Array | undefined,
    wake: () => void,
    core: ServeCore,
  ) {
    this.#outbox = new ShareOutbox(core);
    this.node = node;
    this.socket = socket;
    this.#c = coordinator;
    this.#file = file;
    this.#key = key;
    this.#wake = wake;
  }

  /** Sets up the node, its sharing half and its I/O (see {@link SwarmStart}). */
  static start(s: SwarmStart, now: number): SwarmDrive {
    const pieces = Math.ceil(s.meta.size / s.meta.pieceSize);
    const fileId = fileIdOf(s.meta.digest);
    const have = new HaveLog(pieces);
    const random = () => crypto.getRandomValues(new Uint32Array(1))[0];
    const cookies = new CookieJar(crypto.getRandomValues(new Uint8Array(32)));
    const auth = s.key ? new RequestAuthenticator(s.key) : undefined;
    const core = new ServeCore(shareCoreOptions(s.shareRate), now);
    // (the sharing half lists the node's peers: the node is made just below)
    const ref: { node?: SwarmNode } = {};
    const share = new PeerShare(
      { ...s.meta, fileId, pieceHashes: new Uint8Array(0) },
      have,
      new RequestGate(cookies, auth),
      core,
      (asker) => ref.node!.peerList(asker),
      () => s.coordinator.serverPieces(),
    );
    const node = new SwarmNode(
      {
        pieces,
        fileId,
        tracker: s.tracker,
        trackerLabel: s.trackerLabel,
        nextRequestId: random,
        self: s.self,
        servers: s.servers,
        announce: {
          infoHash: infoHashOf(s.meta),
          peerId: crypto.getRandomValues(new Uint8Array(20)),
          key: random(),
          port: s.socket.port,
          family: s.family,
          numWant: 50,
          secret: s.key,
          random,
        },
      },
      s.coordinator,
      share,
      have,
      now,
    );
    ref.node = node;
    s.coordinator.setServerFilter(node.serverMayServe);
    const file = Deno.openSync(s.partPath, { read: true });
    return new SwarmDrive(node, s.socket, s.coordinator, file, s.key, s.wake, core);
  }

  /** The piece hashes are trusted: peers may be asked for them, and pieces may be shared. */
  trustHashes(hashes: Uint8Array): void {
    this.node.hashesTrusted(hashes, performance.now());
  }

  /** Starts receiving: peers' data into `writer` through the coordinator, the rest to the node. */
  listen(writer: BlockSink): void {
    const { node } = this;
    const c = this.#c;
    // a batch from one peer shares one address object: look the peer up once, not per datagram
    // (the look-up builds a string key); forgotten after each batch, as peers come and go
    let lastFrom: object | undefined;
    let lastPeer: number | undefined;
    this.socket.listen((now, from, h, data) => {
      if (from !== lastFrom) {
        lastFrom = from;
        lastPeer = node.peerAt(from.hostname, from.port);
      }
      const peer = lastPeer;
      if (peer === undefined) return; // data nobody here asked for
      node.heard(peer, now);
      if (c.handlePeerBlock(now, peer, h)) writer.stage(h.offset, data, h.dataAt, h.dataLen);
    }, (now, from, data) => {
      node.handleDatagram(now, Date.now(), data, from);
      this.#wake();
    }, () => {
      lastFrom = undefined;
      if (writer.holdsViews) writer.flush();
      if (c.wantsService(performance.now())) this.#wake();
    });
  }

  /** One turn of the loop: the node's timers, its sends, the transfer's requests to peers. */
  service(now: number): void {
    const { node } = this;
    const session = this.#c.session;
    if (session) {
      const left = Math.max(0, (this.#c.meta?.size ?? 0) - session.received - this.#c.resumed);
      node.setProgress({
        downloaded: session.received,
        left,
        uploaded: this.socket.stats.uploaded,
      });
    }
    node.handleTimeout(now);
    for (let s = node.pollSend(now); s; s = node.pollSend(now)) {
      const to = this.socket.address(s.to.hostname, s.to.port);
      if (s.kind === "datagram") this.#send(now, to, this.#sealed(s.bytes, s.to));
      else this.#outbox.push(to, s.run);
    }
    this.#sendRuns(now);
  }

  /** A request of the transfer for peer `peer` (the coordinator's transmit). */
  sendToPeer(peer: number, bytes: Uint8Array, copies: number): void {
    const addr = this.node.addressOf(peer);
    if (!addr) return;
    const to = this.socket.address(addr.hostname, addr.port);
    const now = performance.now();
    for (let i = 0; i < copies; i++) this.#send(now, to, this.#sealed(bytes, addr));
  }

  /** Sends one datagram that is not a run (what it counts toward the rate: `ShareOutbox.sent`). */
  #send(now: number, to: PeerAddress, bytes: Uint8Array): void {
    this.#outbox.sent(now, bytes);
    void this.socket.send(to, bytes);
  }

  /** When the swarm next needs a turn (ms). */
  pollTimeout(): number | undefined {
    const t = Math.min(this.node.pollTimeout() ?? Infinity, this.#outbox.nextAt() ?? Infinity);
    return t === Infinity ? undefined : t;
  }

  /** Sends the runs whose time has come, one at a time, in order. */
  #sendRuns(now: number): void {
    if (this.#sending) return;
    const next = this.#outbox.takeDue(now);
    if (!next) return;
    this.#sending = true;
    this.socket.sendRun(next.to, next.run, this.#file).catch((e) => {
      // the .part could not be read back: our fault, never the peer's; the fetch loop hears it
      this.readError ??= e instanceof Error ? e.message : String(e);
    }).finally(() => {
      this.#sending = false;
      if (this.#outbox.length > 0 || this.readError) this.#wake();
    });
  }

  /** Requests to peers carry the swarm's key (a private swarm), as requests to servers do. */
  #sealed(bytes: Uint8Array, to: PeerAddr): Uint8Array {
    // replies are never sealed: only requests (which the node and the transfer send) are
    if (!this.#key || !isRequestBytes(bytes) || to === undefined) return bytes;
    return seal(bytes, this.#key, Date.now(), crypto.getRandomValues(new Uint8Array(8)));
  }

  /** Closes the socket and the file handle. */
  async close(): Promise<void> {
    await this.socket.close();
    try {
      this.#file.close();
    } catch {
      // already closed
    }
  }
}

/** Whether an encoded datagram is a udpget request (types 1, 3, 5, 9, 11). */
function isRequestBytes(b: Uint8Array): boolean {
  return requestIdOfRequest(b) !== undefined;
}
